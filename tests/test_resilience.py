"""Pieces that keep a sweep alive: retried store calls, dead-process detection, divergence errors,
the resume query and determinism (in-process; the end-to-end sweeps are in test_sweeps.py)."""

import re
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from forgetlab.contract import (
    KIND_SWEEP, KIND_TRAIN, TAG_ERROR, TAG_HEARTBEAT, TAG_KIND, TAG_PARENT_RUN_ID, TAG_PROCESS, TAG_SWEEP_ID,
)
from forgetlab.assembly import build_trainer
from forgetlab.divergence import TrainingDiverged, WeightCheck
from forgetlab.experiment import RunContext, run_experiment
from forgetlab.tracking.liveness import Heartbeat, is_stale, process_identity
from forgetlab.tracking.resume import end_stale_sweeps, resume_decision
from forgetlab.tracking import store as store_module
from forgetlab.tracking.store import RetryingClient, StoreError

SMALL = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]", "eval.every_samples=200"]
DIVERGING = [  # found by search: NaN loss at update 7 with seed 0
    "network.activation=relu", "network.hidden_sizes=[64,64,64]", "network.output=softmax",
    "network.loss=cross_entropy", "network.init_scale=3", "algorithm.lr=1e6",
]


# --- retried store calls ------------------------------------------------------------------------


class FlakyStore:
    """Raises ``error`` on the first ``failures`` calls of ``log``, then succeeds."""

    def __init__(self, failures: int, error: MlflowException) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def log(self, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


def locked() -> MlflowException:
    return MlflowException("(sqlite3.OperationalError) database is locked", error_code=TEMPORARILY_UNAVAILABLE)


def test_transient_store_errors_are_retried_until_the_call_succeeds():
    store = FlakyStore(3, locked())
    client = RetryingClient("unused", client=store, first_delay_s=0.001)
    assert client.log(42) == 42 and store.calls == 4


def test_other_store_errors_and_exhausted_retries_are_raised():
    bad_value = FlakyStore(1, MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE))
    with pytest.raises(MlflowException, match="bad param"):
        RetryingClient("unused", client=bad_value, first_delay_s=0.001).log(1)
    assert bad_value.calls == 1
    always_locked = FlakyStore(100, locked())
    with pytest.raises(StoreError, match="unavailable through 4 attempts.*locked"):
        RetryingClient("unused", client=always_locked, attempts=4, first_delay_s=0.001).log(1)
    assert always_locked.calls == 4


def refused() -> MlflowException:
    return MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed with exception "
                           "Max retries exceeded (Caused by NewConnectionError: [Errno 111] Connection refused)")


def test_a_server_that_did_not_answer_is_not_asked_again_for_a_while(monkeypatch):
    """Each call to a dead server waits through MLflow's HTTP retries (~7 s) to fail alike: after the
    first, the calls of the process fail at once, on every client of that store, until the hold ends."""
    monkeypatch.setattr(store_module, "_unreachable", {})  # this test's own, not the process's
    uri = "http://127.0.0.1:9"
    dead = FlakyStore(100, refused())
    with pytest.raises(StoreError, match="failed: no answer to /api/2.0/mlflow/runs/log-batch"):
        RetryingClient(uri, client=dead).log(1)
    other_client = RetryingClient(uri, client=dead)
    with pytest.raises(StoreError, match="no answer to .*Not asked again"):
        other_client.log(1)
    assert dead.calls == 1
    RetryingClient("sqlite:///elsewhere.db", client=FlakyStore(0, refused())).log(1)  # another store is asked
    until, failure = store_module._unreachable[uri]
    assert until > time.monotonic() + store_module.UNREACHABLE_HOLD_S - 5
    store_module._unreachable[uri] = (time.monotonic() - 1, failure)  # the hold is over: asked again
    back = FlakyStore(0, refused())
    assert RetryingClient(uri, client=back).log(7) == 7 and back.calls == 1


# --- dead-process detection ---------------------------------------------------------------------


def fake_run(tags: dict, start_s: float) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(tags=tags), info=SimpleNamespace(start_time=int(start_s * 1000)))


def test_a_run_of_this_machine_is_stale_exactly_when_its_process_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = fake_run({TAG_PROCESS: process_identity(child.pid)}, start_s=0)
        assert not is_stale(alive, stale_after_s=1)  # an old run, but its process lives
    finally:
        child.kill()
        child.wait()
    assert is_stale(alive, stale_after_s=1e9)  # the same tag once the process is gone
    me = process_identity().split()
    reused_pid = " ".join(me[:4] + [str(int(me[4]) + 1)])  # our pid, another start time
    assert is_stale(fake_run({TAG_PROCESS: reused_pid}, start_s=time.time()), stale_after_s=1e9)
    other_container = " ".join(me[:2] + ["pid:[1]"] + me[3:])  # same kernel, another pid namespace
    assert not is_stale(fake_run({TAG_PROCESS: other_container}, start_s=time.time()), stale_after_s=600)


@pytest.mark.slow
def test_a_sweep_whose_process_died_is_ended_killed_with_its_orphaned_jobs(sqlite_uri):
    """A sweeper killed with ``kill -9`` leaves its parent RUNNING; the next sweep of the experiment
    ends it KILLED, with the jobs it left RUNNING, and leaves live sweeps and unjudgeable ones alone."""
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("sweeps")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead_process = process_identity(child.pid)
    child.kill()
    child.wait()

    def parent(**tags):  # started an hour ago: a parent without a heartbeat would look stale
        return client.create_run(exp, start_time=int((time.time() - 3600) * 1000),
                                 tags={TAG_KIND: KIND_SWEEP, **tags}).info.run_id

    dead = parent(**{TAG_PROCESS: dead_process, TAG_SWEEP_ID: "s-dead"})
    orphan = client.create_run(exp, tags={TAG_KIND: KIND_TRAIN, TAG_PARENT_RUN_ID: dead,
                                          TAG_PROCESS: dead_process}).info.run_id
    live = parent(**{TAG_PROCESS: process_identity()})
    unrecorded = parent()  # written before parents named their process: it may still run
    finished = parent(**{TAG_PROCESS: dead_process})
    client.set_terminated(finished, "FINISHED")

    assert end_stale_sweeps(RetryingClient(sqlite_uri), exp, stale_after_s=600) == [dead]
    status = {run_id: client.get_run(run_id).info.status for run_id in (dead, orphan, live, unrecorded, finished)}
    assert status == {dead: "KILLED", orphan: "KILLED", live: "RUNNING", unrecorded: "RUNNING", finished: "FINISHED"}
    assert client.get_run(dead).data.tags[TAG_ERROR].startswith("Stale: the sweep process that ran it")
    assert "its job ended with it" in client.get_run(orphan).data.tags[TAG_ERROR]


def test_a_run_of_another_machine_is_stale_when_its_heartbeat_is_old():
    now = 1_000_000.0
    other = "node7 00000000-other-boot pid:[4026531836] 1234 5678"
    fresh = fake_run({TAG_PROCESS: other, TAG_HEARTBEAT: str(now - 30)}, start_s=now - 5000)
    old = fake_run({TAG_PROCESS: other, TAG_HEARTBEAT: str(now - 700)}, start_s=now - 5000)
    assert not is_stale(fresh, stale_after_s=600, now=now)
    assert is_stale(old, stale_after_s=600, now=now)
    never_beat = fake_run({}, start_s=now - 700)  # no tags: judged by its start time
    assert is_stale(never_beat, stale_after_s=600, now=now)
    assert not is_stale(fake_run({}, start_s=now - 10), stale_after_s=600, now=now)


def test_heartbeat_beats_until_stopped():
    beats = []
    store = SimpleNamespace(set_tag=lambda run_id, key, value: beats.append((run_id, key, float(value))))
    heartbeat = Heartbeat(store, "run1", interval_s=0.02)
    time.sleep(0.2)
    heartbeat.stop()
    n = len(beats)
    time.sleep(0.05)
    assert n >= 3 and len(beats) == n  # the first beat at start, then periodic, none after stop
    assert all(b[:2] == ("run1", TAG_HEARTBEAT) and abs(b[2] - time.time()) < 60 for b in beats)


@pytest.mark.slow
def test_resume_query_skips_finished_and_live_runs_and_kills_stale_ones(sqlite_uri):
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("plan")
    beat = f"{time.time():.0f}"

    def run(config_hash, status, process, heartbeat=beat):
        tags = {"forgetlab.config_hash": config_hash, "forgetlab.kind": "train",
                TAG_PROCESS: process, TAG_HEARTBEAT: heartbeat}
        run_id = client.create_run(exp, tags=tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run("done", "FINISHED", process_identity())
    run("failed", "FAILED", process_identity())
    stale_here = run("dead", "RUNNING", process_identity(dead.pid))
    stale_there = run("lost", "RUNNING", "node7 other-boot pid:[1] 1 2", heartbeat=f"{time.time() - 3600:.0f}")
    run("busy", "RUNNING", "node7 other-boot pid:[1] 1 2")

    def decide(config_hash, resume=True):
        return resume_decision(RetryingClient(sqlite_uri), exp, [config_hash], code_version=None, resume=resume,
                               stale_after_s=600, label=f"x={config_hash}")

    def skip(config_hash, resume=True):
        return decide(config_hash, resume).skip

    reasons = {h: skip(h) for h in ("done", "failed", "dead", "lost", "busy", "new")}
    assert "FINISHED" in reasons["done"]
    # A live run elsewhere does not make its job done: it is named, so the sweep can report it.
    assert reasons["busy"] is None and "still RUNNING" in decide("busy").running_reason
    assert all(reasons[h] is None for h in ("failed", "dead", "lost", "new"))
    for run_id in (stale_here, stale_there):
        stale = client.get_run(run_id)
        assert stale.info.status == "KILLED" and "gone" in stale.data.tags["forgetlab.error"]

    assert skip("done", resume=False) is None  # tracking.resume=false trains finished configs again


# --- divergence ---------------------------------------------------------------------------------


def test_a_diverging_run_says_at_which_update(compose_cfg):
    trainer = build_trainer(compose_cfg("tracking.enabled=false", *SMALL, *DIVERGING))
    with np.errstate(all="ignore"):
        (result,) = trainer.run()
    assert isinstance(result.error, TrainingDiverged)
    assert re.search(r"diverged at update 7 \(7 samples seen", str(result.error))
    assert trainer.algorithm.updates == 7  # training stops when no member is left
    assert [p.samples_seen for p in result.points] == [0]  # the points before it, none after


LEARNERS = ["mlp_backprop", "rnn_bptt_epochwise", "rnn_bptt_truncated", "rnn_rtrl"]


@pytest.mark.parametrize("learner", LEARNERS)
def test_exploding_weights_stop_every_algorithm_even_while_the_loss_stays_finite(compose_cfg, learner):
    """lr=1e6 saturates the units: the loss stays finite and these runs used to end FINISHED at chance."""
    trainer = build_trainer(compose_cfg(f"learner={learner}", "algorithm.lr=1e6", "tracking.enabled=false",
                                        "trainer.epochs_per_task=1", "eval.every_samples=100"))
    with np.errstate(all="ignore"):
        (result,) = trainer.run()
    assert isinstance(result.error, TrainingDiverged)
    assert re.match(r"Training diverged by update \d+ \(100 samples seen, stage 'digits_01'\): the root mean "
                    r"square of the weights is", str(result.error)), result.error
    assert [p.samples_seen for p in result.points] == [0]  # the point of the diverged weights is not recorded


def test_the_weight_bound_follows_each_members_initial_scale():
    params = {"W": np.stack([np.full((10, 10), 0.1), np.full((10, 10), 50.0)]), "b": np.zeros((2, 10))}
    check = WeightCheck(params)
    params["W"][0] = 900.0  # RMS 857: large, but under 1000 x max(1, 0.095)
    params["W"][1] = 40_000.0  # a large init_scale: the bound grows with it (50 x 1000 x 0.95)
    assert check.exceeded() == []
    params["W"][1] = 60_000.0
    ((member, what),) = check.exceeded()
    assert member == 1 and f"above {check.limit[1]:.3g}" in what and 47_000 < check.limit[1] < 48_000
    params["W"][0, 0, 0] = np.nan
    assert [m for m, _ in check.exceeded()] == [0, 1] and "is nan" in check.exceeded()[0][1]


def test_a_stretch_whose_errors_are_all_exactly_zero_changes_no_weight(compose_cfg):
    """Saturated outputs give error 0 exactly; truncated BPTT then had no gradient to apply and crashed.
    The update still happens, as a zero step: the members of an ensemble share the update schedule,
    so whether an update happens cannot depend on the values of one member's errors."""
    trainer = build_trainer(compose_cfg("learner=rnn_bptt_truncated", "tracking.enabled=false"))
    algorithm, net = trainer.algorithm, trainer.network
    stage = trainer.stages[0]
    x, y, mask = stage.x[:1], stage.y[:1], stage.mask[:1]
    net.W_hy[:] = 0.0
    net.b_y[:] = np.where(y[0] > 0, 800.0, -800.0)  # the sigmoid output equals the target to the last bit
    before = {n: p.copy() for n, p in net.params.items()}
    algorithm.learn(x, y, mask)
    assert algorithm.updates == 1 and all(np.array_equal(before[n], p) for n, p in net.params.items())


@pytest.mark.slow
@pytest.mark.parametrize("learner", LEARNERS)
def test_a_run_with_exploding_weights_ends_failed_with_the_reason(compose_cfg, sqlite_uri, learner):
    cfg = compose_cfg(f"learner={learner}", "algorithm.lr=1e6", f"tracking.uri={sqlite_uri}",
                      "tracking.experiment=explode", "trainer.epochs_per_task=1", "task_sequence.n_tasks=2")
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged):
        run_experiment(cfg, RunContext(quiet=True))
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("explode").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["forgetlab.error"].startswith("TrainingDiverged: Training diverged by update")


# --- determinism --------------------------------------------------------------------------------


def metric_histories(client, run_id) -> dict:
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in sorted(keys)}


@pytest.mark.slow
def test_same_config_and_seed_give_bit_identical_metrics(compose_cfg, sqlite_uri):
    histories = []
    for seed in (0, 0, 1):
        cfg = compose_cfg(f"tracking.uri={sqlite_uri}", "tracking.experiment=determinism", *SMALL, f"seed={seed}")
        run_experiment(cfg, RunContext(quiet=True))
    client = MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("determinism").experiment_id],
                              order_by=["attributes.start_time ASC"])
    histories = [metric_histories(client, r.info.run_id) for r in runs]
    assert len(histories) == 3 and len(histories[0]) > 5
    assert histories[0] == histories[1]  # float equality of every value at every step
    assert histories[0]["acc/task_0"] != histories[2]["acc/task_0"]


@pytest.mark.slow
def test_a_sweep_job_that_starts_after_its_config_finished_elsewhere_is_skipped(compose_cfg, sqlite_uri):
    cfg = compose_cfg(f"tracking.uri={sqlite_uri}", "tracking.experiment=late", *SMALL)
    run_experiment(cfg, RunContext(quiet=True))
    in_sweep = RunContext(sweep_id="s", parent_run_id="p", quiet=True)
    assert run_experiment(cfg, in_sweep) == {}  # skipped: no second run
    client = MlflowClient(sqlite_uri)
    assert len(client.search_runs([client.get_experiment_by_name("late").experiment_id])) == 1


@pytest.mark.slow
def test_a_write_blocked_longer_than_mlflows_busy_timeout_is_retried(tmp_path):
    """MLflow waits 20 s on a locked sqlite file, then raises 'database is locked'; a writer that
    holds the lock for longer (a slow disk, many writers) must not fail the run."""
    import sqlite3
    import threading

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = RetryingClient(uri)
    run_id = client.create_run(client.create_experiment("locked")).info.run_id
    locked_now = threading.Event()

    def hold_lock(seconds: float) -> None:
        con = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked_now.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    holder = threading.Thread(target=hold_lock, args=(21.0,))
    holder.start()
    locked_now.wait()
    start = time.time()
    client.log_metric(run_id, "m", 1.5, step=3)
    holder.join()
    assert time.time() - start > 20  # the call really was blocked past MLflow's own timeout
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "m")] == [(3, 1.5)]
