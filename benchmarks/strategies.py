"""What each continual-learning strategy costs per update and per training sample, side by side in one
process, as ratios to fine-tuning.

    .venv/bin/python benchmarks/strategies.py [--repeats 5] [--json] [hydra overrides ...]
    .venv/bin/python benchmarks/strategies.py --repeats 3 --json learner=rnn_rtrl network.loss_at=all

Each row trains ``build_trainer(cfg)`` with tracking off on split MNIST (the study's MLP by default:
784-64-10, ReLU, softmax, cross-entropy, per-sample backprop; 3 tasks of at most 200 training samples,
1 epoch, no scheduled evaluations) with one strategy at the study's settings, and times the *last* task
only (from its first sample to its end, the strategy's task-end work included), when every strategy is
at work: the penalties hold two tasks, the memories 200 samples. "µs / sample" is that time per sample
of the task's stream; "µs / update" per weight update (replay makes one more update per replayed
sample). The strategies are interleaved and repeated; medians of wall and CPU time (CPU time is far
less sensitive to other processes on a shared machine). One BLAS thread, as the trainer runs. With
--json the last line is one JSON object.
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

from forgetlab.assembly import build_trainer  # noqa: E402
from forgetlab.config import as_config, compose, validate  # noqa: E402
from forgetlab.trainer import Callback  # noqa: E402

BASE = ["task_sequence=split_mnist", "task_sequence.n_tasks=3", "task_sequence.max_train_per_task=200",
        "trainer.epochs_per_task=1", "eval.every_samples=0", "tracking.enabled=false",
        "network.activation=relu", "network.output=softmax", "network.loss=cross_entropy", "algorithm.lr=0.1"]
STRATEGIES = {
    "fine_tuning": [],
    "ewc": ["strategy=ewc", "strategy.strength=1"],
    "si": ["strategy=si", "strategy.strength=0.01"],
    "replay": ["strategy=replay"],
    "agem": ["strategy=agem"],
}


class LastStageClock(Callback):
    """Wall and CPU time of the last stage, from its start to the end of the strategy's task-end work."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.updates = 0

    def on_stage_start(self, trainer, stage: int) -> None:
        if stage == len(trainer.stages) - 1:
            self.wall, self.cpu, self.updates = time.perf_counter(), time.process_time(), trainer.algorithm.updates

    def on_stage_end(self, trainer, stage: int) -> None:  # after the strategy's (it is the first callback)
        if stage == len(trainer.stages) - 1:
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
            self.updates = trainer.algorithm.updates - self.updates


def time_once(cfg) -> tuple[float, float, int, int]:
    """(wall s, CPU s, updates, stream samples) of the last stage of one run of ``cfg``."""
    trainer = build_trainer(cfg)
    clock = LastStageClock()
    trainer.callbacks.insert(1, clock)
    trainer.run()
    return clock.wall, clock.cpu, clock.updates, trainer.stages[-1].n * trainer.epochs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. learner=rnn_rtrl")
    args = parser.parse_args(argv)
    configs = {name: validate(as_config(compose([*BASE, *args.overrides, *extra]))) for name, extra in STRATEGIES.items()}
    runs: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, cfg in configs.items():
            runs[name].append(time_once(cfg))
    rows = {}
    for name, measured in runs.items():
        wall, cpu = (float(np.median([m[i] for m in measured])) for i in (0, 1))
        updates, samples = measured[0][2], measured[0][3]
        rows[name] = {"wall_s": wall, "cpu_s": cpu, "updates": updates, "samples": samples,
                      "cpu_us_per_sample": 1e6 * cpu / samples, "cpu_us_per_update": 1e6 * cpu / updates}
    base = rows["fine_tuning"]
    print(f"{'strategy':<12} {'updates':>8} {'wall s':>8} {'CPU s':>8} {'CPU µs/sample':>14} {'CPU µs/update':>14} "
          f"{'wall x':>7} {'CPU x':>7}")
    for name, r in rows.items():
        r["wall_x"], r["cpu_x"] = r["wall_s"] / base["wall_s"], r["cpu_s"] / base["cpu_s"]
        print(f"{name:<12} {r['updates']:>8} {r['wall_s']:>8.3f} {r['cpu_s']:>8.3f} {r['cpu_us_per_sample']:>14.0f} "
              f"{r['cpu_us_per_update']:>14.0f} {r['wall_x']:>7.2f} {r['cpu_x']:>7.2f}")
    result = {"overrides": args.overrides, "repeats": args.repeats, "rows": rows, "machine": platform.machine(),
              "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
