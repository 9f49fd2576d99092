"""The one interface every learning algorithm offers the trainer.

The trainer never branches on the algorithm: it hands over one training sample (a vector for the
MLP, a sequence for the RNN) or a mini-batch, and the algorithm decides when the weights change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from forgetlab.networks.base import Network


class LearningAlgorithm(ABC):
    """Online learner over a network whose ``params`` it updates in place by SGD.

    Objective per update: E = mean over the batch of the data loss + (l2 / 2) sum over weights ||W||^2.
    """

    def __init__(self, network: Network, lr: float, l2: float = 0.0) -> None:
        self.network, self.lr, self.l2 = network, lr, l2
        self.updates = 0
        # Called after every weight update, wherever it happens (mid-sequence included): observers
        # that must see each update, such as the update-resolution probe.
        self.on_update: list[Callable[[], None]] = []

    @abstractmethod
    def gradient(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """(mean data loss, dE/dtheta by parameter name) with the weights held fixed."""

    def learn(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
        """Present one training sample or mini-batch; update the weights; return its mean data loss."""
        data_loss, grads = self.gradient(x, y, mask)
        self.apply(grads)
        return data_loss

    def apply(self, grads: dict[str, np.ndarray]) -> None:
        params = self.network.params
        for name, g in grads.items():
            params[name] -= self.lr * g
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

    def objective(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
        """E at the current weights, computed forward only: what ``gradient`` differentiates."""
        return self.network.data_loss(x, y, mask) + self.l2_term()

    def frozen_objective(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> Callable[[], float]:
        """E as a function of the live weights, with whatever ``gradient`` holds fixed taken at the
        current weights: what a finite-difference check of ``gradient`` differentiates. For an exact
        gradient that is simply ``objective``; truncated BPTT holds the states entering its stretches."""
        return lambda: self.objective(x, y, mask)

    def l2_term(self) -> float:
        params = self.network.params
        return 0.5 * self.l2 * sum(float(np.sum(params[n] ** 2)) for n in self.network.weight_names)
