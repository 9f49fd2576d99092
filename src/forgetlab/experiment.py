"""One training run from a composed config: validate, build, train, track."""

from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig, OmegaConf

from forgetlab import contract
from forgetlab.config import validate
from forgetlab.assembly import build_ensemble_trainer, total_samples
from forgetlab.cost import check_cost
from forgetlab.server import ui_url
from forgetlab.tracking.mlflow_run import failure_reason, run_for_config
from forgetlab.tracking.resume import job_already_done
from forgetlab.divergence import TrainingDiverged
from forgetlab.tracking.store import prepare_store
from forgetlab.trainer import EvalPoint

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What the launcher knows about this run beyond its config."""

    overrides: list[str] = field(default_factory=list)
    learner: str | None = None  # the learner preset chosen on the command line (conf/learner/)
    sweep_id: str | None = None
    parent_run_id: str | None = None
    quiet: bool = False  # a job in a multirun: no progress bar (the sweeper shows one for the sweep)
    source: str | None = None  # the entry point, recorded as mlflow.source.name


# What a sweep job returns to the sweeper when it ends without a finished run of its own accord.
# Defined here, not in the sweeper's module: Hydra's plugin scan executes that module a second
# time, and an isinstance check against the other copy of a class would fail.
@dataclass(frozen=True)
class JobSkipped:
    """Its own resume check, at its start, found its config and code done: it created no run."""


@dataclass(frozen=True)
class JobStopped:
    """A stop signal ended it in a worker process; its run ended KILLED with ``reason``."""

    reason: str


def run_name(cfg: DictConfig) -> str:
    """Short, and distinct across the usual sweeps: ``rtrl·split_digits·task·s3``, ``…·joint·s3``."""
    ts = cfg.task_sequence
    parts = [cfg.algorithm.name, ts.name, ts.scenario, *(["joint"] if ts.joint else []), f"s{cfg.seed}"]
    return "·".join(map(str, parts))


def full_run_name(cfg: DictConfig, overrides: list[str]) -> str:
    """The run spelled out, with the overrides that made it (machine paths left out)."""
    ts = cfg.task_sequence
    joint = ", joint" if ts.joint else ""
    text = f"{cfg.algorithm.name} on {cfg.network.name}, {ts.name} ({ts.scenario} scenario{joint}), seed {cfg.seed}"
    shown = [o for o in overrides if not contract.is_machine_key(o.split("=", 1)[0].lstrip("+~"))]
    return text + (f"; overrides: {' '.join(shown)}" if shown else "")


def format_final(final: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in final.items())


class TaskLines:
    """One log line per finished training stage."""

    def __init__(self, name: str, stage_names: list[str]) -> None:
        self.name, self.stage_names = name, stage_names

    def on_eval(self, point: EvalPoint) -> None:
        if point.boundary and point.stage >= 0:
            seen = point.accuracy[: point.tasks_trained]
            log.info(
                "[%s] after %s: samples=%d %s=%d %s=%.3f", self.name, self.stage_names[point.stage],
                point.samples_seen, contract.METRIC_UPDATES, point.updates, contract.METRIC_SEEN_ACCURACY, np.mean(seen),
            )


class ProgressBar:
    """A tqdm bar over samples for a single run, from the first evaluation (after the set-up's log
    lines) until the last stage ends."""

    def __init__(self, total: int) -> None:
        self.total, self.seen, self.bar = total, 0, None

    def on_eval(self, point: EvalPoint) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="sample", dynamic_ncols=True, file=sys.stderr, leave=False)
        self.bar.update(point.samples_seen - self.seen)
        self.seen = point.samples_seen
        if point.tasks_trained:
            self.bar.set_postfix(acc_seen=f"{np.mean(point.accuracy[: point.tasks_trained]):.3f}", refresh=False)
        if self.seen >= self.bar.total and point.boundary:
            self.bar.close()


def run_experiment(cfg: DictConfig, context: RunContext | None = None) -> dict[str, float]:
    """Validate ``cfg``, train, and (when tracking is enabled) record everything in MLflow: the
    ensemble of one (``run_ensemble``), with a progress bar unless ``context.quiet``.

    Returns the final metrics; none (an empty dict) when a sweep job finds its config and code
    already done. A run that raises is ended FAILED (KILLED on Ctrl-C or SIGTERM) in MLflow and the
    exception propagates; so does the ``TrainingDiverged`` of a diverged run, after its run ended
    FAILED. Progress goes to the log (logger ``forgetlab.experiment``), every line starting with
    ``[<run name>]``; the last ones give the final metrics and, with tracking, the run id and its
    page in the MLflow UI.
    """
    (result,) = run_ensemble([cfg], [context or RunContext()])
    if isinstance(result, TrainingDiverged):
        raise result
    return result


def logging_redirect_tqdm():
    from tqdm.contrib.logging import logging_redirect_tqdm as redirect

    return redirect()


# --- the members of one ensemble, each its own run -------------------------------------------------


@dataclass(frozen=True)
class MemberFailed:
    """A member of an ensemble job whose run ended FAILED with ``reason`` while the others went on."""

    reason: str


@dataclass(frozen=True)
class EnsembleReturn:
    """What an ensemble job of a sweep returns: per member, in its ensemble's order, the final
    accuracy (a float), ``JobSkipped`` or ``MemberFailed``."""

    members: tuple


def run_ensemble(cfgs: list[DictConfig], contexts: list[RunContext]) -> list[dict[str, float] | TrainingDiverged]:
    """``run_experiment`` for configs that differ only in ``ensemble.MEMBER_KEYS``, trained as the
    members of one ensemble (``assembly.build_ensemble_trainer``): each member's numbers, MLflow run
    (params, tags, metrics, artifacts, resume identity, name) and log lines are those of its config
    trained alone, ``contexts[m]`` being member m's context.

    Returns per member its final metrics; none (an empty dict) for a member whose config and code a
    sweep job finds already done (it creates no run); the ``TrainingDiverged`` of a member whose
    training diverged (its run ends FAILED with the reason, the others train on). Anything else that
    raises ends every member's run that has not ended FAILED (KILLED on Ctrl-C or SIGTERM) and
    propagates.
    """
    for cfg in cfgs:
        validate(cfg)
    check_cost(cfgs[0], members=len(cfgs))
    if cfgs[0].tracking.enabled:
        prepare_store(cfgs[0].tracking.uri)  # a store error stops the ensemble before anything is built
    names = [run_name(cfg) for cfg in cfgs]
    results: list[dict[str, float] | TrainingDiverged] = [{} for _ in cfgs]
    todo = []
    for m, (cfg, context) in enumerate(zip(cfgs, contexts)):
        reason = None
        if cfg.tracking.enabled and context.parent_run_id is not None:  # as in run_experiment
            reason = job_already_done(cfg, names[m])
        if reason:
            log.info("[%s] skip: %s", names[m], reason)
        else:
            todo.append(m)
    if not todo:
        return results
    trainer = build_ensemble_trainer([cfgs[m] for m in todo])
    for observers, m in zip(trainer.observers, todo):
        observers.append(TaskLines(names[m], [s.name for s in trainer.stages]))
    redirect = nullcontext()
    if len(cfgs) == 1 and not contexts[0].quiet:  # a lone run at the console: log lines above its bar
        trainer.observers[0].append(ProgressBar(total_samples(trainer)))
        redirect = logging_redirect_tqdm()

    open_runs = []  # (member, its run_for_config context, its MlflowRun), until the run has ended
    try:
        if cfgs[todo[0]].tracking.enabled:
            for observers, m in zip(trainer.observers, todo):
                opened = run_for_config(cfgs[m], names[m], full_run_name(cfgs[m], contexts[m].overrides), contexts[m])
                open_runs.append((m, opened, opened.__enter__()))
                observers.append(open_runs[-1][2])
        with redirect:
            trained_members = dict(zip(todo, trainer.run()))
        for m in todo:
            result, mlflow_run = trained_members[m], open_runs[0][2] if open_runs else None
            if result.error is not None:
                log.warning("[%s] %s", names[m], failure_reason(result.error))
                if mlflow_run is not None:
                    mlflow_run.fail(result.error)
                results[m] = result.error
            else:
                results[m] = (mlflow_run.finish(result, OmegaConf.to_yaml(cfgs[m], resolve=True)) if mlflow_run
                              else contract.final_metrics(result.accuracy_matrix))
                log.info("[%s] %s", names[m], format_final(results[m]))
            if mlflow_run is not None:
                open_runs.pop(0)[1].__exit__(None, None, None)
                log.info("[%s] MLflow run %s: %s", names[m], mlflow_run.run_id,
                         ui_url(cfgs[m].tracking.uri, mlflow_run.experiment_id, mlflow_run.run_id))
    except BaseException as error:
        for _, opened, _ in open_runs:  # each ends FAILED, or KILLED on a stop (run_for_config)
            try:
                opened.__exit__(type(error), error, error.__traceback__)
            except Exception:  # the store itself may be the failure: still try to end the others
                log.exception("could not end a member's run")
        raise
    return results
