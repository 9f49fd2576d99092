"""The adversarial pass of issue 20: ``kill -9`` of a joblib sweep's parent process at four moments,
and a re-run of the same command at once, while the killed sweep's workers would still train.

    python benchmarks/orphans.py                       # the four moments, 4 jobs on 2 workers each
    python benchmarks/orphans.py --moments mid --epochs 30

Moments: ``setup`` (the sweep file is written, no job has started), ``start`` (a job's log exists:
it is opening its run), ``mid`` (a job has finished its first task), ``end`` (a job has ended, the
others train). For each it prints how long every worker of the killed sweep lived after the kill
(``stopping.exit_with_parent``), the re-run's exit code and summary line, the FINISHED runs per config
(exactly one each expected), any run left RUNNING, and the re-run's parent status with its
``sweep/jobs_finished`` of ``sweep/jobs``. Exit code 1 when any check fails.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOMENTS = ("setup", "start", "mid", "end")
WORKER_DEADLINE_S = 30.0  # issue 20: no worker alive 30 s after its parent died


def sweep_args(tmp: Path, jobs: int, epochs: int) -> list[str]:
    return ["-m", f"seed=range({jobs})", f"trainer.epochs_per_task={epochs}", "task_sequence.n_tasks=2",
            "network.hidden_sizes=[16]", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "hydra.sweeper.ensemble=false", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"tracking.artifact_location={tmp}/artifacts", "tracking.experiment=orphans"]


def reached(moment: str, sweep_dir: Path) -> bool:
    if moment == "setup":
        return (sweep_dir / "forgetlab_sweep.json").exists()
    if moment == "start":
        return any(sweep_dir.glob("*/train.log"))
    if moment == "mid":
        return any("] after digits_01" in log.read_text() for log in sweep_dir.glob("*/train.log"))
    return any((sweep_dir / "forgetlab_jobs").glob("*.json"))


def children(pid: int) -> dict[int, str]:
    """Every process whose parent is ``pid``: pid -> its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def store_state(tmp: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    experiment = client.get_experiment_by_name("orphans")
    runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    train = [r for r in runs if r.data.tags.get("forgetlab.kind") == "train"]
    parents = [r for r in runs if r.data.tags.get("forgetlab.kind") == "sweep"]
    return train, parents


def one_moment(moment: str, jobs: int, epochs: int) -> tuple[bool, str]:
    tmp = Path(tempfile.mkdtemp(prefix=f"orphans-{moment}-"))
    args = sweep_args(tmp, jobs, epochs)
    first = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), *args,
                              f"hydra.sweep.dir={tmp}/first"], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not reached(moment, tmp / "first"):
        if first.poll() is not None or time.monotonic() > deadline:
            return False, f"{moment}: the sweep ended (rc {first.returncode}) before the moment came"
        time.sleep(0.02)
    workers = {pid: cmd for pid, cmd in children(first.pid).items() if "resource_tracker" not in cmd}
    os.kill(first.pid, signal.SIGKILL)  # the parent only, as `kill -9 <pid>`: its workers are orphaned
    killed_at = time.monotonic()
    first.wait()
    rerun = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), *args,
                              f"hydra.sweep.dir={tmp}/second"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lived: dict[int, float] = {}
    while len(lived) < len(workers) and time.monotonic() - killed_at < 120:
        for pid in workers:
            if pid not in lived and not alive(pid):
                lived[pid] = time.monotonic() - killed_at
        time.sleep(0.1)
    output = rerun.communicate(timeout=900)[0]
    summary = next((line for line in output.splitlines() if " jobs: " in line), "(no summary line)")
    train, parents = store_state(tmp)
    finished = Counter(r.data.tags["forgetlab.config_hash"] for r in train if r.info.status == "FINISHED")
    running = [r for r in train if r.info.status == "RUNNING"]
    parent = max(parents, key=lambda r: r.info.end_time or 0)
    done = parent.data.metrics.get("sweep/jobs_finished", -1)
    longest = max(lived.values(), default=0.0)
    checks = {
        "workers gone": len(lived) == len(workers) and longest <= WORKER_DEADLINE_S,
        "re-run exit 0": rerun.returncode == 0,
        "one FINISHED run per config": len(finished) == jobs and set(finished.values()) == {1},
        "nothing RUNNING": not running,
        "parent true": parent.info.status == "FINISHED" and done == jobs,
    }
    line = (f"{moment:5s} | {len(workers)} workers, gone {longest:.1f} s after the kill"
            f"{'' if len(lived) == len(workers) else f' ({len(workers) - len(lived)} still alive)'} | "
            f"re-run rc {rerun.returncode}: {summary.split('] ', 1)[-1]} | FINISHED per config "
            f"{sorted(finished.values())} | RUNNING {len(running)} | parent {parent.info.status} "
            f"{done:.0f}/{jobs} | runs KILLED {sum(r.info.status == 'KILLED' for r in train)}")
    failed = [name for name, ok in checks.items() if not ok]
    return not failed, line + (f" | FAILED: {', '.join(failed)}" if failed else " | ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moments", default=",".join(MOMENTS), help="comma-separated, of " + ", ".join(MOMENTS))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20, help="trainer.epochs_per_task: long enough to be orphaned")
    args = parser.parse_args(argv)
    ok = True
    for moment in args.moments.split(","):
        started = time.monotonic()
        passed, line = one_moment(moment, args.jobs, args.epochs)
        print(f"{line} | {time.monotonic() - started:.0f} s", flush=True)
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
