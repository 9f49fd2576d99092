"""Whole sweeps, wall and CPU time: `make study`'s sweep with the sweeper's ensembles off and on.

    .venv/bin/python benchmarks/sweeps.py [--experiment quickstart] [--before DIR] [--json] [overrides ...]

Runs ``python experiments/train.py -m experiment=<experiment>`` (what `make study` runs, see the
Makefile) as a subprocess, each time into a fresh temporary sqlite store and sweep directory:
``hydra.sweeper.ensemble=false`` (every job its own launch, as before ensembles) and ``=true`` (the
default). ``--before DIR`` adds the same sweep run by another checkout (e.g. ``git worktree add
/tmp/before <commit>``): its own ``experiments/train.py`` with ``PYTHONPATH=DIR/src``, so that
"before" and "after" are measured in one script run on the same machine. Wall time is the
subprocess's; CPU time is the user + system time of it and its children (joblib workers), from
``resource.getrusage(RUSAGE_CHILDREN)``. The load average is printed before and after each sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(root: Path, overrides: list[str], env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="forgetlab-sweep-bench-") as tmp:
        store = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_location={tmp}/artifacts",
                 f"hydra.sweep.dir={tmp}/sweep"]
        command = [sys.executable, str(root / "experiments" / "train.py"), "-m", *overrides, *store]
        load_before, cpu, wall = os.getloadavg()[0], children_cpu(), time.perf_counter()
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
        summary = next((line for line in proc.stdout.splitlines() if " jobs: " in line), "")
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        return {"returncode": proc.returncode, "wall_s": wall, "cpu_s": cpu, "summary": summary.strip(),
                "load_before": load_before, "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare against")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    sweep = [f"experiment={args.experiment}", *args.overrides]
    env = {k: v for k, v in os.environ.items() if k not in ("FORGETLAB_ROOT", "MLFLOW_TRACKING_URI")}
    rows = {}
    if args.before is not None:
        before = args.before.resolve()
        rows["before"] = run_sweep(before, sweep, {**env, "PYTHONPATH": str(before / "src")})
        print("before", rows["before"], file=sys.stderr, flush=True)
    for name, ensemble in (("ensemble_off", "false"), ("ensemble_on", "true")):
        rows[name] = run_sweep(ROOT, [*sweep, f"hydra.sweeper.ensemble={ensemble}"], env)
        print(name, rows[name], file=sys.stderr, flush=True)
    base = rows.get("before", rows["ensemble_off"])
    result = {"sweep": sweep, "cpus": os.cpu_count(), "rows": rows,
              "speedup_wall": base["wall_s"] / rows["ensemble_on"]["wall_s"],
              "speedup_cpu": base["cpu_s"] / rows["ensemble_on"]["cpu_s"],
              "speedup_wall_vs_off": rows["ensemble_off"]["wall_s"] / rows["ensemble_on"]["wall_s"]}
    print(f"wall speed-up {result['speedup_wall']:.2f}x, CPU {result['speedup_cpu']:.2f}x "
          f"(ensembles on against {'before' if args.before else 'off'})", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
