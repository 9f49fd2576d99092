"""A run's params, tags and metrics (and at its end its status) sent to its store in one call: ``log_batch``.

On a tracking server, or a database other than sqlite, this is MLflow's ``log_batch`` (split at its
limits of 1000 metrics and 100 params or tags per call). On a local sqlite store, the usual one,
MLflow's ``log_batch`` builds one SQLAlchemy ORM object per value and reads the run back four
times: ~50-90 µs of CPU per metric value, which made metrics the larger half of what tracking cost
a run (docs/performance.md, "Tracking overhead"). Here the same rows go into the same tables
(``metrics``, ``latest_metrics``, ``params``, ``tags``, named by MLflow's own table definitions)
in one transaction of bulk inserts, after MLflow's own validation of every value, in MLflow's
session (its pragmas, its locking errors, which ``RetryingClient``'s retries know). What MLflow
treats specially falls back to its ``log_batch``: a run-name tag (it renames the run), and a param
that is already there (MLflow accepts it unchanged and refuses a changed value).
tests/test_batch.py checks the rows table by table against MLflow's ``log_batch``.

``artifact_repository`` is the other call a run makes cheaper: MLflow's client reads the whole run
back to find where its artifacts go, which a run knows from ``create_run``.
"""

from __future__ import annotations

from typing import Any, Sequence

import sqlalchemy
from mlflow.entities import LifecycleStage, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, _validate_batch_log_data

from forgetlab.tracking.store import RetryingClient, with_retries

# The latest value of a key is the one with the largest (step, timestamp, value), as in MLflow's
# ``_update_latest_metrics_if_necessary``.
INSERT_METRICS = ("INSERT OR IGNORE INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
                  "VALUES (?, ?, ?, ?, ?, ?)")  # an identical row already there: MLflow keeps one
UPSERT_LATEST = (
    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, "
    "step = excluded.step, is_nan = excluded.is_nan "
    "WHERE (excluded.step, excluded.timestamp, excluded.value) > "
    "(latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)"
)
INSERT_PARAMS = "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)"
END_RUN = "UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?"
UPSERT_TAGS = ("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?) "
               "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value")


def log_batch(client: RetryingClient, run_id: str, *, metrics: Sequence[Metric] = (),
              params: Sequence[Param] = (), tags: Sequence[RunTag] = (), end_status: str | None = None) -> None:
    """Send ``metrics``, ``params`` and ``tags`` of ``run_id`` and, with ``end_status``, end the run
    in that status (``FINISHED``, ``FAILED``, ``KILLED``: what ``MlflowClient.set_terminated`` does,
    the end time now): one transaction on a local sqlite store, MLflow's calls elsewhere."""
    if not (metrics or params or tags or end_status):
        return
    store = sqlite_store(client)
    if store is not None and not any(tag.key == MLFLOW_RUN_NAME for tag in tags):
        try:
            with_retries(lambda: _write(store, run_id, metrics, params, tags, end_status), client.tracking_uri)
            return
        except MlflowException as error:
            if not isinstance(error.__cause__, sqlalchemy.exc.IntegrityError):
                raise
            # a param logged before (the only unique key inserted, not upserted): MLflow decides
    
    _mlflow_log_batch(client, run_id, list(metrics), list(params), list(tags))
    if end_status is not None:
        client.set_terminated(run_id, end_status)


def sqlite_store(client: RetryingClient) -> Any:
    """MLflow's SQLAlchemy store behind ``client`` when it is an sqlite file, else None."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if type(store) is SqlAlchemyStore and store.db_type == "sqlite":
        return store
    return None


def _mlflow_log_batch(client: RetryingClient, run_id: str, metrics: list[Metric], params: list[Param],
                      tags: list[RunTag]) -> None:
    """MLflow's ``log_batch``, in as few calls as its limits allow (100 params, 100 tags and 1000
    values in all per call)."""
    while metrics or params or tags:
        some_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        some_tags, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = MAX_ENTITIES_PER_BATCH - len(some_params) - len(some_tags)
        some_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=some_metrics, params=some_params, tags=some_tags)


def _write(store: Any, run_id: str, metrics: Sequence[Metric], params: Sequence[Param],
           tags: Sequence[RunTag], end_status: str | None) -> None:
    metrics, params, tags = _validate_batch_log_data(metrics, params, tags)
    rows, seen = [], set()
    for metric in metrics:
        if metric in seen:
            continue
        seen.add(metric)
        is_nan, value = store.sanitize_metric_value(metric.value)
        rows.append((metric.key, value, metric.timestamp, metric.step, is_nan, run_id))
    latest: dict[str, tuple] = {}
    for row in rows:
        if row[0] not in latest or (row[3], row[2], row[1]) > (latest[row[0]][3], latest[row[0]][2], latest[row[0]][1]):
            latest[row[0]] = row
    with store.ManagedSessionMaker(read_only=False) as session:
        connection = session.connection()
        stage = connection.exec_driver_sql("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).scalar()
        if stage is None:
            raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
        if stage != LifecycleStage.ACTIVE:
            raise MlflowException(f"The run {run_id} must be in the 'active' state. Current state is {stage}.",
                                  INVALID_PARAMETER_VALUE)
        if params:
            connection.exec_driver_sql(INSERT_PARAMS, [(p.key, p.value, run_id) for p in params])
        if tags:
            connection.exec_driver_sql(UPSERT_TAGS, [(t.key, t.value, run_id) for t in tags])
        if rows:
            connection.exec_driver_sql(INSERT_METRICS, rows)
            connection.exec_driver_sql(UPSERT_LATEST, list(latest.values()))
        if end_status is not None:
            connection.exec_driver_sql(END_RUN, (RunStatus.to_string(RunStatus.from_string(end_status)),
                                                 get_current_time_millis(), run_id))


def artifact_repository(client: RetryingClient, artifact_uri: str) -> Any:
    """MLflow's artifact repository at ``artifact_uri`` (a run's ``info.artifact_uri``), resolved as
    its client resolves it."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)
