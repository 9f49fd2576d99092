"""How far float32 (``backend.dtype=float32``) drifts from float64 over a whole default-length run,
per learner, in the task scenario (where accuracy is far from the floor), on the CPU:

    .venv/bin/python benchmarks/float32_drift.py [learner ...]     # default: every learner preset

For each learner: the largest difference of any entry of the accuracy matrix R, the largest relative
difference of a task's test loss at any evaluation point, and the fraction of probe predictions that
differ, averaged over the evaluation points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forgetlab.assembly import build_trainer  # noqa: E402
from forgetlab.config import compose, typed  # noqa: E402


def drift(learner: str) -> str:
    runs = {}
    for dtype in ("float64", "float32"):
        cfg = typed(compose(["tracking.enabled=false", f"learner={learner}", "task_sequence.scenario=task",
                       f"backend.dtype={dtype}"]))
        (runs[dtype],) = build_trainer(cfg).run()
    a, b = runs["float64"], runs["float32"]
    acc = np.abs(a.accuracy_matrix - b.accuracy_matrix).max()
    loss = max(np.abs(p.loss - q.loss).max() / np.abs(p.loss).max() for p, q in zip(a.points, b.points))
    flips = np.mean([np.mean(p.probe_correct != q.probe_correct) for p, q in zip(a.points, b.points)])
    return (f"| `{learner}` | {acc:.4f} | {loss:.1e} | {flips:.4f} | {a.accuracy_matrix[-1].mean():.4f} | "
            f"{b.accuracy_matrix[-1].mean():.4f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("learners", nargs="*", metavar="learner",
                        default=["mlp_backprop", "rnn_bptt_epochwise", "rnn_bptt_truncated", "rnn_rtrl"],
                        help="learner presets (conf/learner/) to compare (default: all four)")
    learners = parser.parse_args(argv).learners
    print("| learner | max abs. difference in R | max rel. test-loss difference | probe predictions differing "
          "| final acc float64 | final acc float32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for learner in learners:
        print(drift(learner), flush=True)


if __name__ == "__main__":
    main()
