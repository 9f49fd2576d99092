"""MLflow side of a training run: what docs/tracking.md specifies, under the names of ``forgetlab.contract``.

Everything goes through an explicit ``MlflowClient`` and run id (no global active run), so jobs in
threads or worker processes never share state. A run costs its store few calls: ``create_run``
with every tag; one ``batch.log_batch`` (one transaction on sqlite) with the params and the values
of the first evaluation point; one more whenever an evaluation point comes ``FLUSH_SECONDS`` after
the last; at the end the artifacts in one upload, then one batch with the final metrics and the
tag that shows the accuracy table, then the end. A stop or a failure sends what is buffered. The
run's figures are not drawn here: ``run_figures.add_figures`` draws them from the artifacts once
the run has ended (the sweep's parent after its jobs, a single run's process after its run).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import tempfile
import time
import traceback
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS
from forgetlab import contract
from forgetlab.contract import NEUTRAL_ADDITIONS, flatten
from forgetlab.tracking.batch import log_batch
from forgetlab.tracking.code_version import CodeVersion, code_version
from forgetlab.tracking.liveness import Heartbeat, beat_value, process_identity
from forgetlab.tracking.run_figures import stage_labels
from forgetlab.tracking.storage import log_artifacts
from forgetlab.tracking.store import RetryingClient, StoreError, open_store
from forgetlab.trainer import Callback, EvalPoint, Trainer, TrainingResult
from forgetlab.strategies import RECORD as STRATEGY_RECORD
from forgetlab.update_probe import RECORD as UPDATE_PROBE_RECORD

log = logging.getLogger(__name__)

# Keys left out of the config hash: where results are stored, and the guard's limits, do not change what they are.
UNHASHED_GROUPS = ("tracking", "paths", "guard")
FLUSH_SECONDS = 10.0  # buffered values are sent at the first evaluation point this long after the last flush


def as_container(cfg: Any) -> dict[str, Any]:
    """A run's typed config (``forgetlab.config.Config``, which tracking does not import) as plain
    nested values; a plain dict as it is."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg


def config_hash(cfg: Any) -> str:
    """Hash of the resolved config without tracking/paths keys: equal hashes = the same experiment."""
    return _hash(as_container(cfg))


def config_hash_before_trainer_group(cfg: Any) -> str:
    """The hash the same experiment had before ``epochs_per_task``, ``batch_size`` and ``shuffle``
    moved from ``algorithm`` into the ``trainer`` group: the hash that runs recorded then carry, so
    that resuming finds them (docs/tracking.md#sweeps-resume-failures-validation)."""
    container = copy.deepcopy(as_container(cfg))
    container["algorithm"] = {**container["algorithm"], **container.pop("trainer")}
    return _hash(container)


def resume_hashes(cfg: Any) -> tuple[str, ...]:
    """Every ``forgetlab.config_hash`` a run of this config may carry, the current layout's first."""
    return config_hash(cfg), config_hash_before_trainer_group(cfg)


def _hash(container: dict[str, Any]) -> str:
    kept = {k: dict(v) if isinstance(v, dict) else v for k, v in container.items() if k not in UNHASHED_GROUPS}
    for dotted, neutral in NEUTRAL_ADDITIONS.items():
        group, key = dotted.split(".")
        if group in kept and key in kept[group] and kept[group][key] == neutral:
            del kept[group][key]
            if not kept[group]:  # a group added later (backend), at its neutral values throughout
                del kept[group]
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def get_or_create_experiment(client: RetryingClient, name: str, artifact_location: str | None) -> str:
    """Experiment id; creation tolerates a concurrent creator. The experiment is marked as model
    training (``contract.EXPERIMENT_TAG_KIND``) unless it already says what it is, and carries the run
    table's view for comparing (``contract.compare_view``)."""
    kind = {contract.EXPERIMENT_TAG_KIND: contract.EXPERIMENT_KIND_TRAINING,
            contract.EXPERIMENT_TAG_COMPARE_VIEW: contract.compare_view()}
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        for tag, value in kind.items():  # created before forgetlab set the tag, or with an older view
            if exp.tags.get(tag) != value and (tag != contract.EXPERIMENT_TAG_KIND or tag not in exp.tags):
                client.set_experiment_tag(exp.experiment_id, tag, value)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location, tags=kind)
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def split_params(cfg: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The flattened config as (params, tags): keys naming machine paths become tags (``contract.machine_tag``)."""
    params, tags = {}, {}
    for key, value in flatten(cfg).items():
        if contract.is_machine_key(key):
            tags[contract.machine_tag(key)] = value
        else:
            params[key] = value
    return params, tags


def now_ms() -> int:
    return int(time.time() * 1000)


class MlflowRun(Callback):
    """One training run in MLflow, of member ``member`` of the trainer it follows (a trainer
    ``Callback``); then ``finish`` or ``fail``. ``code_diff`` (the uncommitted changes) goes into
    the run's one artifact upload, ``contract.ARTIFACT_CODE_DIFF``."""

    def __init__(
        self,
        client: RetryingClient,
        experiment_id: str,
        *,
        run_name: str,
        params: dict[str, str],
        tags: dict[str, str],
        heartbeat_s: float,
        member: int = 0,
        code_diff: str = "",
    ) -> None:
        self.client, self.experiment_id, self.run_name, self.member = client, experiment_id, run_name, member
        self.code_diff = code_diff
        # The first heartbeat is a tag of the new run, not a call of its own.
        tags = {**tags, contract.TAG_PROCESS: process_identity(), contract.TAG_HEARTBEAT: beat_value()}
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        self._params = [Param(k, v) for k, v in params.items()]  # sent with the first evaluation point
        self._buffer: list[Metric] = []
        self._flushed_at: float | None = None  # never: the first evaluation point flushes
        self.heartbeat = Heartbeat(client, self.run_id, heartbeat_s, beat_now=False)

    # --- callback ---------------------------------------------------------------------------

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        point = points.get(self.member)
        if point is not None:
            self.record(point)

    def record(self, point: EvalPoint) -> None:
        # Wall-clock time of the evaluation, so MLflow's "Wall time" and "Relative time" axes mean something.
        step, ts = point.samples_seen, now_ms()
        m = self._buffer
        for j, (acc, loss) in enumerate(zip(point.accuracy.tolist(), point.loss.tolist())):
            m.append(Metric(contract.metric_task_accuracy(j), acc, ts, step))
            m.append(Metric(contract.metric_task_loss(j), loss, ts, step))
        if point.tasks_trained:
            seen = float(np.mean(point.accuracy[: point.tasks_trained]))
            m.append(Metric(contract.METRIC_SEEN_ACCURACY, seen, ts, step))
        if np.isfinite(point.train_loss):
            m.append(Metric(contract.METRIC_TRAIN_LOSS, float(point.train_loss), ts, step))
        m.append(Metric(contract.METRIC_UPDATES, float(point.updates), ts, step))
        if self._flushed_at is None or time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self, tags: dict[str, str] | None = None, end_status: str | None = None) -> None:
        """Send what is buffered (the params, until they are sent), with ``tags``, and end the run
        with ``end_status`` when given: one batch."""
        log_batch(self.client, self.run_id, metrics=self._buffer, params=self._params,
                  tags=[RunTag(k, v) for k, v in (tags or {}).items()], end_status=end_status)
        self._buffer, self._params = [], []
        self._flushed_at = time.monotonic()

    # --- end of run -------------------------------------------------------------------------

    def finish(self, result: TrainingResult, resolved_config_yaml: str) -> dict[str, float]:
        """End the run FINISHED: its artifacts in one upload, then one batch with the final metrics,
        the rest of the buffer, the tag that shows the accuracy table (as ``MlflowClient.log_table``
        sets it, once the table is stored: ``log_table`` would upload it on its own and read the run
        back) and the end."""
        final = contract.final_metrics(result.accuracy_matrix, result.chance)
        # At step 0, their only step: MLflow's chart view draws a metric whose last step is 0 as bars
        # (one per run), where a step of samples seen would make a scatter on a narrow axis. They are
        # written with the run's end, in its last write (docs/tracking.md: what kill -9 loses).
        self._buffer += [Metric(k, v, now_ms(), contract.FINAL_STEP) for k, v in final.items()]
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / contract.ARTIFACT_CONFIG).write_text(resolved_config_yaml)
            write_eval_artifacts(result, root)
            write_table(accuracy_table(result), root / contract.ARTIFACT_ACCURACY_TABLE)
            self.upload(root)  # all or nothing (tracking/storage.py)
        # The tag that makes the UI show the table, as MlflowClient.log_table sets it on a new run,
        # once the table is stored: log_table would upload it on its own and read the whole run back.
        table_tag = json.dumps([{"path": contract.ARTIFACT_ACCURACY_TABLE, "type": "table"}])
        self.heartbeat.stop()
        self.flush(tags={MLFLOW_LOGGED_ARTIFACTS: table_tag}, end_status=RunStatus.to_string(RunStatus.FINISHED))
        return final

    def upload(self, root: Path) -> None:
        """The files under ``root``, and the code diff, as the run's artifacts, in one upload to the
        run's artifact location (known since ``create_run``: MLflow's client would read the run back)."""
        if self.code_diff:
            diff = root / contract.ARTIFACT_CODE_DIFF
            diff.parent.mkdir(parents=True, exist_ok=True)
            diff.write_text(self.code_diff)
        log_artifacts(self.client, self.run_id, self.artifact_uri, root)

    def fail(self, error: BaseException) -> None:
        """End the run FAILED with the reason as a tag and the traceback as an artifact."""
        self.heartbeat.stop()
        reason = failure_reason(error)[:5000]
        try:
            self.flush(tags={contract.TAG_ERROR: reason})
        except Exception:  # the failure may be the store itself; still try to mark the run
            with contextlib.suppress(Exception):
                self.client.set_tag(self.run_id, contract.TAG_ERROR, reason)
        tb = "".join(traceback.format_exception(error))
        try:
            try:  # the failure may be the artifact disk itself: the run still ends FAILED with its reason
                with tempfile.TemporaryDirectory() as tmp:
                    (Path(tmp) / contract.ARTIFACT_TRACEBACK).write_text(tb)
                    self.upload(Path(tmp))
            except (OSError, StoreError) as error:
                log.warning("[%s] could not store its traceback: %s", self.run_name, error)
        finally:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self.client.set_terminated(self.run_id, status)


def failure_reason(error: BaseException) -> str:
    """``forgetlab.error`` for a run that raised ``error``: a stop signal's own reason ("Terminated by
    SIGTERM"), else the exception's type and message."""
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "Interrupted (KeyboardInterrupt)"
    return f"{type(error).__name__}: {error}"


def log_code_diff(client: RetryingClient, run_id: str, code: CodeVersion) -> None:
    """The uncommitted changes as the artifact ``contract.ARTIFACT_CODE_DIFF`` (nothing when clean)."""
    if not code.diff:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(contract.ARTIFACT_CODE_DIFF).name
        path.write_text(code.diff)
        client.log_artifact(run_id, str(path), str(Path(contract.ARTIFACT_CODE_DIFF).parent))


def source_tags(code: CodeVersion, source: str | None) -> dict[str, str]:
    """The tags that say which code ran (``CodeVersion.tags``) and from which entry point."""
    tags = code.tags()
    if source:
        tags[contract.TAG_SOURCE_NAME] = source
        tags[contract.TAG_SOURCE_TYPE] = contract.SOURCE_TYPE_LOCAL
    return tags


def accuracy_table(result: TrainingResult) -> pd.DataFrame:
    """The accuracy matrix as the UI's table: a column ``after`` naming each row, one column per task."""
    table = pd.DataFrame(result.accuracy_matrix.round(4), columns=result.task_names)  # exact values: eval/*.csv
    table.insert(0, "after", stage_labels(result.task_names, len(table) - 1))
    return table


def write_table(table: pd.DataFrame, path: Path) -> None:
    """``table`` in the JSON layout of ``MlflowClient.log_table``, which the UI reads."""
    table.to_json(path, orient="split", index=False, date_format="iso")


def write_eval_artifacts(result: TrainingResult, root: Path) -> None:
    """The eval artifacts (``contract.EVAL_ARTIFACTS``, see docs/tracking.md) under the artifact root ``root``."""
    (root / contract.EVAL_DIR).mkdir()
    R = result.accuracy_matrix
    rows = ["init"] + [str(i) for i in range(R.shape[0] - 1)]
    matrix = pd.DataFrame(R, columns=[f"task_{j}" for j in range(R.shape[1])])
    matrix.insert(0, "after", rows)
    matrix.to_csv(root / contract.ARTIFACT_ACCURACY_MATRIX, index=False)

    n_tasks = len(result.task_names)
    points = result.points
    curve = pd.DataFrame(
        {
            "samples_seen": np.repeat([p.samples_seen for p in points], n_tasks),
            "updates": np.repeat([p.updates for p in points], n_tasks),
            "task": np.tile(np.arange(n_tasks), len(points)),
            "accuracy": np.concatenate([p.accuracy for p in points]),
            "loss": np.concatenate([p.loss for p in points]),
            "stage": np.repeat([p.stage for p in points], n_tasks),
            "boundary": np.repeat([p.boundary for p in points], n_tasks),
        }
    )
    curve.to_parquet(root / contract.ARTIFACT_TASK_CURVE, index=False)

    probe = result.probe
    np.savez_compressed(
        root / contract.ARTIFACT_SAMPLE_PROBE,
        samples_seen=np.array([p.samples_seen for p in points], dtype=np.int64),
        updates=np.array([p.updates for p in points], dtype=np.int64),
        stage=np.array([p.stage for p in points], dtype=np.int64),
        boundary=np.array([p.boundary for p in points], dtype=bool),
        correct=np.stack([p.probe_correct for p in points]).astype(bool).reshape(len(points), -1),
        loss=np.stack([p.probe_loss for p in points]).reshape(len(points), -1),
        task=probe.task,
        index=probe.index,
        label=probe.label,
        presented_at=result.presented_at,
        task_names=np.array(result.task_names, dtype=str),
        **({"chance": np.asarray(result.chance, dtype=np.float64)} if result.chance is not None else {}),
    )
    history = result.records.get(UPDATE_PROBE_RECORD)
    if history is not None:
        np.savez_compressed(root / contract.ARTIFACT_UPDATE_PROBE, **history.arrays())
    memory = result.records.get(STRATEGY_RECORD)
    if memory is not None:
        (root / contract.ARTIFACT_STRATEGY_MEMORY).parent.mkdir()
        np.savez_compressed(root / contract.ARTIFACT_STRATEGY_MEMORY, **memory)


def open_experiment(cfg: Any) -> tuple[RetryingClient, str]:
    """A client of the store of the typed config ``cfg`` and the id of its experiment (created if needed)."""
    client = open_store(cfg.tracking.uri)
    return client, get_or_create_experiment(client, cfg.tracking.experiment, cfg.tracking.artifact_location)


@contextmanager
def run_for_config(cfg: Any, run_name: str, full_name: str, context, *, member: int = 0,
                   learner_label: str = "", experiment: tuple[RetryingClient, str] | None = None,
                   chance: float | None = None) -> Iterator[MlflowRun]:
    """An MlflowRun for the typed config ``cfg``, following member ``member`` of its trainer, with the
    contract's params and tags; ended FAILED (KILLED on Ctrl-C or SIGTERM) if the body raises.
    ``context`` carries overrides, learner preset, sweep id, parent run id and the entry point;
    ``experiment`` the client and experiment id of ``open_experiment(cfg)``, when the caller has them
    (an ensemble's members share them)."""
    client, experiment_id = experiment or open_experiment(cfg)
    code = code_version(Path(cfg.paths.root_dir) / "conf")
    params, machine_tags = split_params(cfg)
    params[contract.PARAM_LEARNER] = context.learner or "none"
    tags = {
        **machine_tags,
        contract.TAG_FULL_NAME: full_name,
        contract.TAG_CONFIG_HASH: config_hash(cfg),
        contract.TAG_SWEEP_ID: context.sweep_id or new_sweep_id(),
        contract.TAG_OVERRIDES: " ".join(context.overrides),
        contract.TAG_KIND: contract.KIND_TRAIN,
        **source_tags(code, context.source),
    }
    if learner_label:
        tags[contract.TAG_LEARNER_LABEL] = learner_label
    if chance is not None:
        tags[contract.TAG_CHANCE_ACCURACY] = f"{chance:.6g}"
    if context.parent_run_id:
        tags[contract.TAG_PARENT_RUN_ID] = context.parent_run_id
    run = MlflowRun(
        client, experiment_id, run_name=run_name, params=params, tags=tags,
        heartbeat_s=cfg.tracking.stale_after_s / 10, member=member, code_diff=code.diff,
    )
    try:
        yield run
    except BaseException as error:
        run.fail(error)
        raise


def new_sweep_id() -> str:
    """A fresh sweep id: time-sortable and unique. A single (non-multirun) run gets its own."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
