"""How far float32 (``backend.dtype=float32``) drifts from float64 over a whole default-length run,
per learner, in the task scenario (where accuracy is far from the floor), on the CPU:

    .venv/bin/python benchmarks/float32_drift.py [learner[,override,...] ...]   # default: every learner preset
    .venv/bin/python benchmarks/float32_drift.py rnn_rtrl rnn_rtrl,algorithm.implementation=forward

For each learner (with the overrides after its name, if any): the largest difference of any entry of
the accuracy matrix R, the largest relative difference of a task's test loss at any evaluation point,
the fraction of probe predictions that differ, averaged over the evaluation points, and the final
metrics (``contract.final_metrics``) of both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forgetlab import contract  # noqa: E402
from forgetlab.assembly import build_trainer  # noqa: E402
from forgetlab.config import compose, typed  # noqa: E402


def drift(spec: str) -> str:
    learner, *overrides = spec.split(",")
    runs = {}
    for dtype in ("float64", "float32"):
        cfg = typed(compose(["tracking.enabled=false", f"learner={learner}", "task_sequence.scenario=task",
                             *overrides, f"backend.dtype={dtype}"]))
        (runs[dtype],) = build_trainer(cfg).run()
    a, b = runs["float64"], runs["float32"]
    acc = np.abs(a.accuracy_matrix - b.accuracy_matrix).max()
    loss = max(np.abs(p.loss - q.loss).max() / np.abs(p.loss).max() for p, q in zip(a.points, b.points))
    flips = np.mean([np.mean(p.probe_correct != q.probe_correct) for p, q in zip(a.points, b.points)])
    final = [contract.final_metrics(r.accuracy_matrix) for r in (a, b)]
    finals = " | ".join(f"{final[0][k]:.4f} / {final[1][k]:.4f}" for k in (contract.FINAL_ACC, contract.FINAL_BWT))
    return f"| `{spec}` | {acc:.4f} | {loss:.1e} | {flips:.4f} | {finals} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("learners", nargs="*", metavar="learner",
                        default=["mlp_backprop", "rnn_bptt_epochwise", "rnn_bptt_truncated", "rnn_rtrl"],
                        help="learner presets (conf/learner/) to compare (default: all four)")
    learners = parser.parse_args(argv).learners
    print("| learner | max abs. difference in R | max rel. test-loss difference | probe predictions differing "
          "| final acc float64 / float32 | final BWT float64 / float32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for learner in learners:
        print(drift(learner), flush=True)


if __name__ == "__main__":
    main()
