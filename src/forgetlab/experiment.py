"""One training run from a composed config: validate, build, train, track.

This is the entry of a run: the composed ``DictConfig`` becomes the typed ``Config`` here
(``forgetlab.config.typed``), once, and everything below reads that.""" 

from __future__ import annotations

import gc
import logging
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from forgetlab import contract
from forgetlab.arrays import to_numpy
from forgetlab.assembly import build_ensemble_trainer, learner_label, total_samples
from forgetlab.config import Config, config_yaml, validate
from forgetlab.cost import check_cost
from forgetlab.divergence import TrainingDiverged
from forgetlab.server import ui_url
from forgetlab.tracking.mlflow_run import failure_reason, open_experiment, run_for_config
from forgetlab.tracking.resume import end_dead_runs, job_decision
from forgetlab.tracking.storage import check_artifact_location
from forgetlab.tracking.store import RetryingClient, StoreError, prepare_store
from forgetlab.trainer import Callback, EvalPoint, Trainer, TrainingResult

log = logging.getLogger(__name__)
# The log record attribute that says which member of ``run_ensemble``'s configs a line is about (its
# index); lines without it (the set-up's) are the whole ensemble's. A sweep sends each member's lines
# to that member's own train.log (experiments/train.py).
MEMBER_ATTRIBUTE = "ensemble_member"


def about(member: int) -> dict[str, dict[str, int]]:
    """The ``extra=`` of a log line about member ``member``."""
    return {"extra": {MEMBER_ATTRIBUTE: member}}


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
class RunningElsewhere:
    """Its own resume check, at its start, found a run of its config and code RUNNING in another live
    process (and none FINISHED): it created no run, and the job is not done."""

    reason: str


@dataclass(frozen=True)
class JobStopped:
    """A stop signal ended it in a worker process; its run ended KILLED with ``reason``."""

    reason: str


def run_name(cfg: Config) -> str:
    """Short, distinct across the usual sweeps, and what differs first (MLflow's run table cuts long
    names): ``rtrl·task·s3·split_digits``, ``rtrl·task·joint·s3·split_digits``,
    ``backprop·ewc·class·s0·split_mnist`` (a strategy other than fine-tuning after the algorithm)."""
    ts = cfg.task_sequence
    strategy = [cfg.strategy.name] if cfg.strategy.name != "fine_tuning" else []
    parts = [cfg.algorithm.name, *strategy, ts.scenario, *(["joint"] if ts.joint else []), f"s{cfg.seed}", ts.name]
    return "·".join(map(str, parts))


def full_run_name(cfg: Config, overrides: list[str]) -> str:
    """The run spelled out, with the overrides that made it (machine paths left out)."""
    ts = cfg.task_sequence
    joint = ", joint" if ts.joint else ""
    strategy = f" with {cfg.strategy.name}" if cfg.strategy.name != "fine_tuning" else ""
    text = f"{cfg.algorithm.name}{strategy} on {cfg.network.name}, {ts.name} ({ts.scenario} scenario{joint}), seed {cfg.seed}"
    shown = [o for o in overrides if not contract.is_machine_key(o.split("=", 1)[0].lstrip("+~"))]
    return text + (f"; overrides: {' '.join(shown)}" if shown else "")


def format_final(final: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in final.items())


class TaskLines(Callback):
    """A log line when training starts and one per finished training stage of the trainer's member
    ``member``, marked as the lines of ``run_ensemble``'s member ``index`` (``about``)."""

    def __init__(self, name: str, stage_names: list[str], member: int = 0, index: int = 0) -> None:
        self.name, self.stage_names, self.member, self.index = name, stage_names, member, index

    def on_train_start(self, trainer: Trainer) -> None:
        # the first line, so that a log or a file shows at once what trains (a stage can take hours)
        log.info("[%s] training %d stage%s (%s), %d samples", self.name, len(self.stage_names),
                 "s" * (len(self.stage_names) != 1), ", ".join(self.stage_names), total_samples(trainer),
                 **about(self.index))

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        point = points.get(self.member)
        if point is not None and point.boundary and point.stage >= 0:
            seen = point.accuracy[: point.tasks_trained]
            log.info(
                "[%s] after %s: samples=%d %s=%d %s=%.3f", self.name, self.stage_names[point.stage],
                point.samples_seen, contract.METRIC_UPDATES, point.updates, contract.METRIC_SEEN_ACCURACY, np.mean(seen),
                **about(self.index),
            )


class ProgressBar(Callback):
    """A tqdm bar over samples for a single run at a terminal, from the first evaluation (after the
    set-up's log lines) until the last stage ends. Elsewhere the lines of ``TaskLines`` are the progress."""

    def __init__(self, total: int) -> None:
        self.total, self.seen, self.bar = total, 0, None

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        if not points:
            return
        point = next(iter(points.values()))
        if self.bar is None:
            from tqdm import tqdm

            # disable=None: no bar where stderr is not a terminal (a file would get every frame)
            self.bar = tqdm(total=self.total, unit="sample", dynamic_ncols=True, file=sys.stderr, leave=False,
                            disable=None)
        self.bar.update(point.samples_seen - self.seen)
        self.seen = point.samples_seen
        if point.tasks_trained:
            self.bar.set_postfix(acc_seen=f"{np.mean(point.accuracy[: point.tasks_trained]):.3f}", refresh=False)
        if self.seen >= self.bar.total and point.boundary:
            self.bar.close()

    def on_train_end(self, trainer: Trainer, results: list[TrainingResult]) -> None:
        if self.bar is not None:  # a run that diverged ends before its last sample: no bar left behind
            self.bar.close()


def run_experiment(cfg: DictConfig | Config, context: RunContext | None = None) -> dict[str, float] | RunningElsewhere:
    """Validate ``cfg``, train, and (when tracking is enabled) record everything in MLflow: the
    ensemble of one (``run_ensemble``), with a progress bar unless ``context.quiet``.

    Returns the final metrics; none (an empty dict) when a sweep job finds its config and code
    already done; ``RunningElsewhere`` when a sweep job finds them in training in another process. A run that raises is ended FAILED (KILLED on Ctrl-C or SIGTERM) in MLflow and the
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


def run_ensemble(cfgs: list[DictConfig | Config], contexts: list[RunContext]
                 ) -> list[dict[str, float] | TrainingDiverged | RunningElsewhere]:
    """``run_experiment`` for configs that differ only in member keys (``assembly.member_keys``),
    trained as the members of one ensemble (``assembly.build_ensemble_trainer``): each member's
    numbers, MLflow run (params, tags, metrics, artifacts, resume identity, name) and log lines are
    those of its config trained alone, ``contexts[m]`` being member m's context.

    Returns per member its final metrics; none (an empty dict) for a member whose config and code a
    sweep job finds already done (it creates no run), ``RunningElsewhere`` for one it finds in
    training in another live process (no run either); the ``TrainingDiverged`` of a member whose
    training diverged (its run ends FAILED with the reason, the others train on). Anything else that
    raises ends every member's run that has not ended FAILED (KILLED on Ctrl-C or SIGTERM) and
    propagates.
    """
    runs = [validate(cfg) for cfg in cfgs]
    cost = check_cost(runs[0], members=len(runs))
    if runs[0].tracking.enabled:  # a store or storage error stops the ensemble before anything is built
        _prepare_tracking(runs[0], cost.artifact_bytes, single_run=contexts[0].sweep_id is None)
    names = [run_name(run) for run in runs]
    # None for the members to train: their results are filled in below
    results: list = [_already_done(run, context, name, m)
                     for m, (run, context, name) in enumerate(zip(runs, contexts, names))]
    todo = [m for m, result in enumerate(results) if result is None]
    if not todo:
        return results
    trainer = build_ensemble_trainer([runs[m] for m in todo])
    stage_names = [s.name for s in trainer.stages]
    trainer.callbacks += [TaskLines(names[m], stage_names, member=k, index=m) for k, m in enumerate(todo)]
    redirect = nullcontext()
    if len(runs) == 1 and not contexts[0].quiet:  # a lone run at the console: log lines above its bar
        trainer.callbacks.append(ProgressBar(total_samples(trainer)))
        redirect = logging_redirect_tqdm()
    open_runs: dict[int, tuple] = {}  # member -> (its run_for_config context, its MlflowRun), until it has ended
    try:
        if runs[todo[0]].tracking.enabled:
            experiment = open_experiment(runs[todo[0]])  # the members' store and experiment are the same
            for k, m in enumerate(todo):
                opened = run_for_config(runs[m], names[m], full_run_name(runs[m], contexts[m].overrides), contexts[m],
                                        member=k, learner_label=learner_label(runs[m]),
                                        experiment=experiment, chance=chance_accuracy(trainer))
                open_runs[m] = (opened, opened.__enter__())
                trainer.callbacks.append(open_runs[m][1])
        collect_from_training_on()
        with redirect:
            trained = trainer.run()
        for m, result in zip(todo, trained):
            results[m] = _end_member(runs[m], names[m], m, result, open_runs.get(m, (None, None)))
            open_runs.pop(m, None)
    except BaseException as error:
        for m, (opened, _) in open_runs.items():  # each ends FAILED, or KILLED on a stop (run_for_config)
            try:
                opened.__exit__(type(error), error, error.__traceback__)
            except StoreError as lost:  # the store itself is the failure: its one line says all (no chain)
                log.info("[%s] could not end its run: %s", names[m], lost)
            except Exception:  # still try to end the others
                log.exception("[%s] could not end its run", names[m])
        raise
    return results


def _prepare_tracking(run: Config, artifact_bytes: int, *, single_run: bool) -> None:
    """The store prepared and the artifact disk checked before anything is built; for a single run,
    what a lost server or kill -9 left RUNNING ends now."""
    tracking = run.tracking
    prepare_store(tracking.uri, create_dir=tracking.create_store_dir)
    check_artifact_location(tracking.uri, tracking.experiment, tracking.artifact_location, artifact_bytes)
    if single_run:
        for dead in end_dead_runs(RetryingClient(tracking.uri), stale_after_s=tracking.stale_after_s):
            log.info("ended KILLED run %s (%s): its process is gone", dead.info.run_id, dead.info.run_name)


_start_up_frozen = False


def collect_from_training_on() -> None:
    """Freeze, once per process, what start-up made (``gc.freeze``: the modules, configs and data
    that live as long as the process; the cyclic collector never scans them again), and turn the
    collector on, which an entry point may have turned off for its start-up (experiments/train.py).
    Training itself makes no reference cycles (a default run triggers no collection), so from here
    collections are rare and cheap: they scan only what the runs make (docs/performance.md)."""
    global _start_up_frozen
    if not _start_up_frozen:
        gc.freeze()
        _start_up_frozen = True
    gc.enable()


def chance_accuracy(trainer: Trainer) -> float:
    """The accuracy of guessing among the outputs a held-out sample's mask allows (1/10 in the class
    scenario of split digits, 1/2 in its task and domain scenarios), averaged over the tasks: where
    the report's figures draw their chance line."""
    evaluator = trainer.evaluator
    mask = to_numpy(evaluator.mask)[: evaluator.n_test]
    per_sample = 1.0 / np.maximum(mask.sum(axis=-1), 1)
    return float(np.mean([per_sample[evaluator.test_task == t].mean() for t in np.unique(evaluator.test_task)]))


def _already_done(run: Config, context: RunContext, name: str, member: int) -> dict | RunningElsewhere | None:
    """A sweep job's own resume check, at its start: no metrics (an empty dict) when it finds this
    config and code done, ``RunningElsewhere`` when it finds them in training in another live
    process, else None (to train)."""
    if not run.tracking.enabled or context.parent_run_id is None:
        return None
    decision = job_decision(run, name)
    if decision.skip:
        log.info("[%s] skip: %s", name, decision.skip, **about(member))
        return {}
    if decision.running is not None:
        log.warning("[%s] not trained: %s", name, decision.running_reason, **about(member))
        return RunningElsewhere(decision.running_reason)
    return None


def _end_member(run: Config, name: str, member: int, result: TrainingResult, opened: tuple
                ) -> dict[str, float] | TrainingDiverged:
    """End member ``member``'s MLflow run (when tracked) FINISHED with its metrics, or FAILED if it diverged."""
    context, mlflow_run = opened
    if result.error is not None:
        log.warning("[%s] %s", name, failure_reason(result.error), **about(member))
        if mlflow_run is not None:
            mlflow_run.fail(result.error)
        outcome = result.error
    else:
        outcome = (mlflow_run.finish(result, config_yaml(run)) if mlflow_run
                   else contract.final_metrics(result.accuracy_matrix, result.chance))
        log.info("[%s] %s", name, format_final(outcome), **about(member))
    if mlflow_run is not None:
        context.__exit__(None, None, None)
        log.info("[%s] MLflow run %s: %s", name, mlflow_run.run_id,
                 ui_url(run.tracking.uri, mlflow_run.experiment_id, mlflow_run.run_id), **about(member))
    return outcome
