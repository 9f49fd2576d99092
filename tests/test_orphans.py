"""Workers die with their sweep (issue 20): after ``kill -9`` of a sweep's process its job processes
stop their runs KILLED with the reason within seconds, and a re-run counts a job done only by a
FINISHED run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.orphans import alive, children, reached, sweep_args
from tests.conftest import ROOT

ORPHANED_JOB = """
import os, subprocess, sys, time
from pathlib import Path

if sys.argv[1] == "parent":  # starts the job process, then waits to be killed
    child = subprocess.Popen([sys.executable, __file__, "job", sys.argv[2]])
    print(child.pid, flush=True)
    time.sleep(600)
else:  # the job process, as a joblib worker: its initializer, then a job
    from forgetlab import stopping

    stopping.init_worker()
    try:
        with stopping.job():
            Path(sys.argv[2]).write_text("training")
            while True:
                time.sleep(0.01)
    except stopping.Stopped as stopped:
        Path(sys.argv[2]).write_text(f"stopped: {stopped}")
        time.sleep(600)  # whatever the job does after, its process exits once the job has ended
"""


def test_a_job_process_whose_parent_dies_stops_its_job_with_the_reason_and_exits(tmp_path):
    script, said = tmp_path / "orphaned_job.py", tmp_path / "said.txt"
    script.write_text(textwrap.dedent(ORPHANED_JOB))
    parent = subprocess.Popen([sys.executable, str(script), "parent", str(said)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    job = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while not (said.exists() and said.read_text() == "training"):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        parent.kill()  # kill -9: no handler of the parent runs
        parent.wait()
        killed_at = time.monotonic()
        while alive(job) and time.monotonic() - killed_at < 30:
            time.sleep(0.05)
        gone_after = time.monotonic() - killed_at
    finally:
        if alive(job):
            os.kill(job, signal.SIGKILL)
    assert gone_after < 5, f"the job process outlived its parent by {gone_after:.1f} s"
    assert said.read_text() == f"stopped: Its sweep's process (pid {parent.pid}) died; the job stopped with it"


@pytest.mark.slow
def test_kill_9_of_a_joblib_sweep_stops_its_workers_and_a_rerun_made_at_once_completes_it(tmp_path):
    """Before: the workers, re-parented to PID 1, trained on (819 s and counting); the re-run skipped
    their jobs as "still RUNNING", exited 0 and ended its parent FINISHED over fewer jobs."""
    args = sweep_args(tmp_path, jobs=3, epochs=20)
    first = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), *args,
                              f"hydra.sweep.dir={tmp_path}/first"], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not reached("mid", tmp_path / "first"):
            assert first.poll() is None and time.monotonic() < deadline, "the sweep ended before a job was mid-way"
            time.sleep(0.02)
        workers = [pid for pid, cmd in children(first.pid).items() if "resource_tracker" not in cmd]
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait()
        rerun = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), *args,
                                  f"hydra.sweep.dir={tmp_path}/second"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        while any(alive(pid) for pid in workers) and time.monotonic() - killed_at < 60:
            time.sleep(0.1)
        lived = time.monotonic() - killed_at
        output = rerun.communicate(timeout=600)[0]
    finally:
        for pid in children(first.pid):
            os.kill(pid, signal.SIGKILL)
    assert workers and lived < 30, f"{len(workers)} workers, the last gone {lived:.1f} s after the kill"
    assert rerun.returncode == 0, output[-3000:]
    assert "still RUNNING" not in output

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("orphans").experiment_id], max_results=1000)
    train = [r for r in runs if r.data.tags["forgetlab.kind"] == "train"]
    assert Counter(r.data.params["seed"] for r in train if r.info.status == "FINISHED") == {"0": 1, "1": 1, "2": 1}
    assert not [r for r in train if r.info.status == "RUNNING"]
    stopped = [r for r in train if r.info.status == "KILLED"]
    assert stopped and all("Its sweep's process" in r.data.tags["forgetlab.error"] for r in stopped)
    (parent,) = [r for r in runs if r.data.tags["forgetlab.kind"] == "sweep"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/jobs_finished"] == 3


def test_a_sweep_never_counts_a_job_done_by_a_run_that_is_still_running(monkeypatch):
    """A job whose config runs in another live process is reported, not skipped, and the parent
    does not end FINISHED while a job has no FINISHED run."""
    from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import Job, final_status, outcome_counts

    jobs = [Job([f"seed={i}"], None, f"{i}" * 16) for i in range(3)]
    jobs[2].running_reason = "still RUNNING as run abc (host ...)"
    counts = outcome_counts(jobs, jobs[:2], [])
    assert counts == {"skipped": 0, "trained": 0, "failed": 0, "running": 1}
    status, reason = final_status(jobs, counts, {"sweep/jobs_finished": 2.0})
    assert status == "FAILED" and reason == "1 of 3 jobs have no FINISHED run, 1 of them still RUNNING in other processes"
    assert final_status(jobs[:2], outcome_counts(jobs[:2], jobs[:2], []), {"sweep/jobs_finished": 2.0}) == ("FINISHED", None)
    # the summary decides when there is one: a job counted trained whose run did not finish keeps it FAILED
    assert final_status(jobs[:2], outcome_counts(jobs[:2], jobs[:2], []), {"sweep/jobs_finished": 1.0})[0] == "FAILED"


@pytest.mark.slow
def test_a_job_that_finds_its_config_running_in_a_live_process_creates_no_run_and_says_so(compose_cfg, sqlite_uri):
    from forgetlab.config import validate
    from forgetlab.experiment import RunContext, RunningElsewhere, run_experiment
    from forgetlab.tracking.liveness import process_identity
    from forgetlab.tracking.mlflow_run import config_hash
    from forgetlab.tracking.resume import code_identity

    cfg = validate(compose_cfg(f"tracking.uri={sqlite_uri}", "tracking.experiment=busy"))
    client = MlflowClient(sqlite_uri)
    experiment = client.create_experiment("busy")
    busy = client.create_run(experiment, tags={
        "forgetlab.kind": "train", "forgetlab.config_hash": config_hash(cfg),
        "forgetlab.code_version": code_identity(cfg), "forgetlab.process": process_identity(),  # alive: this process
    }).info.run_id
    result = run_experiment(cfg, RunContext(sweep_id="s", parent_run_id="p", quiet=True))
    assert result == RunningElsewhere(f"still RUNNING as run {busy} ({process_identity()})")
    assert [r.info.run_id for r in client.search_runs([experiment])] == [busy]
