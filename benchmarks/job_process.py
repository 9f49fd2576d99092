"""Where the CPU time of a study job started as its own process goes.

    .venv/bin/python benchmarks/job_process.py [--repeats 3] [--json] [hydra overrides ...]

Runs ``python experiments/train.py <overrides>`` as a fresh process, as a SLURM array task or a
script runs one job (default: an MLP job of `make study`: ``learner=mlp_backprop
trainer.epochs_per_task=2 task_sequence.scenario=class``), into a temporary sqlite store that
already exists (as a sweep's parent leaves it). The child is the script itself, run by ``runpy``
after a few functions were wrapped to add up their CPU time (``time.process_time``):

- start-up: from the interpreter's start until ``main`` runs (the imports);
- data: building the task sequence (``build_task_sequence``: reading and splitting the data,
  scikit-learn's import for the digits);
- training and evaluation: ``Trainer.run`` less what the tracking callback spends inside it;
- tracking: the run's MLflow calls (``run_for_config``, the callback, ``finish``);
- figures: drawing the run's two figures once it has ended (``run_figures.add_sweep_figures``): a
  single run does it; a sweep's jobs leave it to the sweep's parent;
- exit: from the end of ``main`` until the process is gone (the parent's ``RUSAGE_CHILDREN``);
- garbage collection: the cyclic collector's time (``gc.callbacks``), part of the phases above.

"Outside training and evaluation" is the total less training and evaluation; "... without the
figures" also less the figures (what a sweep's job pays). Medians of ``--repeats`` fresh
processes; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["learner=mlp_backprop", "trainer.epochs_per_task=2", "task_sequence.scenario=class", "seed=0"]

CHILD = r"""
import gc, json, os, sys, time
t_start = time.process_time()
sys.argv = sys.argv[1:]  # experiments/train.py and its overrides, as if it had been started
report = os.environ["FORGETLAB_JOB_REPORT"]
phases = {"training_and_evaluation": 0.0, "tracking": 0.0, "figures": 0.0, "garbage_collection": 0.0,
          "data": 0.0}
inside_training = [0.0]
collection_started = [0.0]

def collection(phase, info):  # the cyclic collector's own time, wherever it runs
    if phase == "start":
        collection_started[0] = time.process_time()
    else:
        phases["garbage_collection"] += time.process_time() - collection_started[0]

gc.callbacks.append(collection)

def timed(owner, name, phase, *, inside=False):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent = time.process_time() - t
            phases[phase] += spent
            if inside:
                inside_training[0] += spent
    setattr(owner, name, wrapper)

def phase_of_main(module):
    main = module.main
    def wrapper(*args, **kwargs):
        phases["start_up"] = time.process_time()
        try:
            return main(*args, **kwargs)
        finally:
            phases["main_ended"] = time.process_time()
            phases["training_and_evaluation"] -= inside_training[0]
            with open(report, "w") as out:
                json.dump(phases, out)
    module.main = wrapper

sys.path.insert(0, os.path.dirname(sys.argv[0]))
import train  # first, as when it runs: its start-up as it is
import forgetlab.experiment as experiment
import forgetlab.trainer as trainer
import forgetlab.tracking.mlflow_run as mlflow_run
import forgetlab.tracking.run_figures as run_figures
timed(trainer.Trainer, "run", "training_and_evaluation")
timed(mlflow_run.MlflowRun, "on_eval", "tracking", inside=True)
timed(mlflow_run.MlflowRun, "__init__", "tracking")
timed(mlflow_run.MlflowRun, "finish", "tracking")
timed(mlflow_run, "open_experiment", "tracking")
timed(experiment, "open_experiment", "tracking")
timed(run_figures, "add_sweep_figures", "figures")
timed(train, "add_sweep_figures", "figures")
import forgetlab.assembly as assembly
import forgetlab.cost as cost
for module in (assembly, cost):  # each imported it by name
    timed(module, "build_task_sequence", "data")
phase_of_main(train)
train.stopping.handle_stop_signals()
train.check_arguments()
try:
    train.main()
    code = 0
except SystemExit as exiting:
    code = exiting.code
train.exit_now(code)
"""


def run_job(overrides: list[str], store: str, tmp: Path) -> dict:
    report = tmp / "phases.json"
    report.unlink(missing_ok=True)
    env = {**os.environ, "FORGETLAB_JOB_REPORT": str(report)}
    env.pop("MLFLOW_TRACKING_URI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "experiments" / "train.py"), *overrides,
         f"tracking.uri={store}", f"tracking.artifact_location={tmp}/artifacts", f"hydra.run.dir={tmp}/out"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    phases = json.loads(report.read_text())
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {
        "total": total,
        "start_up": phases["start_up"],
        "data": phases["data"],
        "training_and_evaluation": phases["training_and_evaluation"],
        "tracking": phases["tracking"],
        "figures": phases["figures"],
        "exit": total - phases["main_ended"],
        "garbage_collection (in the above)": phases["garbage_collection"],
    }
    row["other"] = total - sum(v for k, v in row.items() if k != "total" and "(" not in k)
    row["outside_training_and_evaluation"] = total - row["training_and_evaluation"]
    row["outside_training_and_evaluation_without_the_figures"] = row["outside_training_and_evaluation"] - row["figures"]
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    overrides = args.overrides or JOB
    with tempfile.TemporaryDirectory(prefix="forgetlab-job-bench-") as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        subprocess.run([sys.executable, "-m", "forgetlab.tracking.store", "prepare", store], check=True,
                       capture_output=True, cwd=ROOT)
        load_before = os.getloadavg()
        rows = [run_job(overrides, store, Path(tmp)) for _ in range(args.repeats)]
    medians = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    result = {"overrides": overrides, "cpu_s": medians, "repeats": args.repeats,
              "load_average": [load_before, os.getloadavg()]}
    for key, value in medians.items():
        print(f"{key:34s} {value:6.2f} s CPU", file=sys.stderr)
    print(f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
