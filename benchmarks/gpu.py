"""The GPU backend against the CPU, in one process run: exact RTRL's step time against the hidden
size, and per-member updates/s of MLP ensembles against their size, with the GEMM rate of the same
shapes as the roof.

    python benchmarks/gpu.py --json                       # everything (about 3 minutes on one H100)
    python benchmarks/gpu.py --rtrl-sizes 64 128 --ensemble-sizes 1 64 --json

RTRL (``rtrl``): one RNN (H hidden units, I = 8 inputs, 10 outputs, tanh, softmax, loss at every
step), RTRL updating at every step (``update_every=1``), float64; a *full step* is everything
``RTRL.learn`` does for one time step: forward, sensitivity update P_t = D_t (W_hh P_{t-1} + U_t),
gradient, weight update. Timed over whole 8-step sequences of random inputs, after one warm-up
sequence, with the device synchronised before reading the clock. The roof is the float64 GEMM of
the sensitivity update's shape, (H x H) @ (H x H K) with K = H + I + 1, timed alone.

Ensembles (``ensemble``): the default config (MLP 64-64-10, per-sample backprop, split digits, class
scenario, 5 tasks x 5 epochs) trained as one ensemble of S members (seeds 0..S-1) with the default
evaluation schedule (every 100 samples: every member scored on 450 test and 100 probe samples, on
the device), untracked. Per-member updates/s = S x weight updates / wall seconds of ``Trainer.run``.

Nothing is tracked, and MLflow need not be installed (the sweeper's config node composes without it:
``hydra_plugins/forgetlab_sweeper/config.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forgetlab.algorithms.rtrl import RTRL  # noqa: E402
from forgetlab.arrays import NUMPY, backend_namespace, backend_unavailable, to_numpy  # noqa: E402
from forgetlab.assembly import assemble  # noqa: E402
from forgetlab.config import compose, typed  # noqa: E402
from forgetlab.networks.rnn import RNN  # noqa: E402

N_IN, N_OUT, T = 8, 10, 8


def synchronize(xp) -> None:
    if xp is not NUMPY:
        import cupy

        cupy.cuda.Device().synchronize()


def timed(xp, work, repeats: int) -> float:
    """Median wall seconds of ``work()`` over ``repeats``, the device idle before and after each."""
    times = []
    for _ in range(repeats):
        synchronize(xp)
        start = time.perf_counter()
        work()
        synchronize(xp)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def rtrl_step(xp, H: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    net = RNN(N_IN, H, N_OUT, loss_at="all", rng=rng, xp=xp)
    learner = RTRL(net, lr=1e-3, update_every=1, implementation="forward")  # the form whose GEMM this times
    x = xp.asarray(rng.standard_normal((1, 1, T, N_IN)))
    y = xp.asarray(np.eye(N_OUT)[None, [3]])
    mask = xp.ones((1, 1, N_OUT))
    learner.learn(x, y, mask)  # warm-up: kernels compiled, memory pool filled
    seconds = timed(xp, lambda: learner.learn(x, y, mask), repeats)
    assert np.isfinite(to_numpy(net.W_hh)).all()
    K = H + N_IN + 1
    A, B = xp.asarray(rng.standard_normal((H, H))), xp.asarray(rng.standard_normal((H, H * K)))
    out = xp.empty((H, H * K))
    xp.matmul(A, B, out=out)
    gemm = timed(xp, lambda: xp.matmul(A, B, out=out), max(3, repeats))
    flops = 2.0 * H * H * H * K
    return {"H": H, "step_ms": 1e3 * seconds / T, "gemm_ms": 1e3 * gemm, "gemm_tflops": flops / gemm / 1e12,
            "step_tflops": flops / (seconds / T) / 1e12, "updates": learner.updates}


# FLOPs of one member-update of the default MLP (64-64-10, one sample): forward 2 (64*64 + 64*10),
# the hidden delta 2*64*10, the outer products 64*64 + 64*10, the SGD step 2 (64*64 + 64 + 64*10 + 10).
MLP_FLOPS_PER_UPDATE = 2 * (64 * 64 + 64 * 10) + 2 * 64 * 10 + (64 * 64 + 64 * 10) + 2 * (64 * 64 + 64 + 64 * 10 + 10)


def member_matmul_roof(xp, S: int, repeats: int = 20) -> dict:
    """The batched product the ensemble's step is made of, timed alone: (S, 1, 64) @ (S, 64, 64),
    one sample through one 64 x 64 layer per member, in float64."""
    rng = np.random.default_rng(0)
    a, W = xp.asarray(rng.standard_normal((S, 1, 64))), xp.asarray(rng.standard_normal((S, 64, 64)))
    xp.matmul(a, W)
    seconds = timed(xp, lambda: [xp.matmul(a, W) for _ in range(10)], repeats) / 10
    gflops = 2.0 * 64 * 64 * S / seconds / 1e9
    return {"matmul_us": 1e6 * seconds, "matmul_gflops": gflops,
            "roof_member_updates_per_s": gflops * 1e9 / MLP_FLOPS_PER_UPDATE}


def warm_up(backend: str, dtype: str) -> None:
    """A short ensemble run first, so that CuPy compiles its kernels outside the timed runs."""
    cfg = typed(compose(["tracking.enabled=false", f"backend={backend}", f"backend.dtype={dtype}",
                   "task_sequence.n_tasks=2", "trainer.epochs_per_task=1"]))
    assemble([replace(cfg, seed=s) for s in range(2)]).run()


def ensemble_rate(backend: str, S: int, dtype: str = "float64") -> dict:
    base = ["tracking.enabled=false", f"backend={backend}", f"backend.dtype={dtype}"]
    cfg = typed(compose(base))
    members = [replace(cfg, seed=s) for s in range(S)]  # a typed copy per member: microseconds, not a composition
    start = time.perf_counter()
    trainer = assemble(members)
    built = time.perf_counter() - start
    start = time.perf_counter()
    results = trainer.run()
    synchronize(trainer.network.xp)
    seconds = time.perf_counter() - start
    updates = trainer.algorithm.updates
    final = np.array([r.accuracy_matrix[-1].mean() for r in results])
    return {"backend": backend, "dtype": dtype, "S": S, "seconds": seconds, "build_seconds": built,
            "updates": updates, "member_updates_per_s": S * updates / seconds,
            "final_acc_mean": float(final.mean()), "final_acc_member0": float(final[0]),
            "diverged": int(sum(r.error is not None for r in results))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtrl-sizes", type=int, nargs="*", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--cpu-rtrl-max", type=int, default=256, help="largest H also timed on the CPU")
    parser.add_argument("--ensemble-sizes", type=int, nargs="*", default=[1, 64, 1024, 4096, 16384])
    parser.add_argument("--cpu-ensemble-sizes", type=int, nargs="*", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    unavailable = backend_unavailable("cupy")
    report: dict = {"python": platform.python_version(), "numpy": np.__version__, "cupy_unavailable": unavailable}
    backends = {"cpu": NUMPY}
    if unavailable is None:
        import cupy

        backends["gpu"] = backend_namespace("cupy")
        props = cupy.cuda.runtime.getDeviceProperties(0)
        report["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        report["cupy"] = cupy.__version__
    from threadpoolctl import threadpool_info, threadpool_limits

    report["blas"] = [{k: i.get(k) for k in ("internal_api", "num_threads", "version")} for i in threadpool_info()]
    report["rtrl"] = []
    for H in args.rtrl_sizes:
        for device, xp in backends.items():
            if device == "cpu" and H > args.cpu_rtrl_max:
                continue
            with threadpool_limits(limits=1, user_api="blas"):  # the CPU side on one thread, as forgetlab trains
                row = {"device": device, **rtrl_step(xp, H, args.repeats if device == "gpu" or H <= 128 else 1)}
            report["rtrl"].append(row)
            print(f"rtrl {device} H={H}: {row['step_ms']:.3f} ms/step, GEMM {row['gemm_tflops']:.2f} TFLOP/s",
                  file=sys.stderr, flush=True)
    report["ensemble"] = []
    runs = [("numpy", S, "float64") for S in args.cpu_ensemble_sizes]
    if "gpu" in backends:
        runs += [("cupy", S, "float64") for S in args.ensemble_sizes] + [("cupy", S, "float32") for S in (1024, 4096)]
    warmed = set()
    for backend, S, dtype in runs:
        if (backend, dtype) not in warmed:
            warm_up(backend, dtype)
            warmed.add((backend, dtype))
        row = ensemble_rate(backend, S, dtype)
        if dtype == "float64":
            row.update(member_matmul_roof(backends["gpu" if backend == "cupy" else "cpu"], S))
        report["ensemble"].append(row)
        roof = f", matmul roof {row['roof_member_updates_per_s']:,.0f}" if "roof_member_updates_per_s" in row else ""
        print(f"ensemble {backend} {dtype} S={S}: {row['member_updates_per_s']:,.0f} member-updates/s "
              f"({row['seconds']:.1f} s){roof}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2) if args.json else report)


if __name__ == "__main__":
    main()
