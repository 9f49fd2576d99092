"""What a lost tracking server leaves behind (issue 20): runs left RUNNING are ended KILLED by the next
contact (a sweep, a single run) or by ``python -m forgetlab.server repair``; the printed hints carry
the server's actual port. The console of a sweep that loses its server: tests/test_store.py."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from forgetlab.contract import TAG_HEARTBEAT, TAG_KIND, TAG_PROCESS
from forgetlab.server import ServerState, TrackingServer, start_hints
from forgetlab.tracking.liveness import process_identity
from forgetlab.tracking.resume import end_dead_runs
from forgetlab.tracking.store import RetryingClient
from tests.conftest import ROOT


def left_running(sqlite_uri):
    """Runs in two experiments, RUNNING: name -> run id."""
    client = MlflowClient(sqlite_uri)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    old, now = f"{time.time() - 3600:.0f}", f"{time.time():.0f}"
    made = {}
    for name, experiment, tags in [
        ("dead job", "a", {TAG_KIND: "train", TAG_PROCESS: process_identity(gone.pid)}),
        ("dead sweep", "b", {TAG_KIND: "sweep", TAG_PROCESS: process_identity(gone.pid)}),
        ("lost node", "b", {TAG_KIND: "train", TAG_PROCESS: "node7 other-boot pid:[1] 1 2", TAG_HEARTBEAT: old}),
        ("live node", "b", {TAG_KIND: "train", TAG_PROCESS: "node7 other-boot pid:[1] 1 2", TAG_HEARTBEAT: now}),
        ("live here", "a", {TAG_KIND: "train", TAG_PROCESS: process_identity()}),
        ("unjudged", "a", {TAG_KIND: "train"}),  # no process recorded: it may still run
        ("not ours", "a", {TAG_PROCESS: process_identity(gone.pid)}),
    ]:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        made[name] = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    return client, made


@pytest.mark.slow
def test_runs_whose_process_is_gone_are_ended_killed_in_every_experiment_at_the_next_contact(sqlite_uri):
    client, made = left_running(sqlite_uri)
    ended = end_dead_runs(RetryingClient(sqlite_uri), stale_after_s=600)
    assert sorted(r.info.run_name for r in ended) == ["dead job", "dead sweep", "lost node"]
    status = {name: client.get_run(run_id).info.status for name, run_id in made.items()}
    assert status == {"dead job": "KILLED", "dead sweep": "KILLED", "lost node": "KILLED", "live node": "RUNNING",
                      "live here": "RUNNING", "unjudged": "RUNNING", "not ours": "RUNNING"}
    assert "is gone" in client.get_run(made["dead job"]).data.tags["forgetlab.error"]


@pytest.mark.slow
def test_server_repair_ends_them_from_the_shell(sqlite_uri, tmp_path):
    client, made = left_running(sqlite_uri)
    repair = subprocess.run([sys.executable, "-m", "forgetlab.server", "repair", "--uri", sqlite_uri,
                             "--state-dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT)
    assert repair.returncode == 0, repair.stderr
    assert f"ended KILLED: run {made['dead job']} (dead job, experiment" in repair.stdout
    assert repair.stdout.strip().splitlines()[-1] == f"3 run(s) left RUNNING by a process that is gone ended KILLED at {sqlite_uri}"
    assert client.get_run(made["dead sweep"]).info.status == "KILLED"
    nothing = subprocess.run([sys.executable, "-m", "forgetlab.server", "repair", "--state-dir", str(tmp_path / "none")],
                             capture_output=True, text=True, cwd=ROOT)
    assert nothing.returncode == 1 and "name the store with --uri" in nothing.stderr


def test_the_hints_of_a_started_server_carry_its_port(tmp_path):
    server = TrackingServer(tmp_path)
    elsewhere = "\n".join(start_hints(ServerState("http://127.0.0.1:5077", "127.0.0.1", 5077, 1, 1), server, None))
    assert "python experiments/train.py tracking=server tracking.uri=http://127.0.0.1:5077" in elsewhere
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5077" in elsewhere
    default = "\n".join(start_hints(ServerState("http://127.0.0.1:5001", "127.0.0.1", 5001, 1, 1), server, None))
    assert "tracking=server   (or" in default and "tracking.uri=" not in default
