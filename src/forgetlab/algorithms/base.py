"""The one interface every learning algorithm offers the trainer.

The trainer never branches on the algorithm: it hands over one training sample (a vector for the
MLP, a sequence for the RNN) or a mini-batch per member, and the algorithm decides when the weights
change. Every array carries the network's leading member axis (``networks.base``): the members
learn side by side, each from its own samples and with its own learning rate and L2 coefficient,
and a lone network is the case of one member.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Callable

import numpy as np

from forgetlab.arrays import by_member
from forgetlab.networks.base import Network


def per_member(value: float | Sequence[float], network: Network, name: str) -> np.ndarray:
    """One value for every member, or one per member, as a vector (S,) of the network's namespace and
    floating-point type (float32 weights are scaled by float32 rates, not promoted)."""
    S = network.n_members
    values = np.full(S, float(value)) if np.ndim(value) == 0 else np.array(value, dtype=np.float64)
    if values.shape != (S,):
        raise ValueError(f"{name}: one value for every member or one per member ({S}); got {len(values)} values")
    dtype = next(iter(network.params.values())).dtype
    return network.xp.asarray(values, dtype=dtype)


class LearningAlgorithm(ABC):
    """Online learner over a network whose ``params`` it updates in place by SGD.

    Objective per update and member: E = mean over the batch of the data loss
    + (l2 / 2) sum over weights ||W||^2. ``lr`` and ``l2``: one value for every member or one per member.
    """

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
        # Called after every weight update, wherever it happens (mid-sequence included): observers
        # that must see each update, such as the update-resolution probe.
        self.on_update: list[Callable[[], None]] = []

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
        """theta -= lr * g for each member. Consumes ``grads``: each is scaled by the learning rate in
        place, which saves a temporary as large as the weights of every member."""
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
