"""Select training runs in MLflow and read their eval artifacts (docs/tracking.md).

Runs come from ``mlflow.search_runs`` (one query; params, metrics and tags as columns). The eval
artifacts of every FINISHED run are downloaded once into a cache directory keyed by run id (a
finished run's artifacts do not change) and parsed, in a thread pool: on a tracking server the
downloads are network-bound, on a local store they are file copies and parsing dominates.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from forgetlab import contract

# One progress bar per run and file would flood the report's output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

COMPLETE_MARK = ".complete"


# ``mlflow.search_runs`` names the columns of its frame ``tags.<key>``, ``metrics.<key>``, ``params.<key>``.
METRIC_COLUMN_PREFIX = "metrics."


def tag_column(key: str) -> str:
    return f"tags.{key}"


def metric_column(key: str) -> str:
    """The column with the last value of metric ``key``."""
    return METRIC_COLUMN_PREFIX + key


class NoRunsError(LookupError):
    """Nothing to analyse: the message says what was searched where."""


@dataclass
class RunArtifacts:
    """The eval artifacts of one run, parsed."""

    matrix: pd.DataFrame  # the accuracy matrix: column `after` (init, 0, 1, ...), task_0 ... task_{T-1}
    curve: pd.DataFrame  # the task curve (long format)
    probe: dict[str, np.ndarray]  # the sample probe, field by field
    updates: dict[str, np.ndarray] | None = None  # the update-resolution probe, when the run has the update probe

    @property
    def R_with_init(self) -> np.ndarray:
        return self.matrix.drop(columns="after").to_numpy(dtype=float)

    @property
    def chance(self) -> np.ndarray | None:
        """(T,) each task's accuracy by guessing, as the run recorded it (None for runs from before)."""
        return self.probe.get("chance")

    @property
    def task_names(self) -> list[str]:
        return [str(n) for n in self.probe["task_names"]]


def search_training_runs(
    client: MlflowClient, experiment: str, sweep_id: str | None = None, filter_string: str | None = None
) -> pd.DataFrame:
    """Every training run (``contract.KIND_TRAIN``) of ``experiment`` (optionally of one sweep and matching an
    MLflow filter string), newest first. Raises NoRunsError when there is none."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise NoRunsError(
            f"No experiment named {experiment!r} at {client.tracking_uri}. Experiments there: {names or 'none'}."
        )
    clauses = [contract.tag_equals(contract.TAG_KIND, contract.KIND_TRAIN)]
    if sweep_id:
        clauses.append(contract.tag_equals(contract.TAG_SWEEP_ID, sweep_id))
    if filter_string:
        clauses.append(filter_string)
    query = " AND ".join(clauses)
    runs = mlflow.search_runs(
        experiment_ids=[exp.experiment_id], filter_string=query, max_results=100_000,
        order_by=["attributes.start_time DESC"], output_format="pandas",
    )
    if runs.empty:
        raise NoRunsError(f"No training runs in experiment {experiment!r} at {client.tracking_uri} matching: {query}")
    return runs.reset_index(drop=True)


def mark_superseded(runs: pd.DataFrame) -> pd.DataFrame:
    """Column ``superseded_by``: for each config hash the newest FINISHED run (else the newest run) is
    used; every other run of the same config (an older repeat, a failed attempt that a resumed sweep
    redid) names the run that replaces it. Expects newest-first order."""
    runs = runs.copy()
    runs["superseded_by"] = ""
    hash_col = tag_column(contract.TAG_CONFIG_HASH)
    if hash_col not in runs:
        return runs
    for _, group in runs.groupby(hash_col, sort=False):
        finished = group[group["status"] == "FINISHED"]
        keep = (finished if len(finished) else group).index[0]
        others = group.index.drop(keep)
        runs.loc[others, "superseded_by"] = runs.at[keep, "run_id"]
    return runs


def artifact_cache_dir(cache_root: Path, run_id: str) -> Path:
    return Path(cache_root) / run_id


def fetch_eval_artifacts(client: MlflowClient, run_id: str, cache_root: Path) -> Path:
    """A local copy of the run's artifact root holding its eval artifacts (``contract.EVAL_DIR``),
    downloaded on first use only."""
    target = artifact_cache_dir(cache_root, run_id)
    if (target / COMPLETE_MARK).exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    client.download_artifacts(run_id, contract.EVAL_DIR, str(target))
    (target / COMPLETE_MARK).touch()
    return target


def read_eval_artifacts(root: Path) -> RunArtifacts:
    """The eval artifacts under a local copy ``root`` of a run's artifact root."""
    missing = [path for path in contract.EVAL_ARTIFACTS if not (root / path).exists()]
    if missing:
        raise FileNotFoundError(f"missing artifacts: {', '.join(missing)}")
    with np.load(root / contract.ARTIFACT_SAMPLE_PROBE, allow_pickle=False) as npz:
        probe = {k: npz[k] for k in npz.files}
    updates = None
    if (root / contract.ARTIFACT_UPDATE_PROBE).exists():
        with np.load(root / contract.ARTIFACT_UPDATE_PROBE, allow_pickle=False) as npz:
            updates = {k: npz[k] for k in npz.files}
    return RunArtifacts(
        matrix=pd.read_csv(root / contract.ARTIFACT_ACCURACY_MATRIX, dtype={"after": str}),
        curve=pd.read_parquet(root / contract.ARTIFACT_TASK_CURVE),
        probe=probe,
        updates=updates,
    )


def load_artifacts(
    client: MlflowClient, run_ids: list[str], cache_root: Path, workers: int = 8
) -> tuple[dict[str, RunArtifacts], dict[str, str]]:
    """(parsed artifacts by run id, problem by run id for runs whose artifacts could not be read)."""

    def one(run_id: str):
        try:
            return run_id, read_eval_artifacts(fetch_eval_artifacts(client, run_id, cache_root)), None
        except Exception as error:  # reported per run in the report, never fatal for the others
            shutil.rmtree(artifact_cache_dir(cache_root, run_id), ignore_errors=True)
            return run_id, None, f"{type(error).__name__}: {error}"

    loaded, problems = {}, {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for run_id, artifacts, problem in pool.map(one, run_ids):
            if artifacts is not None:
                loaded[run_id] = artifacts
            else:
                problems[run_id] = problem
    return loaded, problems


# --- which code's runs ----------------------------------------------------------------------------

CODE_VERSION = tag_column(contract.TAG_CODE_VERSION)
UNRECORDED = "unrecorded"  # the code version of a run recorded before runs carried one


@dataclass(frozen=True)
class CodeChoice:
    """Which code's runs an analysis reads, and what it left out."""

    version: str | None  # the code version whose runs are read; None: every code version
    current: str  # the code version of this checkout (``contract.package_hash``)
    left_out: dict[str, int]  # runs of other code versions in the selection, by version

    def note(self) -> str:
        """One sentence on the runs of other code left out ("" when none were)."""
        if not self.left_out:
            return ""
        counts = ", ".join(f"`{v}`: {n}" for v, n in sorted(self.left_out.items(), key=lambda item: -item[1]))
        return (f"{sum(self.left_out.values())} run(s) of other code left out ({counts}): only code version "
                f"`{self.version}`{' (the current code)' if self.version == self.current else ''} is read; "
                "choose another with --code-version VERSION, or every one with --any-code.")


def add_code_arguments(parser) -> None:
    """The options that choose which code's runs are read (``choose_code``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--code-version", default=None, metavar="VERSION",
                       help=f"read the runs of this code version (tag {contract.TAG_CODE_VERSION}); "
                            "default: the current code's")
    group.add_argument("--any-code", action="store_true", help="read runs of every code version")


def code_version_asked(args) -> str | None:
    """The code version ``add_code_arguments``' options ask for: None for any code."""
    return None if args.any_code else (args.code_version or contract.package_hash())


def code_versions(runs: pd.DataFrame) -> pd.Series:
    """Each run's code version (``UNRECORDED`` for a run without one)."""
    if CODE_VERSION not in runs:
        return pd.Series(UNRECORDED, index=runs.index)
    return runs[CODE_VERSION].fillna(UNRECORDED).astype(str)


def choose_code(runs: pd.DataFrame, version: str | None) -> tuple[pd.DataFrame, CodeChoice]:
    """The runs of code ``version`` (every run when None) and what was chosen. Raises NoRunsError,
    naming the code versions there are, when no run is of that code."""
    choice = CodeChoice(version, contract.package_hash(), {})
    if version is None:
        return runs, choice
    versions = code_versions(runs)
    kept = versions == version
    left_out = versions[~kept].value_counts().to_dict()
    if not kept.any():
        there = ", ".join(f"`{v}` ({n} runs)" for v, n in left_out.items())
        which = "the current code (version" if version == choice.current else "code version"
        raise NoRunsError(f"None of the {len(runs)} selected training runs was trained by {which} {version}"
                          f"{')' if version == choice.current else ''}; they were trained by {there}. Train "
                          "them again, or choose with --code-version VERSION, or every code with --any-code.")
    return runs[kept].reset_index(drop=True), CodeChoice(version, choice.current, left_out)


def code_versions_read(runs: pd.DataFrame, current: str) -> str:
    """The code versions of ``runs`` with their counts, the current one marked: for report headers."""
    counts = code_versions(runs).value_counts()
    return ", ".join(f"`{v}` ({n} runs{', the current code' if v == current else ''})" for v, n in counts.items())


def older_code_line(code: CodeChoice | None, commits: list[str]) -> list[str]:
    """When the runs read are not the current code's: which training code changed since, for the reader
    to judge whether the numbers still hold (the runs are the numbers of the code that trained them)."""
    if code is None or code.version is None or code.version == code.current:
        return []
    since = f"`git diff {commits[0]} -- src/forgetlab`" if len(commits) == 1 else "`git log -- src/forgetlab`"
    return [f"- read by choice (`--code-version {code.version}`): the current code is `{code.current}`; what "
            f"changed in the package since the runs were trained: {since}"]


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
