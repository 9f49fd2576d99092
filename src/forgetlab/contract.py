"""The names a training run writes to MLflow and ``analysis/`` reads back: tag keys, artifact paths,
metric names, and the final metrics. docs/tracking.md says what each one holds.

Training (``forgetlab.tracking``), the sweeper and ``analysis/`` take every such name from here,
so a name is spelled once and writer and reader cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from forgetlab import metrics

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
ARTIFACT_TRACEBACK = "traceback.txt"  # FAILED and KILLED runs
ARTIFACT_CODE_DIFF = "code/uncommitted.diff"  # the uncommitted changes of TAG_CODE_DIFF
ARTIFACT_SWEEP_JOBS = "sweep_jobs.json"  # parent runs: every job of the sweep, trained or skipped

# --- metrics (step = samples_seen) ---------------------------------------------------------------


def metric_task_accuracy(task: int) -> str:
    return f"acc/task_{task}"


def metric_task_loss(task: int) -> str:
    return f"loss/task_{task}"


METRIC_SEEN_ACCURACY = "acc/seen"  # mean accuracy over the tasks whose training has begun
METRIC_TRAIN_LOSS = "loss/train"
METRIC_UPDATES = "updates"

FINAL_ACC = "final/acc"
FINAL_BWT = "final/bwt"
FINAL_FWT = "final/fwt"
FINAL_FORGETTING = "final/forgetting"


def final_metrics(R_with_init: np.ndarray) -> dict[str, float]:
    """The ``final/*`` metrics from the accuracy matrix with its init row (row 0, the accuracy
    before training). Transfer and forgetting need T >= 2 training stages that each trained one
    task; a joint run (one stage) has ``final/acc`` only."""
    r_init, R = R_with_init[0], R_with_init[1:]
    out = {FINAL_ACC: metrics.average_accuracy(R)}
    if R.shape[0] >= 2 and R.shape[0] == R.shape[1]:
        out[FINAL_BWT] = metrics.backward_transfer(R)
        out[FINAL_FWT] = metrics.forward_transfer(R, r_init)
        out[FINAL_FORGETTING] = metrics.forgetting_max(R)
    return out
