"""From composed configs to a ready trainer: the data, the network of one or more members, the
learning algorithm, the probes. No tracking: ``experiment`` adds MLflow around what this builds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from forgetlab.algorithms import build_algorithm
from forgetlab.arrays import backend_namespace
from forgetlab.data import Scenario, build_task_sequence
from forgetlab.ensemble import MEMBER_KEYS, incompatible_key
from forgetlab.networks import build_network
from forgetlab.trainer import Observer, Trainer, choose_probe
from forgetlab.update_probe import UpdateProbe


@dataclass(frozen=True)
class Member:
    """What one member of an ensemble has of its own: the values of ``ensemble.MEMBER_KEYS``."""

    seed: int
    lr: float
    l2: float
    init_scale: float
    init_perturbation: float

    @classmethod
    def of(cls, cfg: DictConfig) -> Member:
        return cls(seed=cfg.seed, lr=cfg.algorithm.lr, l2=cfg.algorithm.l2, init_scale=cfg.network.init_scale,
                   init_perturbation=cfg.network.init_perturbation)


def build_ensemble_trainer(cfgs: list[DictConfig], observers: list[list[Observer]] | None = None, *, xp=None) -> Trainer:
    """One trainer for the configs ``cfgs`` (already validated) as the members of one ensemble: each
    member seeded by its ``seed`` (initial weights, sample order) with its own learning rate, L2 and
    initial scale; ``observers[s]`` see member s's evaluation points. The configs must differ in
    ``ensemble.MEMBER_KEYS`` only. ``Trainer.run`` returns one result per member, in this order.
    The arrays are those of ``backend.name``, or of the namespace ``xp`` when given (tests)."""
    if not cfgs:
        raise ValueError("an ensemble needs at least one config")
    clash = incompatible_key(cfgs) if len(cfgs) > 1 else None
    if clash is not None:
        key, first, other = clash
        raise ValueError(f"configs differ in {key!r} ({first!r} vs {other!r}); the members of one ensemble may "
                         f"differ only in {', '.join(MEMBER_KEYS)}")
    return assemble(cfgs[0], [Member.of(c) for c in cfgs], observers, xp=xp)


def assemble(cfg: DictConfig, members: list[Member], observers: list[list[Observer]] | None = None, *,
             xp=None) -> Trainer:
    """The trainer of ``members`` with everything else from ``cfg``: what ``build_ensemble_trainer``
    builds, without a config per member (an ensemble of thousands on a GPU)."""
    sequence = build_task_sequence(cfg.task_sequence)
    scenario = Scenario(cfg.task_sequence.scenario, sequence)
    # Per member, children by index: (initial weights, sample order, perturbation); the third stream
    # leaves the first two as they were before it existed.
    seeds = [np.random.SeedSequence(m.seed).spawn(3) for m in members]
    network = build_network(cfg.network, sequence.input_shape, scenario.n_outputs,
                            [np.random.default_rng(init) for init, _, _ in seeds],
                            init_scale=[m.init_scale for m in members],
                            xp=backend_namespace(cfg.backend.name) if xp is None else xp, dtype=cfg.backend.dtype)
    for s, (member, (_, _, perturbation)) in enumerate(zip(members, seeds)):
        if member.init_perturbation:
            network.members(slice(s, s + 1)).perturb(member.init_perturbation, np.random.default_rng(perturbation))
    algorithm = build_algorithm(cfg.algorithm, network, lr=[m.lr for m in members], l2=[m.l2 for m in members])
    probe = choose_probe(sequence, cfg.eval.probe_per_task, cfg.task_sequence.data_seed)
    update_probe = None
    if cfg.eval.probe_every:
        # Drawn as the sample probe is: with equal sizes both probes track the same samples.
        chosen = choose_probe(sequence, cfg.eval.update_probe_per_task, cfg.task_sequence.data_seed)
        update_probe = UpdateProbe(sequence, scenario, chosen, cfg.eval.probe_every, cfg.eval.interference)
    return Trainer(
        network,
        algorithm,
        sequence,
        scenario,
        epochs_per_task=cfg.trainer.epochs_per_task,
        batch_size=cfg.trainer.batch_size,
        shuffle=cfg.trainer.shuffle,
        joint=cfg.task_sequence.joint,
        every_samples=cfg.eval.every_samples,
        eval_split=cfg.eval.split,
        probe=probe,
        rngs=[np.random.default_rng(order) for _, order, _ in seeds],
        observers=observers,
        update_probe=update_probe,
    )


def build_trainer(cfg: DictConfig, observers=(), *, xp=None) -> Trainer:
    """The trainer of ``cfg`` (already validated) alone: the ensemble of one member."""
    return build_ensemble_trainer([cfg], [list(observers)], xp=xp)


def total_samples(trainer: Trainer) -> int:
    return sum(s.n for s in trainer.stages) * trainer.epochs
