"""forgetlab from Python: compose a config, build a trainer, train (with or without MLflow), read runs back.

    from forgetlab import api

    cfg = api.compose("learner=rnn_rtrl", "task_sequence.scenario=task")   # Hydra overrides -> checked config
    result = api.train(cfg)                      # in memory: accuracy matrix, evaluation points, probe
    api.final_metrics(result)                    # {"final/acc": ..., "final/bwt": ..., ...}
    final = api.run(cfg)                         # trained and recorded in MLflow, as experiments/train.py does
    runs = api.load_runs("forgetlab")            # the experiment's training runs: params, metrics, tags
    report = api.report("forgetlab")             # analysis/report.py's report, returned (tables, figures)

Every function takes the same overrides as the command line (``python experiments/train.py --help``
lists them), so a notebook and a sweep describe a run the same way. examples/api.ipynb walks through
them; tests/test_api.py runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forgetlab import contract
from forgetlab.assembly import build_ensemble_trainer
from forgetlab.config import Config, explain_composition_error, typed
from forgetlab.config import compose as compose_overrides
from forgetlab.experiment import RunContext, run_experiment
from forgetlab.trainer import Trainer, TrainingResult

if TYPE_CHECKING:  # analysis (installed with the package) reads runs; imported when used
    import pandas as pd

    from analysis.report import Report

SOURCE = "forgetlab.api"  # the entry point runs trained from Python record (mlflow.source.name)


def compose(*overrides: str) -> Config:
    """The typed, checked config of ``overrides`` (``"algorithm.lr=0.1"``, ``"learner=rnn_rtrl"``, ...)
    on conf/'s defaults. Raises ``forgetlab.config.ConfigError`` with the key, the value and what is
    allowed (and the closest valid key or option) for a bad one."""
    overrides = list(overrides)
    try:
        composed = compose_overrides(overrides)
    except Exception as error:  # Hydra's composition errors, in forgetlab's words (as on the command line)
        explained = explain_composition_error(error, overrides, compose_overrides)
        if explained is None:
            raise
        raise explained from None
    return typed(composed)


def build(*cfgs: Config) -> Trainer:
    """The trainer of ``cfgs``: one config, or several that differ only in member keys (seed, learning
    rate, ...) trained as one ensemble, each member's numbers those of its config alone."""
    return build_ensemble_trainer(list(cfgs))


def train(cfg: Config) -> TrainingResult:
    """Train ``cfg`` in memory, without MLflow, and return its result (``accuracy_matrix``, ``points``,
    ``probe``, ...)."""
    (result,) = build(cfg).run()
    if result.error is not None:
        raise result.error
    return result


def final_metrics(result: TrainingResult) -> dict[str, float]:
    """The ``final/*`` metrics of a result, as a tracked run logs them (docs/metrics.md)."""
    return contract.final_metrics(result.accuracy_matrix, result.chance)


def run(cfg: Config, *overrides: str) -> dict[str, float]:
    """Train ``cfg`` and record it in MLflow (``cfg.tracking``) as ``experiments/train.py`` does; returns
    its final metrics. ``overrides``: the overrides that made ``cfg``, recorded with the run."""
    return run_experiment(cfg, RunContext(overrides=list(overrides), source=SOURCE))


def load_runs(experiment: str, *, tracking_uri: str | None = None, sweep_id: str | None = None,
              filter_string: str | None = None) -> pd.DataFrame:
    """The training runs of ``experiment`` (optionally of one sweep, and matching an MLflow filter), newest
    first, one row each: ``params.*``, ``metrics.*`` (their last values: ``metrics.final/acc`` ...),
    ``tags.*``. ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else the project's mlflow.db."""
    import mlflow

    from analysis.load import search_training_runs
    from analysis.report import default_tracking_uri
    from forgetlab.tracking.store import open_store

    uri = tracking_uri or default_tracking_uri()
    client = open_store(uri, create=False, key="tracking_uri")
    mlflow.set_tracking_uri(uri)
    return search_training_runs(client, experiment, sweep_id, filter_string)


def report(experiment: str, *, tracking_uri: str | None = None, out: str | Path | None = None,
           log_to_mlflow: bool = False, **selection) -> Report:
    """``python analysis/report.py``'s report of ``experiment`` (``selection``: ``sweep_id=``,
    ``filter_string=``), written to ``out`` (default reports/<experiment>/) and returned: its
    ``summary`` (one row per condition), ``runs`` and ``figures``. Not logged to MLflow unless asked."""
    from analysis.report import build_report, default_tracking_uri

    return build_report(tracking_uri or default_tracking_uri(), experiment, out=Path(out) if out else None,
                        log_to_mlflow=log_to_mlflow, **selection)
