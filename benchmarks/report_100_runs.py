"""Time analysis/report.py over 100 training runs (target: within 60 s on 2 cores).

    python benchmarks/report_100_runs.py            # 100 runs with the default config, then the report twice
    python benchmarks/report_100_runs.py --epochs-per-task 1 --json

Set-up (not timed): 100 real forgetlab runs with tracking on, into a temporary sqlite store: 20
conditions (algorithm.lr 5 values x task_sequence.joint x task_sequence.scenario class|domain) x 5
seeds. Timed: the report CLI as a subprocess, wall clock from start to exit (imports, MLflow query,
artifact download and parsing, statistics, 6 figures as PNG and PDF, the report run logged to MLflow): once cold
(empty download cache) and once warm (cache filled by the first).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))

LRS = ["0.05", "0.1", "0.2", "0.5", "1.0"]
SCENARIOS = ["class", "domain"]
JOINT = ["false", "true"]
SEEDS = range(5)
EXPERIMENT = "bench_report"


def create_runs(uri: str, artifacts: Path, epochs: int) -> int:
    from forgetlab.config import compose, typed
    from forgetlab.experiment import RunContext, run_experiment

    n = 0
    for lr, scenario, joint, seed in itertools.product(LRS, SCENARIOS, JOINT, SEEDS):
        cfg = typed(compose([
            f"tracking.uri={uri}", f"tracking.experiment={EXPERIMENT}", f"tracking.artifact_location={artifacts}",
            f"algorithm.lr={lr}", f"task_sequence.scenario={scenario}", f"task_sequence.joint={joint}",
            f"seed={seed}", f"trainer.epochs_per_task={epochs}",
        ]))
        run_experiment(cfg, RunContext(quiet=True))
        n += 1
    return n


def time_report(uri: str, out: Path, cache: Path) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the report process: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "analysis" / "report.py"), "--experiment", EXPERIMENT, "--tracking-uri", uri,
         "--out", str(out), "--cache-dir", str(cache)],
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"report failed:\n{proc.stderr[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs-per-task", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    parser.add_argument("--store", type=Path, default=None,
                        help="keep the store in this directory and reuse its runs on the next call (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.store or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{tmp}/mlflow.db"
        start = time.perf_counter()
        reuse = (tmp / "runs_created").exists()
        n = int((tmp / "runs_created").read_text()) if reuse else create_runs(uri, tmp / "artifacts", args.epochs_per_task)
        (tmp / "runs_created").write_text(str(n))
        setup = time.perf_counter() - start
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        (cold, cold_cpu), (warm, warm_cpu) = (time_report(uri, tmp / "report", tmp / "cache") for _ in range(2))
        load = os.getloadavg()[0]
    print(f"{n} runs {'reused' if reuse else 'created'} in {setup:.0f} s (not timed)")
    print(f"report over {n} runs: cold cache {cold:.1f} s wall ({cold_cpu:.1f} s CPU), "
          f"warm cache {warm:.1f} s wall ({warm_cpu:.1f} s CPU); target: within 60 s; load average {load:.1f}")
    if args.json:
        print(json.dumps({
            "runs": n, "report_cold_s": round(cold, 2), "report_warm_s": round(warm, 2),
            "report_cold_cpu_s": round(cold_cpu, 2), "report_warm_cpu_s": round(warm_cpu, 2),
            "load_average_1min": round(load, 2), "setup_s": round(setup, 1),
        }))


if __name__ == "__main__":
    main()
