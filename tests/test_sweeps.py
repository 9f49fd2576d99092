"""Sweeps that survive, end to end through experiments/train.py: failed jobs are isolated, a sweep
killed with SIGKILL resumes without duplicates, and 8 parallel jobs share one sqlite store."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, run_train
from tests.test_resilience import DIVERGING

SMALL = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]", "eval.every_samples=100"]
ARTIFACTS = {"config.yaml", "eval/accuracy_matrix.csv", "eval/task_curve.parquet", "eval/sample_probe.npz"}


def store_args(tmp_path, experiment: str) -> list[str]:
    return [
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"tracking.experiment={experiment}",
        f"tracking.artifact_location={tmp_path}/artifacts",
    ]


def runs_of(tmp_path, experiment: str):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags["forgetlab.kind"] == "sweep"]
    jobs = [r for r in runs if r.data.tags["forgetlab.kind"] == "train"]
    return client, parents, jobs


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.mark.slow
def test_a_failing_job_ends_failed_and_the_sweep_goes_on(tmp_path):
    proc = run_train(
        "-m", "algorithm.lr=1e6,0.01", *SMALL, *DIVERGING[:-1], *store_args(tmp_path, "failing"),
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "[sweep] FAILED algorithm.lr=1000000.0: TrainingDiverged: Training diverged at update 7" in proc.stderr
    assert "2 jobs: 0 skipped (same config and code), 1 trained, 1 failed" in proc.stdout
    # One console line per job, named after its run; its log lines went to the job's train.log.
    assert "backprop·class·s0·split_digits FAILED (job 0," in proc.stdout
    assert "TrainingDiverged: Training diverged at update 7" in proc.stdout
    assert "backprop·class·s0·split_digits final/acc=" in proc.stdout and "(job 1," in proc.stdout
    assert "after digits_" not in proc.stdout
    assert "[backprop·class·s0·split_digits] after digits_" in (tmp_path / "sweep" / "1" / "train.log").read_text()
    client, (parent,), jobs = runs_of(tmp_path, "failing")
    assert parent.info.status == "FAILED"
    with open(client.download_artifacts(parent.info.run_id, "sweep_jobs.json", str(tmp_path))) as f:
        manifest = json.load(f)
    assert sorted(j["config_hash"] for j in manifest) == sorted(j.data.tags["forgetlab.config_hash"] for j in jobs)
    by_lr = {float(j.data.params["algorithm.lr"]): j for j in jobs}
    diverged, fine = by_lr[1e6], by_lr[0.01]
    assert diverged.info.status == "FAILED"
    assert "diverged at update 7" in diverged.data.tags["forgetlab.error"]
    assert "traceback.txt" in artifact_paths(client, diverged.info.run_id)
    assert fine.info.status == "FINISHED" and "final/acc" in fine.data.metrics
    written = artifact_paths(client, fine.info.run_id)
    assert ARTIFACTS <= written
    # safe to read: no pickled formats, and the arrays load with allow_pickle=False
    assert {os.path.splitext(p)[1] for p in written} <= {".yaml", ".csv", ".parquet", ".npz", ".txt", ".png", ".json", ".diff"}
    local = client.download_artifacts(fine.info.run_id, "eval/sample_probe.npz", str(tmp_path / "dl"))
    with np.load(local, allow_pickle=False) as probe:
        assert all(probe[name].dtype != object for name in probe.files)


@pytest.mark.slow
def test_a_sweep_killed_mid_job_resumes_without_duplicates(tmp_path):
    # Each job its own launch (its own train.log); tests/test_sweep_ensembles.py resumes ensembles.
    args = ["-m", "seed=0,1,2", *SMALL, "trainer.epochs_per_task=2", *store_args(tmp_path, "resume"),
            "hydra.sweeper.ensemble=false"]
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "experiments" / "train.py"), *args, f"hydra.sweep.dir={tmp_path}/first"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    job_log = tmp_path / "first" / "1" / "train.log"  # a sweep job logs to its own train.log
    try:  # kill -9 the whole sweep while job seed=1 is between its two tasks
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            if job_log.exists() and "[backprop·class·s1·split_digits] after" in job_log.read_text():
                os.killpg(first.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        first.kill()
        first.wait(timeout=60)
    client, _, jobs = runs_of(tmp_path, "resume")
    assert sorted((j.data.params["seed"], j.info.status) for j in jobs) == [("0", "FINISHED"), ("1", "RUNNING")]

    second = run_train(*args, f"hydra.sweep.dir={tmp_path}/second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[sweep] skip 1 of 3 jobs: FINISHED before (same config and code;" in second.stdout
    # the run of seed=1 and the parent, left RUNNING by the dead processes, are ended first (end_dead_runs)
    assert "[sweep] ended KILLED 2 run(s) that a process now gone" in second.stdout
    assert "3 jobs: 1 skipped (same config and code), 2 trained, 0 failed" in second.stdout

    client, parents, jobs = runs_of(tmp_path, "resume")
    finished = [j for j in jobs if j.info.status == "FINISHED"]
    assert sorted(j.data.params["seed"] for j in finished) == ["0", "1", "2"]
    assert len({j.data.tags["forgetlab.config_hash"] for j in finished}) == 3
    (killed,) = [j for j in jobs if j.info.status != "FINISHED"]
    assert killed.info.status == "KILLED" and killed.data.params["seed"] == "1"
    (parent,) = parents  # the re-run reuses the interrupted sweep's parent run and sweep id
    assert parent.info.status == "FINISHED"
    for job in finished:
        assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert job.data.tags["forgetlab.sweep_id"] == parent.data.tags["forgetlab.sweep_id"]

    forced = run_train("-m", "seed=0", *args[2:], "tracking.resume=false", f"hydra.sweep.dir={tmp_path}/forced")
    assert forced.returncode == 0, forced.stderr[-3000:]
    _, _, jobs = runs_of(tmp_path, "resume")
    assert Counter(j.data.params["seed"] for j in jobs if j.info.status == "FINISHED") == {"0": 2, "1": 1, "2": 1}


@pytest.mark.slow
def test_parallel_jobs_write_everything_to_one_sqlite_store(tmp_path):
    """Four jobs at once, twice the cores of the machine the suite is made for, into one store."""
    proc = run_train(
        "-m", "seed=range(4)", *SMALL, "eval.every_samples=25", *store_args(tmp_path, "writers"),
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", f"hydra.sweep.dir={tmp_path}/sweep", timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "locked" not in proc.stdout + proc.stderr
    client, (parent,), jobs = runs_of(tmp_path, "writers")
    assert parent.info.status == "FINISHED"
    assert sorted(int(j.data.params["seed"]) for j in jobs) == list(range(4))
    expected_steps = None
    for job in jobs:
        assert job.info.status == "FINISHED"
        metrics = job.data.metrics
        assert {"acc/task_0", "acc/task_1", "loss/task_0", "loss/task_1", "acc/seen", "loss/train", "updates",
                "final/acc", "final/bwt", "final/fwt", "final/forgetting"} <= set(metrics)
        steps = {k: [m.step for m in client.get_metric_history(job.info.run_id, k)] for k in ("acc/task_1", "updates")}
        assert steps["acc/task_1"] == steps["updates"]
        expected_steps = expected_steps or steps["acc/task_1"]
        assert steps["acc/task_1"] == expected_steps and len(expected_steps) > 50  # every point of every run
        assert ARTIFACTS <= artifact_paths(client, job.info.run_id)


@pytest.mark.slow
def test_a_job_that_finds_its_config_done_when_it_starts_counts_as_skipped(tmp_path):
    """The same config twice in one sweep: both are launched (nothing was finished before), the
    second one's own check at its start finds the first one's run and creates none."""
    proc = run_train("-m", "seed=0,0", *SMALL, *store_args(tmp_path, "twice"), f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The console names the job skipped; why is in its train.log (only warnings reach the console).
    assert "backprop·class·s0·split_digits skipped (job" in proc.stdout
    assert any("] skip: FINISHED as run" in log.read_text() for log in (tmp_path / "sweep").glob("*/train.log"))
    assert "2 jobs: 1 skipped (same config and code), 1 trained, 0 failed" in proc.stdout
    _, _, jobs = runs_of(tmp_path, "twice")
    assert [j.info.status for j in jobs] == ["FINISHED"]
