"""The one interface every continual-learning strategy offers: what a learner does besides learning
each task's samples in turn, so that it forgets less (van de Ven, Tuytelaars & Tolias 2022, "Three
types of incremental learning"; their code, GMvandeVen/continual-learning, and Avalanche's training
plugins are the references each strategy's module cites).

A strategy follows training as a trainer ``Callback`` (the end of each task: EWC's Fisher, SI's
importance, a memory's new samples; every update: SI's path integral), changes updates as an
``UpdateHook`` of the learning algorithm (``LearningAlgorithm.apply``, the one place where every
algorithm applies an update: per sample, per mini-batch, per sequence and in mid-sequence; EWC and SI
add their penalty's gradient there, A-GEM projects) and may hand the trainer samples to learn between
the task's own (``Callback.replay``: replay). It never branches on the algorithm or the network.

A strategy class is also its config group's option (``strategy=<name>``, ``forgetlab.registry``): it
declares its name, its config (``StrategyConfig`` or a subclass, next to it, whose fields are its
constructor's keyword arguments, each with its constraints; ``member=True`` on those in which the
members of one ensemble may differ, e.g. a penalty's strength), its label in reports and what it costs
(``cost``, read by the cost guard). Each member of an ensemble has its own state (Fisher, importance,
memory, random stream), so its numbers are those of its config trained alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from forgetlab.algorithms.base import per_member
from forgetlab.arrays import by_member
from forgetlab.constraints import MEMBER, OneOfNames, constrain
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.networks.base import Network
from forgetlab.registry import Registry
from forgetlab.trainer import Callback, Trainer, TrainingResult

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")

# The name under which a member's ``TrainingResult.records`` holds what its strategy kept for the record
# (a memory's contents: ``EpisodicMemory.arrays``), written to ``contract.ARTIFACT_STRATEGY_MEMORY``.
RECORD = "strategy_memory"


@dataclass
class StrategyConfig:
    """What every strategy's config has; a strategy with keys of its own extends it next to its class.
    Every field but ``name`` and ``selected_by`` is a keyword of the constructor."""

    name: str = field(default="fine_tuning", metadata=constrain(OneOfNames(STRATEGIES.names)))
    # The selection sweep whose validation runs chose this strategy's hyperparameters ("": set by hand).
    selected_by: str = ""

    def check(self, run) -> None:
        """Raise ConfigError for a rule that spans this config's fields (or ``run``'s other groups)."""


class Strategy(Callback):
    """A trainer callback and, if it defines ``adjust``, an update hook of the algorithm it follows."""

    # --- the declaration (``forgetlab.registry``): a subclass that sets ``name`` is registered ---
    name: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            STRATEGIES.add(cls.name, cls)

    @classmethod
    def from_config(cls, members: Sequence[StrategyConfig], network: Network,
                    rngs: Sequence[np.random.Generator]) -> Strategy:
        """The strategy of ``members``' configs (equal but in the fields declared ``member=True``: passed
        one value per member) over ``network``; ``rngs[s]`` is member s's own random stream."""
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {}
        for f in fields(members[0]):
            if f.name in accepted and f.name not in ("network", "rngs"):
                values = [getattr(m, f.name) for m in members]
                kwargs[f.name] = values if f.metadata.get(MEMBER) else values[0]
        return cls(network, list(rngs), **kwargs)

    @classmethod
    def label(cls, run) -> str:
        """How reports name this strategy in the config ``run`` (e.g. "EWC"), after the algorithm's
        label; "" adds nothing (fine-tuning)."""
        return cls.name

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize, work: Work) -> Work:
        """What the strategy adds to training on one sample, for the config ``run`` whose algorithm does
        ``work`` per sample (its ``updates_per_sample`` among it): operations, values held, call overhead.
        Nothing by default."""
        return Work(0.0)

    def __init__(self, network: Network, rngs: list[np.random.Generator]) -> None:
        self.network, self.rngs = network, rngs
        self.algorithm = None

    def per_member(self, value: float | Sequence[float], name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(one value per member (S,), that vector shaped to scale each parameter by name) for a member key."""
        values = per_member(value, self.network, name)
        return values, {n: by_member(values, p.ndim) for n, p in self.network.params.items()}

    # --- following training ------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer) -> None:
        self.algorithm = trainer.algorithm
        if defines_hook(self):
            self.algorithm.hooks.append(self)

    def on_train_end(self, trainer: Trainer, results: list[TrainingResult]) -> None:
        if self in self.algorithm.hooks:
            self.algorithm.hooks.remove(self)

    # --- the update hook (``algorithms.base.UpdateHook``) -------------------------------------

    def adjust(self, grads: dict[str, np.ndarray]) -> None:
        """Change the gradient about to be applied, in place (by default: not at all)."""

    def stop_member(self, s: int) -> None:
        """Member ``s`` stopped learning: clear what the strategy holds for it, so that its slices stay
        finite (its weights and learning rate are 0 from now on)."""


def defines_hook(strategy: Strategy) -> bool:
    """Whether ``strategy`` changes updates (overrides ``Strategy.adjust``)."""
    return type(strategy).adjust is not Strategy.adjust


__all__ = ["RECORD", "STRATEGIES", "Strategy", "StrategyConfig", "defines_hook"]
