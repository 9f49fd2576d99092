"""Per-sample probe gradients batched over the probe samples against a Python loop over them.

    .venv/bin/python benchmarks/probe_gradients.py [--probe 100] [--json]

MLP 64-64-10 on 64 inputs (sigmoid, sigmoid output, mse: conf/network/mlp.yaml) and the Elman RNN with
H = 32 on 8x8 row sequences (T = 8 steps of 8 inputs, tanh, sigmoid output, mse, loss at the last
step and at all steps: conf/network/rnn.yaml), P probe samples. "batched" is one call of
``Network.per_sample_gradients`` on all P samples; "loop" calls it on one sample at
a time, P calls. Both give the same (P, n_params) matrix, which is checked before timing.

One BLAS thread, as the trainer runs. Times are the best of a few repeats (the least disturbed by
other load on a shared machine). With --json the last line is one JSON object.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from forgetlab.networks.mlp import MLP  # noqa: E402
from forgetlab.networks.rnn import RNN  # noqa: E402

from recurrent_cost import best_time  # noqa: E402  (benchmarks/ is on the path when a script here runs)

N_CLASSES = 10




def probe(rng: np.random.Generator, shape: tuple[int, ...], P: int):
    x = rng.uniform(size=(P, *shape))
    y = np.zeros((P, N_CLASSES))
    y[np.arange(P), rng.integers(0, N_CLASSES, size=P)] = 1.0
    return x, y, np.ones((P, N_CLASSES))


def measure(name: str, net, x, y, mask) -> dict:
    P = len(x)

    def batched():
        return net.per_sample_gradients(x, y, mask)

    def loop():
        return np.concatenate([net.per_sample_gradients(x[p : p + 1], y[p : p + 1], mask[p : p + 1])
                               for p in range(P)], axis=1)

    np.testing.assert_allclose(batched(), loop(), rtol=1e-10, atol=1e-14)
    t_batched, t_loop = best_time(batched, repeats=5), best_time(loop, repeats=5)
    return {
        "network": name,
        "probe_samples": P,
        "n_params": int(batched().shape[-1]),
        "batched_ms": 1e3 * t_batched,
        "loop_ms": 1e3 * t_loop,
        "speedup": t_loop / t_batched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", type=int, default=100, help="probe samples P")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [measure("mlp 64-64-10", MLP([64, 64, N_CLASSES], rng=rng), *probe(rng, (64,), args.probe))]
    for loss_at in ("last", "all"):
        net = RNN(8, 32, N_CLASSES, "tanh", "sigmoid", "mse", loss_at, rng=rng)
        rows.append(measure(f"rnn H=32 T=8 loss_at={loss_at}", net, *probe(rng, (8, 8), args.probe)))
    print(f"{'network':<28} {'P':>4} {'params':>7} {'batched ms':>11} {'loop ms':>9} {'speedup':>8}")
    for r in rows:
        print(
            f"{r['network']:<28} {r['probe_samples']:>4} {r['n_params']:>7} {r['batched_ms']:>11.3f} "
            f"{r['loop_ms']:>9.3f} {r['speedup']:>7.1f}x"
        )
    if args.json:
        machine = platform.processor() or platform.machine()
        print(json.dumps({"machine": machine, "numpy": np.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
