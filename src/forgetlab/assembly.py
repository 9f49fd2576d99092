"""From typed configs to a ready trainer: the data, the network of one or more members, the learning
algorithm, the probes; and which configs can train together as the members of one ensemble. No
tracking: ``experiment`` adds MLflow around what this builds.

Members share everything that fixes the shapes and the schedule of the computation (network
architecture, algorithm and its keys, task sequence, evaluation, training loop) and may differ only
in the fields declared ``member=True`` (``forgetlab.constraints``): the seed (initial weights and
sample order), the learning rate, the L2 coefficient, the initial weight scale, ... Each member's
numbers are the same as when its config is trained alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

from forgetlab.algorithms import ALGORITHMS, build_algorithm
from forgetlab.arrays import backend_namespace
from forgetlab.config import Config
from forgetlab.constraints import MEMBER
from forgetlab.contract import flat_config
from forgetlab.data import Scenario, build_task_sequence
from forgetlab.networks import build_network
from forgetlab.strategies import STRATEGIES, build_strategy
from forgetlab.trainer import Callback, Trainer, choose_probe
from forgetlab.update_probe import UpdateProbe

# --- which configs can share an ensemble ------------------------------------------------------


def member_keys(run: Config) -> set[str]:
    """The dotted keys of ``run`` in which the members of one ensemble may differ."""
    keys = set()

    def walk(node: Any, prefix: str) -> None:
        for f in fields(node):
            value = getattr(node, f.name)
            if is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif f.metadata.get(MEMBER):
                keys.add(f"{prefix}{f.name}")

    walk(run, "")
    return keys


def ensemble_signature(run: Config) -> str:
    """A hash of everything but the member keys: configs with equal signatures can share an ensemble."""
    members = member_keys(run)
    shared = {k: v for k, v in flat_config(run).items() if k not in members}
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


def incompatible_key(runs: list[Config]) -> tuple[str, Any, Any] | None:
    """(key, value in the first config, value in another) for the first key outside the member keys
    in which two of ``runs`` differ; None when they can all share an ensemble."""
    members = member_keys(runs[0])
    first = flat_config(runs[0])
    for other in map(flat_config, runs[1:]):
        for key in sorted(first.keys() | other.keys()):
            if key not in members and first.get(key) != other.get(key):
                return key, first.get(key), other.get(key)
    return None


# --- building ----------------------------------------------------------------------------------


def build_ensemble_trainer(runs: list[Config], callbacks: list[Callback] = (), *, xp=None) -> Trainer:
    """One trainer for the configs ``runs`` (already validated) as the members of one ensemble: each
    member seeded by its ``seed`` (initial weights, sample order) with its own values of the member
    keys; ``callbacks`` follow training. ``Trainer.run`` returns one result per member, in this order.
    The arrays are those of ``backend.name``, or of the namespace ``xp`` when given (tests)."""
    if not runs:
        raise ValueError("an ensemble needs at least one config")
    clash = incompatible_key(runs) if len(runs) > 1 else None
    if clash is not None:
        key, first, other = clash
        raise ValueError(f"configs differ in {key!r} ({first!r} vs {other!r}); the members of one ensemble may "
                         f"differ only in {', '.join(sorted(member_keys(runs[0])))}")
    return assemble(runs, callbacks, xp=xp)


def assemble(runs: list[Config], callbacks: list[Callback] = (), *, xp=None) -> Trainer:
    """The trainer of ``runs``, which differ only in member keys (not checked here: an ensemble of
    thousands on a GPU makes its configs with ``dataclasses.replace``)."""
    cfg = runs[0]
    sequence = build_task_sequence(cfg.task_sequence)
    scenario = Scenario(cfg.task_sequence.scenario, sequence)
    # Per member, children by index: (initial weights, sample order, perturbation, strategy); a later
    # stream leaves the earlier ones as they were before it existed.
    seeds = [np.random.SeedSequence(run.seed).spawn(4) for run in runs]
    network = build_network(cfg.network, sequence.input_shape, scenario.n_outputs,
                            [np.random.default_rng(init) for init, *_ in seeds],
                            init_scale=[run.network.init_scale for run in runs],
                            xp=backend_namespace(cfg.backend.name) if xp is None else xp, dtype=cfg.backend.dtype)
    for s, (run, (_, _, perturbation, _)) in enumerate(zip(runs, seeds)):
        if run.network.init_perturbation:
            network.members(slice(s, s + 1)).perturb(run.network.init_perturbation, np.random.default_rng(perturbation))
    algorithm = build_algorithm([run.algorithm for run in runs], network)
    probe = choose_probe(sequence, cfg.eval.probe_per_task, cfg.task_sequence.data_seed)
    # The strategy follows training first: its task-end work (a Fisher, a memory) precedes every
    # other callback's view of the task's end.
    callbacks = [build_strategy([run.strategy for run in runs], network,
                                [np.random.default_rng(strategy) for *_, strategy in seeds]), *callbacks]
    if cfg.eval.probe_every:
        # Drawn as the sample probe is: with equal sizes both probes track the same samples.
        chosen = choose_probe(sequence, cfg.eval.update_probe_per_task, cfg.task_sequence.data_seed)
        callbacks.insert(1, UpdateProbe(sequence, scenario, chosen, cfg.eval.probe_every, cfg.eval.interference))
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
        rngs=[np.random.default_rng(order) for _, order, _, _ in seeds],
        callbacks=callbacks,
    )


def learner_label(run: Config) -> str:
    """How reports name the learner of ``run``: its algorithm's label, and its strategy's after a "+"
    (none for fine-tuning), e.g. "backprop (MLP) + EWC"."""
    strategy = STRATEGIES[run.strategy.name].label(run)
    return ALGORITHMS[run.algorithm.name].label(run) + (f" + {strategy}" if strategy else "")


def build_trainer(cfg: Config, callbacks: list[Callback] = (), *, xp=None) -> Trainer:
    """The trainer of ``cfg`` (already validated) alone: the ensemble of one member."""
    return build_ensemble_trainer([cfg], callbacks, xp=xp)


def total_samples(trainer: Trainer) -> int:
    return sum(s.n for s in trainer.stages) * trainer.epochs
