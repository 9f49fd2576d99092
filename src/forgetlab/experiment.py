"""One training run from a composed config: validate, build, train, track.

This is the entry of a run: the composed ``DictConfig`` becomes the typed ``Config`` here
(``forgetlab.config.typed``), once, and everything below reads that.""" 

from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig, OmegaConf

from forgetlab import contract
from forgetlab.algorithms import ALGORITHMS
from forgetlab.assembly import build_ensemble_trainer, total_samples
from forgetlab.config import Config, validate
from forgetlab.cost import check_cost
from forgetlab.divergence import TrainingDiverged
from forgetlab.server import ui_url
from forgetlab.tracking.mlflow_run import failure_reason, run_for_config
from forgetlab.tracking.resume import job_already_done
from forgetlab.tracking.store import prepare_store
from forgetlab.trainer import Callback, EvalPoint, Trainer, TrainingResult

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


def run_name(cfg: Config) -> str:
    """Short, and distinct across the usual sweeps: ``rtrl·split_digits·task·s3``, ``…·joint·s3``."""
    ts = cfg.task_sequence
    parts = [cfg.algorithm.name, ts.name, ts.scenario, *(["joint"] if ts.joint else []), f"s{cfg.seed}"]
    return "·".join(map(str, parts))


def full_run_name(cfg: Config, overrides: list[str]) -> str:
    """The run spelled out, with the overrides that made it (machine paths left out)."""
    ts = cfg.task_sequence
    joint = ", joint" if ts.joint else ""
    text = f"{cfg.algorithm.name} on {cfg.network.name}, {ts.name} ({ts.scenario} scenario{joint}), seed {cfg.seed}"
    shown = [o for o in overrides if not contract.is_machine_key(o.split("=", 1)[0].lstrip("+~"))]
    return text + (f"; overrides: {' '.join(shown)}" if shown else "")


def format_final(final: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in final.items())


class TaskLines(Callback):
    """One log line per finished training stage of member ``member``."""

    def __init__(self, name: str, stage_names: list[str], member: int = 0) -> None:
        self.name, self.stage_names, self.member = name, stage_names, member

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        point = points.get(self.member)
        if point is not None and point.boundary and point.stage >= 0:
            seen = point.accuracy[: point.tasks_trained]
            log.info(
                "[%s] after %s: samples=%d %s=%d %s=%.3f", self.name, self.stage_names[point.stage],
                point.samples_seen, contract.METRIC_UPDATES, point.updates, contract.METRIC_SEEN_ACCURACY, np.mean(seen),
            )


class ProgressBar(Callback):
    """A tqdm bar over samples for a single run, from the first evaluation (after the set-up's log
    lines) until the last stage ends."""

    def __init__(self, total: int) -> None:
        self.total, self.seen, self.bar = total, 0, None

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        if not points:
            return
        point = next(iter(points.values()))
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="sample", dynamic_ncols=True, file=sys.stderr, leave=False)
        self.bar.update(point.samples_seen - self.seen)
        self.seen = point.samples_seen
        if point.tasks_trained:
            self.bar.set_postfix(acc_seen=f"{np.mean(point.accuracy[: point.tasks_trained]):.3f}", refresh=False)
        if self.seen >= self.bar.total and point.boundary:
            self.bar.close()


def run_experiment(cfg: DictConfig | Config, context: RunContext | None = None) -> dict[str, float]:
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


def run_ensemble(cfgs: list[DictConfig | Config], contexts: list[RunContext]) -> list[dict[str, float] | TrainingDiverged]:
    """``run_experiment`` for configs that differ only in member keys (``assembly.member_keys``),
    trained as the members of one ensemble (``assembly.build_ensemble_trainer``): each member's
    numbers, MLflow run (params, tags, metrics, artifacts, resume identity, name) and log lines are
    those of its config trained alone, ``contexts[m]`` being member m's context.

    Returns per member its final metrics; none (an empty dict) for a member whose config and code a
    sweep job finds already done (it creates no run); the ``TrainingDiverged`` of a member whose
    training diverged (its run ends FAILED with the reason, the others train on). Anything else that
    raises ends every member's run that has not ended FAILED (KILLED on Ctrl-C or SIGTERM) and
    propagates.
    """
    runs = [validate(cfg) for cfg in cfgs]
    check_cost(runs[0], members=len(runs))
    if runs[0].tracking.enabled:
        prepare_store(runs[0].tracking.uri)  # a store error stops the ensemble before anything is built
    names = [run_name(run) for run in runs]
    results: list[dict[str, float] | TrainingDiverged] = [{} for _ in runs]
    todo = [m for m in range(len(runs)) if not _already_done(runs[m], contexts[m], names[m])]
    if not todo:
        return results
    trainer = build_ensemble_trainer([runs[m] for m in todo])
    stage_names = [s.name for s in trainer.stages]
    trainer.callbacks += [TaskLines(names[m], stage_names, member=k) for k, m in enumerate(todo)]
    redirect = nullcontext()
    if len(runs) == 1 and not contexts[0].quiet:  # a lone run at the console: log lines above its bar
        trainer.callbacks.append(ProgressBar(total_samples(trainer)))
        redirect = logging_redirect_tqdm()
    open_runs: dict[int, tuple] = {}  # member -> (its run_for_config context, its MlflowRun), until it has ended
    try:
        if runs[todo[0]].tracking.enabled:
            for k, m in enumerate(todo):
                opened = run_for_config(runs[m], names[m], full_run_name(runs[m], contexts[m].overrides), contexts[m],
                                        member=k, learner_label=ALGORITHMS[runs[m].algorithm.name].label(runs[m]))
                open_runs[m] = (opened, opened.__enter__())
                trainer.callbacks.append(open_runs[m][1])
        with redirect:
            trained = trainer.run()
        for m, result in zip(todo, trained):
            results[m] = _end_member(runs[m], names[m], result, open_runs.get(m, (None, None)))
            open_runs.pop(m, None)
    except BaseException as error:
        for opened, _ in open_runs.values():  # each ends FAILED, or KILLED on a stop (run_for_config)
            try:
                opened.__exit__(type(error), error, error.__traceback__)
            except Exception:  # the store itself may be the failure: still try to end the others
                log.exception("could not end a member's run")
        raise
    return results


def _already_done(run: Config, context: RunContext, name: str) -> bool:
    """Whether a sweep job's own resume check, at its start, finds this config and code done."""
    reason = None
    if run.tracking.enabled and context.parent_run_id is not None:
        reason = job_already_done(run, name)
    if reason:
        log.info("[%s] skip: %s", name, reason)
    return bool(reason)


def _end_member(run: Config, name: str, result: TrainingResult, opened: tuple) -> dict[str, float] | TrainingDiverged:
    """End a member's MLflow run (when tracked) FINISHED with its metrics, or FAILED if it diverged."""
    context, mlflow_run = opened
    if result.error is not None:
        log.warning("[%s] %s", name, failure_reason(result.error))
        if mlflow_run is not None:
            mlflow_run.fail(result.error)
        outcome = result.error
    else:
        yaml = OmegaConf.to_yaml(OmegaConf.structured(run))
        outcome = mlflow_run.finish(result, yaml) if mlflow_run else contract.final_metrics(result.accuracy_matrix, result.chance)
        log.info("[%s] %s", name, format_final(outcome))
    if mlflow_run is not None:
        context.__exit__(None, None, None)
        log.info("[%s] MLflow run %s: %s", name, mlflow_run.run_id,
                 ui_url(run.tracking.uri, mlflow_run.experiment_id, mlflow_run.run_id))
    return outcome
