"""What the recurrent learning algorithms cost, measured: time per step and peak memory of epochwise
BPTT, BPTT(h; h') and exact RTRL for several hidden sizes H and two sequence lengths T; RTRL's
sensitivity update against a bare GEMM of the same shape; PyTorch autograd BPTT on the same network.

    .venv/bin/pip install torch==2.13.0          # the bench extra (CPU wheel); optional: without it the peer is skipped
    .venv/bin/python benchmarks/recurrent_cost.py [--hidden 16 32 64 128] [--lengths 8 32] [--json] [--plot PATH]

One thread for every library (BLAS, torch), so that ratios compare like with like on a shared machine.
Times are the best of a few repeats (the least disturbed by other load). Peak memory is what NumPy
allocates during one ``learn`` call (tracemalloc; torch's allocations are not visible to it).
With --json the last line is one JSON object (``rtrl_gemm_ratio``: H -> ratio, and every table).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from forgetlab.algorithms.bptt_epochwise import BPTTEpochwise  # noqa: E402
from forgetlab.algorithms.bptt_truncated import BPTTTruncated  # noqa: E402
from forgetlab.algorithms.rtrl import RTRL, sensitivity_update  # noqa: E402
from forgetlab.networks.rnn import RNN  # noqa: E402

N_IN, N_OUT = 8, 10  # row-sequential digits: 8 features a step, 10 classes
TBPTT = dict(h=4, h_prime=2)  # conf/algorithm/bptt_truncated.yaml


def best_time(fn, min_total: float = 0.15, repeats: int = 3) -> float:
    """Seconds per call: best over ``repeats`` batches, each of enough calls to last ``min_total``."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(min_total / once))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def problem(H: int, T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    net = RNN(N_IN, H, N_OUT, "tanh", "sigmoid", "mse", "all", rng=rng)
    x = rng.uniform(size=(1, T, N_IN))
    y = np.zeros((1, N_OUT))
    y[0, 3] = 1.0
    return net, x, y, np.ones((1, N_OUT))


def algorithms(net):
    return {
        "bptt": BPTTEpochwise(net, lr=1e-3),
        "tbptt": BPTTTruncated(net, lr=1e-3, **TBPTT),
        "rtrl": RTRL(net, lr=1e-3, implementation="forward"),  # the O(H^4) form (the reverse: benchmarks/rtrl.py)
    }


def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def torch_bptt(net: RNN, lr: float):
    """PyTorch eager autograd BPTT on a copy of ``net`` (tanh, sigmoid output, 1/2 sum (a - y)^2 at every
    step, mean over steps), one SGD update per sequence: (live parameter tensors, learn(x (T, I), target (O,)))."""
    import torch

    params = {n: torch.tensor(p[0], requires_grad=True) for n, p in net.params.items()}  # the network's one member

    def learn(xs, target):
        h = torch.zeros(net.n_hidden, dtype=torch.float64)
        loss = 0.0
        for t in range(len(xs)):
            h = torch.tanh(params["W_hh"] @ h + params["W_xh"] @ xs[t] + params["b_h"])
            a = torch.sigmoid(params["W_hy"] @ h + params["b_y"])
            loss = loss + 0.5 * torch.sum((a - target) ** 2)
        loss = loss / len(xs)
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                p -= lr * g

    return params, learn


def torch_bptt_step_time(H: int, T: int) -> float | None:
    """Seconds per step of the PyTorch peer, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    net, x, y, _ = problem(H, T)
    _, learn = torch_bptt(net, lr=1e-3)
    xs, target = torch.tensor(x[0]), torch.tensor(y[0])
    return best_time(lambda: learn(xs, target)) / T


def gemm_ratio(H: int) -> tuple[float, float, float]:
    """(seconds of the sensitivity update, seconds of the bare GEMM of its shape, GEMM time / update time)."""
    rng = np.random.default_rng(1)
    K = H + N_IN + 1
    # one member: the arrays carry the member axis of length 1
    W_hh, P = rng.normal(size=(1, H, H)) / np.sqrt(H), rng.normal(size=(1, H, H * K))
    u, f_prime, out = rng.normal(size=(1, 1, K)), rng.uniform(size=(1, 1, H)), np.empty((1, H, H * K))
    update = best_time(lambda: sensitivity_update(P, W_hh, u, f_prime, out), repeats=5)
    gemm = best_time(lambda: np.matmul(W_hh, P, out=out), repeats=5)
    return update, gemm, gemm / update


def fit_exponent(hs, times) -> float:
    """Slope of log(time) against log(H)."""
    return float(np.polyfit(np.log(hs), np.log(times), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--bptt-hidden", type=int, nargs="*", default=[256, 512, 1024],
                        help="larger H for the BPTT family only (RTRL would take minutes a sequence), "
                             "where the O(H^2) work outweighs the fixed cost of a step")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--plot", default=None, help="write the log-log plot of time per step against H here")
    args = parser.parse_args()

    rows = []  # one per (algorithm, H, T)
    for T in args.lengths:
        for H in [*args.hidden, *args.bptt_hidden]:
            net, x, y, mask = problem(H, T)
            for name, algo in algorithms(net).items():
                if name == "rtrl" and H not in args.hidden:
                    continue
                step = best_time(lambda: algo.learn(x, y, mask)) / T
                rows.append(dict(algorithm=name, H=H, T=T, us_per_step=1e6 * step,
                                 peak_kib=peak_bytes(lambda: algo.learn(x, y, mask)) / 1024))
            torch_step = torch_bptt_step_time(H, T)
            if torch_step is not None:
                rows.append(dict(algorithm="torch_bptt", H=H, T=T, us_per_step=1e6 * torch_step, peak_kib=None))

    ratios = {}
    gemm_rows = []
    for H in args.hidden:
        update, gemm, ratio = gemm_ratio(H)
        ratios[H] = ratio
        gemm_rows.append(dict(H=H, update_us=1e6 * update, gemm_us=1e6 * gemm, ratio=ratio,
                              gflops=2 * H**3 * (H + N_IN + 1) / update / 1e9))

    exponents = {}
    for name in sorted({r["algorithm"] for r in rows}):
        for T in args.lengths:
            sel = sorted((r for r in rows if r["algorithm"] == name and r["T"] == T), key=lambda r: r["H"])
            hs, ts = [r["H"] for r in sel], [r["us_per_step"] for r in sel]
            exponents[f"{name}@T={T}"] = {"all_H": fit_exponent(hs, ts),
                                          "largest_two_H": fit_exponent(hs[-2:], ts[-2:])}

    print(f"time per step (us) and peak NumPy memory (KiB) of one learn() call; TBPTT is BPTT({TBPTT['h']}; "
          f"{TBPTT['h_prime']}); I={N_IN}, O={N_OUT}, tanh, sigmoid + mse at every step, one thread")
    print(f"{'algorithm':<11} {'H':>4} {'T':>4} {'us/step':>11} {'peak KiB':>10}")
    for r in sorted(rows, key=lambda r: (r["T"], r["algorithm"], r["H"])):
        peak = "-" if r["peak_kib"] is None else f"{r['peak_kib']:.0f}"
        print(f"{r['algorithm']:<11} {r['H']:>4} {r['T']:>4} {r['us_per_step']:>11.1f} {peak:>10}")
    print("\nfitted exponent of time per step in H (all H measured / the largest two H)")
    for key, e in exponents.items():
        print(f"  {key:<18} {e['all_H']:.2f} / {e['largest_two_H']:.2f}")
    print("\nRTRL sensitivity update P_new = D (W_hh P + U) against a bare GEMM (H x H) @ (H x H(H+I+1))")
    print(f"{'H':>4} {'update us':>11} {'GEMM us':>11} {'GEMM/update':>12} {'GFLOP/s':>8}")
    for g in gemm_rows:
        print(f"{g['H']:>4} {g['update_us']:>11.1f} {g['gemm_us']:>11.1f} {g['ratio']:>12.3f} {g['gflops']:>8.2f}")

    if args.plot:
        plot(rows, args.lengths, args.plot)
        print(f"\nwrote {args.plot}")
    if args.json:
        print(json.dumps({"rtrl_gemm_ratio": {str(h): r for h, r in ratios.items()}, "gemm": gemm_rows,
                          "steps": rows, "exponents": exponents, "tbptt": TBPTT}))


def plot(rows, lengths, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), sharey=True)
    for ax, T in zip(np.atleast_1d(axes), lengths):
        for name in ("bptt", "tbptt", "rtrl", "torch_bptt"):
            sel = [r for r in rows if r["algorithm"] == name and r["T"] == T]
            if sel:
                ax.loglog([r["H"] for r in sel], [r["us_per_step"] for r in sel], "o-", label=name)
        ax.set_title(f"T = {T}")
        ax.set_xlabel("hidden units H")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("time per step (us)")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
