"""The one interface every learning algorithm offers the trainer.

The trainer never branches on the algorithm: it hands over one training sample (a vector for the
MLP, a sequence for the RNN) or a mini-batch per member, and the algorithm decides when the weights
change. Every array carries the network's leading member axis (``networks.base``): the members
learn side by side, each from its own samples and with its own learning rate and L2 coefficient,
and a lone network is the case of one member.

Every update of every algorithm goes through ``apply`` (per sample, per mini-batch, per sequence or
in mid-sequence): the one place where an ``UpdateHook`` (a continual-learning strategy,
``forgetlab.strategies``) may change the gradient before it is applied, and nothing else branches on it.

An algorithm class is also its config group's option (``algorithm=<name>``, ``forgetlab.registry``):
it declares its name, its config (``AlgorithmConfig`` or a subclass, next to it, whose fields are its
constructor's keyword arguments), the networks it trains, whether it learns one sequence at a time,
whether its members gain from sharing an ensemble, its label in reports and what it costs.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Callable, ClassVar, Protocol

import numpy as np

from forgetlab.arrays import by_member
from forgetlab.constraints import AT_LEAST_0, MEMBER, POSITIVE, OneOfNames, constrain
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.networks.base import Network
from forgetlab.registry import Registry

ALGORITHMS: Registry[type[LearningAlgorithm]] = Registry("algorithm")


@dataclass
class AlgorithmConfig:
    """What every learning algorithm's config has; an algorithm with keys of its own extends it next
    to its class. Every field but ``name`` and ``lr_selected_by`` is a keyword of the constructor."""

    name: str = field(default="backprop", metadata=constrain(OneOfNames(ALGORITHMS.names)))
    lr: float = field(default=0.5, metadata=constrain(POSITIVE, member=True))
    l2: float = field(default=0.0, metadata=constrain(AT_LEAST_0, member=True))
    # The selection sweep whose validation runs chose ``lr`` ("": set by hand), so a run names its source.
    lr_selected_by: str = ""

    def check(self, run) -> None:
        """Raise ConfigError for a rule that spans this config's fields (or ``run``'s other groups)."""


def per_member(value: float | Sequence[float], network: Network, name: str) -> np.ndarray:
    """One value for every member, or one per member, as a vector (S,) of the network's namespace and
    floating-point type (float32 weights are scaled by float32 rates, not promoted)."""
    S = network.n_members
    values = np.full(S, float(value)) if np.ndim(value) == 0 else np.array(value, dtype=np.float64)
    if values.shape != (S,):
        raise ValueError(f"{name}: one value for every member or one per member ({S}); got {len(values)} values")
    dtype = next(iter(network.params.values())).dtype
    return network.xp.asarray(values, dtype=dtype)


class UpdateHook(Protocol):
    """Changes the gradient of every update before it is applied (a penalty's gradient added, a
    projection): registered in ``LearningAlgorithm.hooks``. The algorithm never knows what it does."""

    def adjust(self, grads: dict[str, np.ndarray]) -> None:
        """Change ``grads`` (dE/dtheta by parameter name, (S, *shape)), in place, into the gradient to apply."""

    def stop_member(self, s: int) -> None:
        """Member ``s`` stopped learning (``LearningAlgorithm.stop_member``): clear what is held for it."""


class LearningAlgorithm(ABC):
    """Online learner over a network whose ``params`` it updates in place by SGD.

    Objective per update and member: E = mean over the batch of the data loss
    + (l2 / 2) sum over weights ||W||^2. ``lr`` and ``l2``: one value for every member or one per member.
    """

    # --- the declaration (``forgetlab.registry``): a subclass that sets ``name`` is registered ---
    name: ClassVar[str]
    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    trains: ClassVar[tuple[str, ...]]  # the networks (their names) it can train
    # Learns from one sequence at a time (trainer.batch_size must be 1).
    one_sample_at_a_time: ClassVar[bool] = False
    # Whether several seeds (learning rates, ...) train faster as one ensemble than one by one: false
    # where each member's work is already one large product, which stacking members only slows.
    shares_ensemble: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ALGORITHMS.add(cls.name, cls)

    @classmethod
    def from_config(cls, members: Sequence[AlgorithmConfig], network: Network) -> LearningAlgorithm:
        """The algorithm of ``members``' configs (equal but in the fields an ensemble's members may
        differ in, ``constraints.MEMBER``: passed one value per member) over ``network``."""
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {}
        for f in fields(members[0]):
            if f.name in accepted and f.name != "network":
                values = [getattr(m, f.name) for m in members]
                kwargs[f.name] = values if f.metadata.get(MEMBER) else values[0]
        return cls(network, **kwargs)

    @classmethod
    def label(cls, run) -> str:
        """How reports name this learner in the config ``run`` (e.g. "BPTT(4; 1)")."""
        return cls.name

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize) -> Work:
        """The operations of training on one sample and the values held for it, for the config ``run``.
        By default about one forward and one backward pass (3 forward passes), nothing held beyond the
        network's own arrays, one update per batch: an algorithm that does more declares it."""
        return Work(ops_per_sample=3 * network.forward_ops, updates_per_sample=1 / data.batch_size)

    def __init__(self, network: Network, lr: float | Sequence[float], l2: float | Sequence[float] = 0.0) -> None:
        self.network = network
        self.lr, self.l2 = per_member(lr, network, "lr"), per_member(l2, network, "l2")
        self.has_l2 = bool(self.network.xp.any(self.l2 != 0.0))  # no L2 work when every member has none
        self.updates = 0  # weight updates, the same for every member (they share the schedule)
        # lr and l2 by parameter name, shaped (S, 1, ..., 1) to scale that parameter member by member
        # (views: they follow changes to lr and l2).
        shapes = {name: p.ndim for name, p in network.params.items()}
        self.lr_of = {name: by_member(self.lr, ndim) for name, ndim in shapes.items()}
        self.l2_of = {name: by_member(self.l2, ndim) for name, ndim in shapes.items()}
        # Called after every weight update, wherever it happens (mid-sequence included): the trainer
        # hooks its callbacks here (``Callback.on_update``).
        self.on_update: list[Callable[[], None]] = []
        # Change the gradient of every update before it is applied (``UpdateHook``), in this order.
        self.hooks: list[UpdateHook] = []

    @abstractmethod
    def gradient(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(mean data loss (S,), dE/dtheta by parameter name, each (S, *shape)) with the weights held
        fixed. x (S, B, ...) per member, or (B, ...) for every member; y and mask likewise."""

    def learn(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Present one training sample or mini-batch per member; update the weights; return the mean
        data loss of each member (S,)."""
        data_loss, grads = self.gradient(x, y, mask)
        self.apply(grads)
        return data_loss

    def apply(self, grads: dict[str, np.ndarray]) -> None:
        """theta -= lr * g for each member, g the gradient after every hook's ``adjust``. Consumes
        ``grads``: each is scaled by the learning rate in place, which saves a temporary as large as the
        weights of every member; so after the update (``on_update``) it holds the step lr * g."""
        for hook in self.hooks:
            hook.adjust(grads)
        params = self.network.params
        lr_of = self.lr_of
        for name, g in grads.items():
            g *= lr_of[name]
            params[name] -= g
        self.updates += 1
        for callback in self.on_update:
            callback()

    @property
    def error_pending(self) -> bool:
        """Whether an error already presented waits for a later weight update (an online recurrent
        learner in a stream between update points); never for a learner that updates in ``learn``."""
        return False

    def start_task(self) -> None:
        """Called before the first sample of each task (stateful algorithms reset or flush here)."""

    def end_task(self) -> None:
        """Called after the last sample of each task."""

    def stop_member(self, s: int) -> None:
        """Take member ``s`` out of learning (its training diverged): its weights and learning rate
        become 0, and what the algorithm carries for it is cleared, so that its slices of every array
        stay finite, keep their value and cost the other members nothing but their share of the work."""
        for p in self.network.params.values():
            p[s] = 0.0
        self.lr[s] = 0.0
        self.l2[s] = 0.0
        for hook in self.hooks:
            hook.stop_member(s)

    def objective(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """E (S,) at the current weights, computed forward only: what ``gradient`` differentiates."""
        return self.network.data_loss(x, y, mask) + self.l2_term()

    def frozen_objective(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> Callable[[], np.ndarray]:
        """E (S,) as a function of the live weights, with whatever ``gradient`` holds fixed taken at the
        current weights: what a finite-difference check of ``gradient`` differentiates. For an exact
        gradient that is simply ``objective``; truncated BPTT holds the states entering its stretches."""
        return lambda: self.objective(x, y, mask)

    def l2_term(self) -> np.ndarray:
        """(l2 / 2) sum over weights ||W||^2 of each member: (S,)."""
        xp, params = self.network.xp, self.network.params
        squares = sum(xp.sum(xp.reshape(params[n] ** 2, (self.network.n_members, -1)), axis=-1)
                      for n in self.network.weight_names)
        return 0.5 * self.l2 * squares
