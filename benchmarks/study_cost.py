"""What a declared study costs, per run and in all, measured at its own job size.

    .venv/bin/python benchmarks/study_cost.py [--experiment credit_assignment] [--scenario domain]
        [--train-per-task 40] [--members N] [--learners a,b] [--json]

The pilot's wall time per run (docs/credit_assignment_pilot.md) came from ensembles of 8 members on a
loaded machine. A study job trains rates and seeds of a learner, data set, scenario and training as
one ensemble of at most ``hydra.sweeper.max_ensemble_size`` members (8: the rates of two seeds), whose
members share the per-step work. So, per learner of the study's sweep: an ensemble of the study's job
size (``--members``; default: its rates x seeds up to that cap) is built from the study's own config with
a few training images per task and one epoch, untracked; the CPU time of training per sequence and of
evaluation per point is measured (one BLAS thread, ``time.process_time``), and a study run is
extrapolated from the full config's counts: sequences trained (epochs x training images x tasks) and
evaluation points (``eval.every_samples``, the stage boundaries and the initial point). Replay's
rehearsal is counted in its training time per presented sequence. Untracked: MLflow's writes, a job's
start-up and its figures come on top (docs/performance.md measures those apart).

The study's total is the sum over learners of runs x CPU seconds per run, on ``--workers`` cores.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # analysis/ as the package it is installed as

from forgetlab import api  # noqa: E402
from forgetlab import trainer as trainer_module  # noqa: E402
from analysis.study_runs import PRESETS, sweep_params, sweep_sizes  # noqa: E402


@dataclass
class Stopwatch:
    """CPU seconds spent in, and calls of, one method while ``timing`` replaces it."""

    seconds: float = 0.0
    calls: int = 0


@contextmanager
def timing(owner: type, name: str) -> Iterator[Stopwatch]:
    """``owner.name`` timed (CPU) and counted for the duration of the block."""
    original, watch = getattr(owner, name), Stopwatch()

    def timed(self, *args, **kwargs):
        start = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            watch.seconds += time.process_time() - start
            watch.calls += 1

    setattr(owner, name, timed)
    try:
        yield watch
    finally:
        setattr(owner, name, original)


def max_ensemble_size(preset: Path) -> int:
    """The sweeper's cap on members per ensemble: the preset's ``hydra.sweeper.max_ensemble_size``, else
    conf/hydra/default.yaml's."""
    for source in (preset, ROOT / "conf" / "hydra" / "default.yaml"):
        text = yaml.safe_load(source.read_text()) or {}
        sweeper = (text.get("hydra") or {}).get("sweeper") or text.get("sweeper") or {}
        if "max_ensemble_size" in sweeper:
            return int(sweeper["max_ensemble_size"])
    raise LookupError("no hydra.sweeper.max_ensemble_size")


def points_per_run(stage_samples: list[int], every: int) -> int:
    """Evaluation points of a run whose stages present ``stage_samples`` samples: the initial point,
    the multiples of ``every`` strictly inside each stage, and each stage's end."""
    points, start = 1, 0
    for n in stage_samples:
        end = start + n
        inside = (end - 1) // every - start // every if every > 0 else 0
        points, start = points + inside + 1, end
    return points


def full_run(overrides: list[str]) -> dict:
    """Sequences trained and evaluation points of one run of the full config."""
    cfg = api.compose(*overrides, "tracking.enabled=false")
    trainer = api.build(cfg)
    samples = [len(stage.x) * trainer.epochs for stage in trainer.stages]
    return {"sequences": sum(samples), "points": points_per_run(samples, cfg.eval.every_samples)}


def measure(overrides: list[str], members: int, rates: list[str], train_per_task: int) -> dict:
    """CPU seconds of training per member-sequence and of evaluation per member-point, for an
    ensemble of ``members`` (the rates in turn, then the next seed)."""
    small = [*overrides, f"task_sequence.max_train_per_task={train_per_task}", "trainer.epochs_per_task=1",
             "tracking.enabled=false"]
    cfgs = [api.compose(*small, f"seed={m // len(rates)}", f"algorithm.lr={rates[m % len(rates)]}")
            for m in range(members)]
    trainer = api.build(*cfgs)
    presented = sum(len(stage.x) for stage in trainer.stages) * trainer.epochs
    with timing(trainer_module.Trainer, "_learn") as learn, timing(trainer_module.Evaluator, "evaluate") as evaluate:
        trainer.run()
    return {"train_s_per_sequence": learn.seconds / members / presented,
            "eval_s_per_point": evaluate.seconds / members / max(evaluate.calls, 1),
            "learn_calls": learn.calls, "evaluations": evaluate.calls}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="credit_assignment")
    parser.add_argument("--scenario", default="domain", help="the scenario measured (the study's cost is alike in each)")
    parser.add_argument("--train-per-task", type=int, default=40)
    parser.add_argument("--members", type=int,
                        help="ensemble size (default: the study's rates x seeds, at most hydra.sweeper.max_ensemble_size)")
    parser.add_argument("--learners", help="comma-separated learner presets (default: the study's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    preset = PRESETS / f"{args.experiment}.yaml"
    params, sizes = sweep_params(preset), sweep_sizes(preset, [])
    learners = [v.strip() for v in (args.learners or params["learner"]).split(",") if v.strip()]
    rates = [v.strip() for v in params["algorithm.lr"].split(",")]
    members = args.members or min(len(rates) * sizes.get("seed", 1), max_ensemble_size(preset))
    runs_per_learner = math.prod(n for key, n in sizes.items() if key != "learner")
    load = os.getloadavg()[0]
    rows = []
    for learner in learners:
        base = [f"experiment={args.experiment}", f"learner={learner}", f"task_sequence.scenario={args.scenario}"]
        run = full_run(base)
        cost = measure(base, members, rates, args.train_per_task)
        train_s, eval_s = run["sequences"] * cost["train_s_per_sequence"], run["points"] * cost["eval_s_per_point"]
        rows.append({"learner": learner, **run, **cost, "train_cpu_s_per_run": train_s, "eval_cpu_s_per_run": eval_s,
                     "cpu_s_per_run": train_s + eval_s})
        print(f"{learner:45s} train {1e3 * cost['train_s_per_sequence']:7.3f} ms/seq  eval "
              f"{1e3 * cost['eval_s_per_point']:6.1f} ms/point  => {train_s + eval_s:7.1f} CPU s per run "
              f"({run['sequences']} sequences, {run['points']} points; load {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
    total = sum(row["cpu_s_per_run"] for row in rows) * runs_per_learner
    result = {"experiment": args.experiment, "scenario": args.scenario, "members": members,
              "runs_per_learner": runs_per_learner, "runs": runs_per_learner * len(rows), "rows": rows,
              "cpu_hours": total / 3600, "workers": args.workers, "hours_on_workers": total / 3600 / args.workers,
              "load_before": load, "load_after": os.getloadavg()[0]}
    print(f"{result['runs']} runs: {result['cpu_hours']:.1f} CPU hours, {result['hours_on_workers']:.1f} h on "
          f"{args.workers} cores (training and evaluation only)", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
