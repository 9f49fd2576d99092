"""``tracking.batch.log_batch`` writes what MLflow's ``log_batch`` writes, row for row."""

from __future__ import annotations

import math
import sqlite3

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from forgetlab.tracking import batch
from forgetlab.tracking.store import open_store

TABLES = {"metrics": "key, value, timestamp, step, is_nan", "latest_metrics": "key, value, timestamp, step, is_nan",
          "params": "key, value", "tags": "key, value"}


def rows(path, run_id: str) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as con:
        return {table: sorted(con.execute(f"SELECT {columns} FROM {table} WHERE run_uuid = ?", (run_id,)).fetchall(),
                              key=repr)
                for table, columns in TABLES.items()}


def batches() -> list[dict]:
    """Two flushes of a run: params and tags once, metrics with NaN, infinities, a duplicate, a key
    whose latest value comes in the first batch (an older step in the second) and one in the second."""
    first = [Metric("acc/task_0", 0.5, 1000, 0), Metric("acc/task_0", 0.75, 1001, 100),
             Metric("loss/train", math.nan, 1000, 0), Metric("loss/train", math.inf, 1001, 100),
             Metric("loss/task_0", -math.inf, 1000, 0), Metric("loss/task_0", -math.inf, 1000, 0)]
    second = [Metric("acc/task_0", 0.25, 1002, 50), Metric("loss/train", 1.5, 1003, 200),
              Metric("loss/train", 1.5, 1002, 200), Metric("final/acc", 0.9, 1004, 200)]
    return [
        {"metrics": first, "params": [Param("algorithm.lr", "0.5"), Param("seed", "3")],
         "tags": [RunTag("forgetlab.kind", "train"), RunTag("note", "a")]},
        {"metrics": second, "tags": [RunTag("note", "b"), RunTag("mlflow.loggedArtifacts", "[]")]},
    ]


@pytest.fixture
def client(tmp_path):
    return open_store(f"sqlite:///{tmp_path}/mlflow.db")


def test_the_rows_equal_those_of_mlflows_log_batch(client, tmp_path):
    experiment = client.create_experiment("e")
    ours, theirs = (client.create_run(experiment, run_name="r").info.run_id for _ in range(2))
    assert batch.sqlite_store(client) is not None
    for sent in batches():
        batch.log_batch(client, ours, **sent)
        client.log_batch(theirs, **sent)
    assert rows(tmp_path / "mlflow.db", ours) == rows(tmp_path / "mlflow.db", theirs)
    mine, reference = client.get_run(ours).data, client.get_run(theirs).data
    assert (mine.metrics, mine.params, mine.tags) == (reference.metrics, reference.params, reference.tags)
    assert mine.metrics["acc/task_0"] == 0.75 and mine.metrics["loss/train"] == 1.5
    history = [(m.step, m.value) for m in client.get_metric_history(ours, "acc/task_0")]
    assert sorted(history) == [(0, 0.5), (50, 0.25), (100, 0.75)]


def test_a_param_sent_again_is_mlflows_to_judge(client):
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    batch.log_batch(client, run_id, params=[Param("seed", "3")])
    batch.log_batch(client, run_id, params=[Param("seed", "3")], metrics=[Metric("m", 1.0, 1, 0)])  # unchanged: accepted
    assert client.get_run(run_id).data.metrics == {"m": 1.0}
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        batch.log_batch(client, run_id, params=[Param("seed", "4")])


def test_invalid_values_and_deleted_runs_are_refused_as_mlflow_refuses_them(client):
    experiment = client.create_experiment("e")
    run_id = client.create_run(experiment).info.run_id
    with pytest.raises(MlflowException, match="Invalid value"):
        batch.log_batch(client, run_id, metrics=[Metric("m", "not a number", 1, 0)])
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        batch.log_batch(client, run_id, metrics=[Metric("m", 1.0, 1, 0)])


def test_other_stores_get_mlflows_log_batch_within_its_limits():
    calls = []

    class Client:  # stands in for a tracking server's client: no sqlite store behind it
        def log_batch(self, run_id, metrics, params, tags):
            assert len(params) <= 100 and len(tags) <= 100 and len(metrics) + len(params) + len(tags) <= 1000
            calls.append((len(metrics), len(params), len(tags)))

        def set_terminated(self, run_id, status):
            calls.append(status)

    batch.log_batch(Client(), "r", metrics=[Metric("m", 1.0, 1, s) for s in range(1500)],
                    params=[Param(f"p{i}", "v") for i in range(150)], end_status="FINISHED")
    assert calls == [(900, 100, 0), (600, 50, 0), "FINISHED"]


def test_a_run_that_does_not_exist_is_not_found(client):
    with pytest.raises(MlflowException, match="not found"):
        batch.log_batch(client, "0" * 32, metrics=[Metric("m", 1.0, 1, 0)])


def test_a_run_ended_in_the_batch_is_ended_as_set_terminated_ends_it(client):
    experiment = client.create_experiment("e")
    ours, theirs = (client.create_run(experiment, run_name="r").info.run_id for _ in range(2))
    batch.log_batch(client, ours, metrics=[Metric("m", 1.0, 1, 0)], end_status="FAILED")
    client.log_batch(theirs, metrics=[Metric("m", 1.0, 1, 0)])
    client.set_terminated(theirs, "FAILED")
    mine, reference = client.get_run(ours).info, client.get_run(theirs).info
    assert (mine.status, mine.lifecycle_stage) == (reference.status, reference.lifecycle_stage) == ("FAILED", "active")
    assert abs(mine.end_time - reference.end_time) < 60_000
    finished = client.search_runs([experiment], "attributes.status = 'FAILED'")
    assert {r.info.run_id for r in finished} == {ours, theirs}
