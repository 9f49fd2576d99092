"""One training run from a composed config: validate, build, train, track."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig, OmegaConf

from forgetlab.algorithms import build_algorithm
from forgetlab.config import validate
from forgetlab.data import Scenario, build_task_sequence
from forgetlab.ensemble import MEMBER_KEYS, incompatible_key
from forgetlab.networks import build_network
from forgetlab.tracking.mlflow_run import final_metrics, run_for_config
from forgetlab.tracking.sweep import job_already_done
from forgetlab.trainer import EvalPoint, Observer, Trainer, TrainingResult, choose_probe


@dataclass
class RunContext:
    """What the launcher knows about this run beyond its config."""

    overrides: list[str] = field(default_factory=list)
    sweep_id: str | None = None
    parent_run_id: str | None = None
    quiet: bool = False  # a job in a multirun prints one line per task instead of a progress bar


def run_name(cfg: DictConfig) -> str:
    ts = cfg.task_sequence
    joint = "-joint" if ts.joint else ""
    return f"{cfg.algorithm.name}-{ts.name}-{ts.scenario}{joint}-seed{cfg.seed}"


class TaskLines:
    """One quiet line per finished task (multirun jobs)."""

    def __init__(self, name: str, stage_names: list[str]) -> None:
        self.name, self.stage_names = name, stage_names

    def on_eval(self, point: EvalPoint) -> None:
        if point.boundary and point.stage >= 0:
            seen = point.accuracy[: point.tasks_trained]
            print(
                f"[{self.name}] after {self.stage_names[point.stage]}: samples={point.samples_seen} "
                f"updates={point.updates} acc/seen={np.mean(seen):.3f}",
                flush=True,
            )


class ProgressBar:
    """A tqdm bar over samples for a single run, closed after the last stage."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="sample", dynamic_ncols=True, file=sys.stderr, leave=False)
        self.seen = 0

    def on_eval(self, point: EvalPoint) -> None:
        self.bar.update(point.samples_seen - self.seen)
        self.seen = point.samples_seen
        if point.tasks_trained:
            self.bar.set_postfix(acc_seen=f"{np.mean(point.accuracy[: point.tasks_trained]):.3f}", refresh=False)
        if self.seen >= self.bar.total and point.boundary:
            self.bar.close()


def build_ensemble_trainer(cfgs: list[DictConfig], observers: list[list[Observer]] | None = None) -> Trainer:
    """One trainer for the configs ``cfgs`` (already validated) as the members of one ensemble: each
    member seeded by its ``seed`` (initial weights, sample order) with its own learning rate, L2 and
    initial scale; ``observers[s]`` see member s's evaluation points. The configs must differ in
    ``ensemble.MEMBER_KEYS`` only. ``Trainer.run`` returns one result per member, in this order."""
    if not cfgs:
        raise ValueError("an ensemble needs at least one config")
    clash = incompatible_key(cfgs) if len(cfgs) > 1 else None
    if clash is not None:
        key, first, other = clash
        raise ValueError(f"configs differ in {key!r} ({first!r} vs {other!r}); the members of one ensemble may "
                         f"differ only in {', '.join(MEMBER_KEYS)}")
    cfg = cfgs[0]
    sequence = build_task_sequence(cfg.task_sequence)
    scenario = Scenario(cfg.task_sequence.scenario, sequence)
    seeds = [np.random.SeedSequence(c.seed).spawn(2) for c in cfgs]  # (initial weights, sample order) per member
    network = build_network(cfg.network, sequence.input_shape, scenario.n_outputs,
                            [np.random.default_rng(init) for init, _ in seeds],
                            init_scale=[c.network.init_scale for c in cfgs])
    algorithm = build_algorithm(cfg.algorithm, network, lr=[c.algorithm.lr for c in cfgs],
                                l2=[c.algorithm.l2 for c in cfgs])
    probe = choose_probe(sequence, cfg.eval.probe_per_task, cfg.task_sequence.data_seed)
    return Trainer(
        network,
        algorithm,
        sequence,
        scenario,
        epochs_per_task=cfg.algorithm.epochs_per_task,
        batch_size=cfg.algorithm.batch_size,
        shuffle=cfg.algorithm.shuffle,
        joint=cfg.task_sequence.joint,
        every_samples=cfg.eval.every_samples,
        probe=probe,
        rngs=[np.random.default_rng(order) for _, order in seeds],
        observers=observers,
    )


def build_trainer(cfg: DictConfig, observers=()) -> Trainer:
    """The trainer of ``cfg`` (already validated) alone: the ensemble of one member."""
    return build_ensemble_trainer([cfg], [list(observers)])


def total_samples(trainer: Trainer) -> int:
    return sum(len(s.x) for s in trainer.stages) * trainer.epochs


def run_experiment(cfg: DictConfig, context: RunContext | None = None) -> dict[str, float]:
    """Validate ``cfg``, train, and (when tracking is enabled) record everything in MLflow.

    Returns the final metrics. A run that raises is ended FAILED (KILLED on Ctrl-C) in MLflow and
    the exception propagates.
    """
    context = context or RunContext()
    validate(cfg)
    name = run_name(cfg)
    if cfg.tracking.enabled and context.parent_run_id is not None:
        # The sweeper checked before launching, but a job may start much later (a cluster queue)
        # while the same config was trained by an overlapping sweep: check again, at its start.
        reason = job_already_done(cfg, name)
        if reason:
            print(f"[{name}] skip: {reason}", flush=True)
            return {}
    trainer = build_trainer(cfg)
    stage_names = [s.name for s in trainer.stages]
    (observers,) = trainer.observers
    observers.append(TaskLines(name, stage_names) if context.quiet else ProgressBar(total_samples(trainer)))
    if not cfg.tracking.enabled:
        return final_metrics(trained(trainer).accuracy_matrix)

    with run_for_config(cfg, name, context) as mlflow_run:
        observers.append(mlflow_run)
        result = trained(trainer)
        return mlflow_run.finish(result, OmegaConf.to_yaml(cfg, resolve=True))


def trained(trainer: Trainer) -> TrainingResult:
    """Run the trainer of one config; its result, or its ``TrainingDiverged`` raised."""
    (result,) = trainer.run()
    if result.error is not None:
        raise result.error
    return result
