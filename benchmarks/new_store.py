"""What a new sqlite store costs: MLflow's migrations against a copy of the store template, alone and
inside the small sweep an end-to-end test runs.

    .venv/bin/python benchmarks/new_store.py [--repeats 3] [--before DIR] [--json]

Each measurement is a fresh process, interleaved round by round, so that the variants share the
machine's load; CPU time is the user + system time of the process and its children
(``RUSAGE_CHILDREN``), wall time the subprocess's. The variants:

- ``prepare_migrations`` / ``prepare_template``: ``forgetlab.tracking.store.prepare_store`` of a
  missing file, with ``FORGETLAB_STORE_TEMPLATE=off`` (MLflow's ~70 migrations) and with the template
  (the default cache, made by the first use if missing), the imports before the call not counted;
- ``sweep`` / ``sweep_migrations``: ``python experiments/train.py -m seed=0,1`` on split digits cut to
  20 images a task, one epoch, into a new store (what many end-to-end tests run), with the template
  and with it off; ``sweep_before``: the same by another checkout (``--before DIR``, e.g. ``git
  worktree add /tmp/before <commit>``, run with ``PYTHONPATH=DIR/src``).

Medians over ``--repeats`` rounds; the load average is printed.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "seed=0,1", "task_sequence.max_train_per_task=20", "trainer.epochs_per_task=1"]
PREPARE = ("import sys, time\n"
           "from forgetlab.tracking.store import prepare_store\n"
           "cpu, wall = time.process_time(), time.perf_counter()\n"
           "prepare_store(f'sqlite:///{sys.argv[1]}')\n"
           "print(time.process_time() - cpu, time.perf_counter() - wall)\n")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare(template: bool) -> dict:
    env = {**os.environ}
    if not template:
        env["FORGETLAB_STORE_TEMPLATE"] = "off"
    with tempfile.TemporaryDirectory(prefix="forgetlab-store-bench-") as tmp:
        out = subprocess.run([sys.executable, "-c", PREPARE, f"{tmp}/mlflow.db"], capture_output=True, text=True,
                             env=env, check=True, cwd=tmp).stdout.split()
    return {"cpu_s": float(out[0]), "wall_s": float(out[1])}


def sweep(root: Path, template: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    if not template:
        env["FORGETLAB_STORE_TEMPLATE"] = "off"
    with tempfile.TemporaryDirectory(prefix="forgetlab-store-bench-") as tmp:
        command = [sys.executable, str(root / "experiments" / "train.py"), *SWEEP,
                   f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_location={tmp}/artifacts",
                   f"hydra.sweep.dir={tmp}/sweep"]
        cpu, wall = children_cpu(), time.perf_counter()
        subprocess.run(command, capture_output=True, text=True, env=env, check=True, cwd=tmp)
        return {"cpu_s": children_cpu() - cpu, "wall_s": time.perf_counter() - wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare the sweep against")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    variants = {
        "prepare_migrations": lambda: prepare(False),
        "prepare_template": lambda: prepare(True),
        "sweep_migrations": lambda: sweep(ROOT, False),
        "sweep": lambda: sweep(ROOT, True),
    }
    if args.before:
        variants["sweep_before"] = lambda: sweep(args.before.resolve(), True)
    prepare(True)  # the template made, if missing, outside the timed rounds
    times: dict[str, list[dict]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name, run in variants.items():
            times[name].append(run())
    load.append(os.getloadavg()[0])
    rows = {name: {key: statistics.median(t[key] for t in runs) for key in ("cpu_s", "wall_s")}
            for name, runs in times.items()}
    for name, row in rows.items():
        print(f"{name:20s} {row['cpu_s']:7.2f} s CPU {row['wall_s']:7.2f} s wall (median of {args.repeats})")
    print(f"load average {load[0]:.1f} -> {load[1]:.1f}")
    if args.json:
        print(json.dumps({"repeats": args.repeats, "load": load, "rows": rows, "all": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
