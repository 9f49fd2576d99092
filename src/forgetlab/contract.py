"""The names a training run writes to MLflow and ``analysis/`` reads back: tag keys, artifact paths,
metric names, and the final metrics. docs/tracking.md says what each one holds.

Training (``forgetlab.tracking``), the sweeper and ``analysis/`` take every such name from here,
so a name is spelled once and writer and reader cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from forgetlab import metric_registry

# --- tags ----------------------------------------------------------------------------------------

TAG_KIND = "forgetlab.kind"  # what a run is: one of the KIND_* values
KIND_TRAIN = "train"  # a training run: the only kind ever analysed
KIND_SWEEP = "sweep"  # the parent run of a multirun
KIND_REPORT = "report"  # a report written by analysis/report.py

TAG_CONFIG_HASH = "forgetlab.config_hash"  # equal hashes = the same experiment
TAG_SWEEP_ID = "forgetlab.sweep_id"  # shared by a sweep's parent and its jobs
TAG_OVERRIDES = "forgetlab.overrides"  # the command-line overrides, space-separated
TAG_ERROR = "forgetlab.error"  # why a run ended FAILED or KILLED
TAG_PROCESS = "forgetlab.process"  # who trains a RUNNING run: "host boot_id pid_namespace pid start_ticks"
TAG_HEARTBEAT = "forgetlab.heartbeat"  # unix seconds, refreshed while the run trains
TAG_SWEEP_KEY = "forgetlab.sweep_key"  # parent runs: the experiment, its jobs' config hashes and the code version
TAG_CODE_VERSION = "forgetlab.code_version"  # content hash of the package's source: with the config hash, a run's identity
TAG_CODE_DIFF = "forgetlab.code_diff"  # hash of the uncommitted changes to the package and conf/ (only when there are any)
TAG_FULL_NAME = "forgetlab.full_name"  # training runs: the run name spelled out, with the job's overrides
TAG_LEARNER_LABEL = "forgetlab.learner_label"  # training runs: the learner's display label, e.g. "BPTT(4; 1)"
TAG_CHANCE_ACCURACY = "forgetlab.chance_accuracy"  # training runs: accuracy of guessing among the allowed outputs

# The forgetlab package whose source a run's TAG_CODE_VERSION hashes (``package_hash``).
PACKAGE_DIR = Path(__file__).resolve().parent


def package_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """The value of ``TAG_CODE_VERSION``: the first 16 hex digits of SHA-256 over the relative path and
    content of every ``*.py`` file of the package. Spelled here, with the tag, so that ``analysis/``
    tells the current code's runs from others' as training computes it (``tracking.code_version``)."""
    digest = hashlib.sha256()
    for path in sorted(Path(package_dir).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# Config keys that say on which machine a run was stored, not what it is: tags, not params.
MACHINE_KEYS = ("tracking.uri", "tracking.artifact_location")
MACHINE_GROUPS = ("paths",)


def is_machine_key(key: str) -> bool:
    """A dotted config key recorded as the tag ``machine_tag(key)`` instead of a param."""
    return key in MACHINE_KEYS or key.split(".", 1)[0] in MACHINE_GROUPS


def machine_tag(key: str) -> str:
    return f"forgetlab.{key}"

TAG_REPORT_SWEEP_ID = "forgetlab.report.sweep_id"  # report runs: the selection they analysed
TAG_REPORT_FILTER = "forgetlab.report.filter"
TAG_REPORT_RUNS = "forgetlab.report.runs"  # how many runs were analysed

# MLflow's own tags that forgetlab sets or reads
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_BRANCH = "mlflow.source.git.branch"
TAG_GIT_REPO_URL = "mlflow.source.git.repoURL"
TAG_SOURCE_NAME = "mlflow.source.name"  # the entry point, e.g. experiments/train.py
TAG_SOURCE_TYPE = "mlflow.source.type"
SOURCE_TYPE_LOCAL = "LOCAL"
TAG_RUN_NAME = "mlflow.runName"

# Experiment tag: the experiment type MLflow records ("Machine learning" rather than "GenAI apps & agents").
EXPERIMENT_TAG_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"


# Experiment tag: the run table's columns for comparing runs (the learner, the scenario, training mode and
# seed, the final metrics), as MLflow's UI reads a shared view: the addresses forgetlab prints for an
# experiment end in ``viewStateShareKey=<COMPARE_VIEW>`` (forgetlab.server.ui_url), which opens it.
COMPARE_VIEW = "forgetlab"
EXPERIMENT_TAG_COMPARE_VIEW = f"mlflow.sharedViewState.{COMPARE_VIEW}"


def compare_view() -> str:
    """The shared view's state (JSON): selected columns, every run shown in the charts."""
    # MLflow's grid puts metrics before params: with a fifth metric column the params that tell runs
    # apart (seed first) scroll out of a 1400 px window, so FWT (in the chart view) is left out here.
    metrics = [m.logged for m in metric_registry.METRICS if m.logged and m.name != "fwt"]
    columns = [f"tags.`{TAG_LEARNER_LABEL}`", "params.`task_sequence.scenario`", "params.`task_sequence.joint`",
               "params.`seed`", *(f"metrics.`{name}`" for name in metrics), "attributes.`Duration`"]
    return json.dumps({"selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"})


def report_experiment(experiment: str) -> str:
    """Where the report runs of ``experiment`` go: an experiment of their own, so the training
    experiment's run list and charts hold only training runs and their sweep parents."""
    return f"{experiment}-reports"


# --- params: the resolved config, flattened --------------------------------------------------------

PARAM_LEARNER = "learner"  # the learner preset chosen (conf/learner/), "none" without one


def flat_config(config: Any) -> dict[str, Any]:
    """A run's config (a dataclass of the typed config, or its plain nested dict) as dotted keys ->
    values (lists stay lists): the params of a run are these keys."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node

    walk(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config, "")
    return out


def flatten(config: Any) -> dict[str, str]:
    """``flat_config`` with string values, as MLflow records params (lists as JSON)."""
    return {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in flat_config(config).items()}


def tag_equals(key: str, value: str) -> str:
    """An MLflow search filter clause: tag ``key`` has ``value``."""
    return f"tags.`{key}` = '{value}'"


# --- artifacts (paths relative to the run's artifact root) ---------------------------------------

ARTIFACT_CONFIG = "config.yaml"  # the resolved config
EVAL_DIR = "eval"
ARTIFACT_ACCURACY_MATRIX = f"{EVAL_DIR}/accuracy_matrix.csv"
ARTIFACT_TASK_CURVE = f"{EVAL_DIR}/task_curve.parquet"
ARTIFACT_SAMPLE_PROBE = f"{EVAL_DIR}/sample_probe.npz"
EVAL_ARTIFACTS = (ARTIFACT_ACCURACY_MATRIX, ARTIFACT_TASK_CURVE, ARTIFACT_SAMPLE_PROBE)
# The update-resolution probe (eval.probe_every > 0): only runs that have one write it.
UPDATE_PROBE_FILE = "update_probe.npz"
ARTIFACT_UPDATE_PROBE = f"{EVAL_DIR}/{UPDATE_PROBE_FILE}"
# A strategy with an episodic memory (replay, A-GEM): which training samples it held, for auditing a run.
ARTIFACT_STRATEGY_MEMORY = "strategy/memory.npz"
ARTIFACT_TRACEBACK = "traceback.txt"  # FAILED and KILLED runs
ARTIFACT_CODE_DIFF = "code/uncommitted.diff"  # the uncommitted changes of TAG_CODE_DIFF
# For people in the MLflow UI, which cannot preview the parquet and npz files above:
FIGURES_DIR = "figures"
ARTIFACT_TASK_ACCURACY_FIGURE = f"{FIGURES_DIR}/task_accuracy.png"
ARTIFACT_ACCURACY_MATRIX_FIGURE = f"{FIGURES_DIR}/accuracy_matrix.png"
ARTIFACT_ACCURACY_TABLE = "accuracy_matrix.json"  # in MlflowClient.log_table's layout: a table in the UI
ARTIFACT_SWEEP_JOBS = "sweep_jobs.json"  # parent runs: every job of the sweep, trained or skipped
ARTIFACT_SWEEP_REPORT = "report"  # parent runs: the figures of the latest report of the sweep

# --- metrics (step = samples_seen) ---------------------------------------------------------------


def metric_task_accuracy(task: int) -> str:
    return f"acc/task_{task}"


def metric_task_loss(task: int) -> str:
    return f"loss/task_{task}"


METRIC_SEEN_ACCURACY = "acc/seen"  # mean accuracy over the tasks whose training has begun
METRIC_TRAIN_LOSS = "loss/train"
METRIC_UPDATES = "updates"

# The final metrics: every metric record with a ``logged`` key (forgetlab.metric_registry), logged once
# at the end of a run at step FINAL_STEP: a summary, drawn as bars by MLflow's chart view.
FINAL_STEP = 0
FINAL_ACC = metric_registry.ACC.logged
FINAL_BWT = metric_registry.BWT.logged
FINAL_FWT = metric_registry.FWT.logged
FINAL_FORGETTING = metric_registry.FORGETTING_MAX.logged

# Parent runs, at the end of a sweep (step 0: MLflow's chart view draws a metric whose last step is 0 as
# bars). Names of their own, so that they never share a chart with the training runs' metrics. The
# counts describe the sweep across its calls (a re-run that skips everything leaves them as they were).
METRIC_SWEEP_JOBS = "sweep/jobs"
METRIC_SWEEP_FINISHED = "sweep/jobs_finished"  # jobs whose config has a FINISHED run, trained by this sweep or before
METRIC_SWEEP_TRAINED = "sweep/jobs_trained"  # of those, trained by this sweep (its runs nest under the parent)
METRIC_SWEEP_SKIPPED = "sweep/jobs_skipped"  # of those, finished before this sweep (by another one)
METRIC_SWEEP_FAILED = "sweep/jobs_failed"  # jobs that failed in the sweep's last call
ARTIFACT_SWEEP_RESULTS = "sweep_results.json"  # parent runs: the results table (condition x final metrics), a UI table


def final_metrics(R_with_init: np.ndarray, chance: np.ndarray | None = None) -> dict[str, float]:
    """The ``final/*`` metrics from the accuracy matrix with its init row (row 0, the accuracy
    before training) and each task's chance accuracy: each logged metric record that the run defines
    (one that needs ``chance`` is NaN without it). Transfer and forgetting need T >= 2 training stages
    that each trained one task; a joint run (one stage) has ``final/acc`` only."""
    arrays = metric_registry.task_arrays(R_with_init, chance=chance)
    return {m.logged: m.value(arrays) for m in metric_registry.METRICS if m.logged and m.defined_on(arrays["R"])}


# Config keys added after runs were first recorded, with the value that reproduces what those runs
# did: at that value a key is left out of the config hash, so adding a feature does not orphan every
# recorded run, and a run that lacks the param ran at that value (analysis/select_lr.py reads it so).
NEUTRAL_ADDITIONS: dict[str, object] = {
    "task_sequence.val_size": 0.0,
    "eval.split": "test",
    "eval.probe_every": 0,
    "eval.update_probe_per_task": 20,
    "eval.interference": False,
    "network.init_perturbation": 0.0,
    "network.loss_last_steps": 1,
    "algorithm.lr_selected_by": "",
    "task_sequence.max_train_per_task": 0,
    "backend.name": "numpy",
    "backend.dtype": "float64",
    "algorithm.implementation": "auto",
    "network.recurrent_init": "gaussian",
    "network.recurrent_scale": 1.0,
    # Every run before strategies existed was fine-tuning: at these values the group drops out of the hash.
    "strategy.name": "fine_tuning",
    "strategy.selected_by": "",
}
