"""The tracking server of `make server`: PostgreSQL + mlflow server on 127.0.0.1, and a sweep run
against it with `tracking=server`, checked through MLflow's REST API (plain HTTP, no MLflow client)."""

import ast
import csv
import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from forgetlab.server import LOOPBACK, ServerError, ServerState, TrackingServer, pg_bindir, start_mlflow
from tests.conftest import ROOT, run_train

FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]


def rest(uri: str, endpoint: str, body: dict | None = None, **query) -> dict:
    url = f"{uri}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (IPv4 and IPv6), from /proc/net/tcp*."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_tracking_server_config_defaults_to_the_local_server_and_lets_the_server_store_artifacts(compose_cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose_cfg("tracking=server")
    assert cfg.tracking.uri == "http://127.0.0.1:5001"
    assert cfg.tracking.artifact_location is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://login01:5001")
    assert compose_cfg("tracking=server").tracking.uri == "http://login01:5001"


def test_the_server_tool_runs_on_its_own_and_reports_a_stopped_server(tmp_path):
    """`make server` calls it as `python -m forgetlab.server`; it needs nothing else of forgetlab (an editable
    install's own finder module aside: setuptools' machinery, not forgetlab's code)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, forgetlab.server; print(sorted(m for m in sys.modules if 'forgetlab' in m and not m.startswith('__editable__')))"],
        capture_output=True, text=True, timeout=120,
    )
    assert ast.literal_eval(loaded.stdout) == ["forgetlab", "forgetlab.server"], loaded.stderr
    status = subprocess.run([sys.executable, "-m", "forgetlab.server", "status", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and status.stdout.strip() == "not running"


def test_mlflow_refuses_a_port_in_use_with_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start_mlflow(f"sqlite:///{tmp_path}/m.db", tmp_path / "a", tmp_path / "log", port=port)


@pytest.mark.slow
def test_joblib_sweep_against_the_server_is_a_parent_with_two_finished_jobs(tracking_server, tmp_path):
    # One test per server start (it costs ~10 s): the server's own properties are checked here too.
    state = tracking_server.state()
    uri = state.uri
    assert uri.startswith("http://127.0.0.1:")
    assert listening_addresses(state.port) == {"127.0.0.1"}
    assert listening_addresses(state.pg_port) == {"127.0.0.1"}
    assert tracking_server.start(port=0) == state  # a healthy server is left as it is

    sweep = (
        "-m", "seed=0,1", *FAST, "tracking=server", "tracking.experiment=server_sweep",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
    )
    proc = run_train(*sweep, f"hydra.sweep.dir={tmp_path}/sweep", env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 0, proc.stderr[-3000:]

    experiment = rest(uri, "experiments/get-by-name", experiment_name="server_sweep")["experiment"]
    runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parents = [r for r, t in zip(runs, tags) if t.get("forgetlab.kind") == "sweep"]
    jobs = [(r, t) for r, t in zip(runs, tags) if t.get("forgetlab.kind") == "train"]
    assert len(runs) == 3 and len(parents) == 1 and len(jobs) == 2
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED"

    for run, run_tags in jobs:
        run_id = run["info"]["run_id"]
        assert run["info"]["status"] == "FINISHED"
        assert run_tags["mlflow.parentRunId"] == parent_id
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        from forgetlab.contract import machine_tag

        assert "tracking.uri" not in params and run_tags[machine_tag("tracking.uri")] == uri  # a tag, not a param
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert {"final/acc", "final/bwt", "final/forgetting", "acc/task_0", "loss/train"} <= set(metrics)
        history = rest(uri, "metrics/get-history", run_id=run_id, metric_key="acc/task_0")["metrics"]
        assert len(history) >= 3 and history[0]["step"] == 0

        # Artifacts went through the server's proxy into its artifact root, not to a client-side path.
        assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:/")
        listed = rest(uri, "artifacts/list", run_id=run_id, path="eval")["files"]
        assert {f["path"] for f in listed} == {
            "eval/accuracy_matrix.csv", "eval/task_curve.parquet", "eval/sample_probe.npz"
        }
        assert "config.yaml" in {f["path"] for f in rest(uri, "artifacts/list", run_id=run_id)["files"]}
        query = urllib.parse.urlencode({"run_uuid": run_id, "path": "eval/accuracy_matrix.csv"})
        with urllib.request.urlopen(f"{uri}/get-artifact?{query}", timeout=30) as response:
            rows = list(csv.DictReader(io.StringIO(response.read().decode())))
        assert [r["after"] for r in rows] == ["init", "0", "1"]
        final_row = [float(rows[-1]["task_0"]), float(rows[-1]["task_1"])]
        assert metrics["final/acc"] == pytest.approx(sum(final_row) / 2)
        assert list(tracking_server.artifacts_dir.rglob(f"{run_id}/artifacts/eval/accuracy_matrix.csv"))

    # The runs are rows in PostgreSQL, the server's backend store.
    import psycopg2

    pg = tracking_server.postgres
    conn = psycopg2.connect(host=LOOPBACK, port=state.pg_port, user="forgetlab", password=pg.password, dbname="mlflow")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (int(experiment["experiment_id"]),))
            assert cur.fetchone()[0] == 3
    finally:
        conn.close()

    # Resume works against the server unchanged: the same sweep again skips both jobs, adds no run.
    again = run_train(*sweep, f"hydra.sweep.dir={tmp_path}/again", env={"MLFLOW_TRACKING_URI": uri})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[sweep] skip 2 of 2 jobs: FINISHED before" in again.stdout, again.stdout[-3000:]
    assert len(rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]) == 3

    # The report reads the runs and their artifacts through the server and logs itself there.
    report = subprocess.run(
        [sys.executable, str(ROOT / "analysis" / "report.py"), "--experiment", "server_sweep",
         "--tracking-uri", uri, "--out", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report" / "report.md").exists()
    with open(tmp_path / "report" / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 3  # parent and two jobs; the report run lives in its own reports experiment

    # A crashed MLflow server is restarted by `start` on the same port; the runs survive in PostgreSQL.
    os.killpg(state.mlflow_pid, signal.SIGKILL)
    restarted = tracking_server.start(port=state.port, workers=1)
    assert restarted.uri == uri and restarted.mlflow_pid != state.mlflow_pid
    assert len(rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, PostgreSQL runs as the 'postgres' user")
def test_a_state_dir_the_postgres_user_cannot_enter_is_refused_and_left_clean(tmp_path):
    # pytest's tmp_path lies under a mode-700 directory of root's.
    try:
        pg_bindir()
    except ServerError as error:
        pytest.skip(str(error))
    server = TrackingServer(tmp_path / "server")
    with pytest.raises(ServerError, match="'postgres' user, which cannot reach"):
        server.start(port=0)
    assert not (tmp_path / "server" / "postgres").exists()
    assert not (tmp_path / "server" / "server.json").exists()


def test_stop_leaves_alone_a_process_that_reused_the_servers_pid(tmp_path):
    # A state file from before a reboot names a pid that now belongs to something else.
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        server = TrackingServer(tmp_path)
        stale = ServerState("http://127.0.0.1:1", LOOPBACK, 1, 2, other.pid, mlflow_started="1")
        (tmp_path / "server.json").write_text(json.dumps(dataclasses.asdict(stale)))
        assert not server.healthy()
        server.stop()
        assert other.poll() is None  # still running
        assert server.state() is None
    finally:
        other.kill()
        other.wait()
