"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017): each parameter's importance is its share of the
loss decrease along the path the weights took, summed from the algorithm's own updates.

While task k trains, at every update u with gradient g_u (the algorithm's: its data loss and its L2
term, without SI's penalty, Zenke's ``unreg_grads``) and weight change Delta theta_u (the update the
algorithm applied, penalty included):

    omega_i += -g_u,i Delta theta_u,i                                   (the path integral)

at the end of task k, with theta~ the weights the task started from:

    Omega_i <- max(0, Omega_i + omega_i / ((theta_i - theta~_i)^2 + xi)),   theta~ <- theta,   omega <- 0

and while later tasks train, the penalty c sum_i Omega_i (theta_i - theta~_i)^2 (``penalty.py``),
c = ``strategy.strength``, xi = ``strategy.damping``. This follows Zenke's code (ganguli-lab/pathint:
the unregularised gradient, the rectified cumulative sum); van de Ven's code integrates the gradient
with the penalty and does not rectify. For RTRL and BPTT(h; h') the path is that of their online
updates in mid-sequence, each with its own partial gradient: the importance of exactly the steps the
weights took.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgetlab.constraints import POSITIVE, constrain
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.strategies.penalty import STRENGTH, PenaltyConfig, QuadraticPenalty
from forgetlab.trainer import Trainer

# Python overhead of one update's copy, penalty and path integral (benchmarks/strategies.py, with margin).
SECONDS_PER_UPDATE = 8e-6


@dataclass
class SIConfig(PenaltyConfig):
    name: str = "si"
    strength: float = field(default=1.0, metadata=STRENGTH)  # c
    damping: float = field(default=0.1, metadata=constrain(POSITIVE))  # xi


class SI(QuadraticPenalty):
    name = "si"
    Config = SIConfig

    @classmethod
    def label(cls, run) -> str:
        return "SI"

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize, work: Work) -> Work:
        # copy the gradient, the penalty's gradient (4 passes), the path integral (2) every update
        return Work(7 * network.params * work.updates_per_sample,
                    {"SI's importance, anchors, path integral and gradient copy (6 x params)": 6 * network.params},
                    seconds_per_sample=SECONDS_PER_UPDATE * work.updates_per_sample)

    def __init__(self, network, rngs, strength=1.0, damping: float = 0.1) -> None:
        super().__init__(network, rngs, strength)
        self.damping = damping
        self.omega = self.start = self.importance = None
        self._gradient = self._step = None  # this update's g and, once applied, its step lr * (g + penalty)

    def on_train_start(self, trainer: Trainer) -> None:
        super().on_train_start(trainer)
        xp, params = self.network.xp, self.network.params
        self.start = {n: xp.asarray(p, copy=True) for n, p in params.items()}
        self.omega = {n: xp.zeros_like(p) for n, p in params.items()}
        self.importance = {n: xp.zeros_like(p) for n, p in params.items()}

    def adjust(self, grads: dict[str, np.ndarray]) -> None:
        if not self.active:
            return
        xp = self.network.xp
        self._gradient = {n: xp.asarray(g, copy=True) for n, g in grads.items()}
        super().adjust(grads)
        # ``apply`` scales these very arrays by the learning rate in place: after it, the step
        self._step = grads

    def on_update(self, trainer: Trainer) -> None:
        """omega += -g Delta theta = g * (lr * applied gradient): the step the update just took."""
        if self._step is None:
            return
        for n, g in self._gradient.items():
            self.omega[n] += g * self._step[n]
        self._gradient = self._step = None

    def on_stage_end(self, trainer: Trainer, stage: int) -> None:
        if self.active:
            self.consolidate()

    def consolidate(self) -> None:
        """A task ended: its path integral becomes importance, its end the new anchor theta~."""
        xp, params = self.network.xp, self.network.params
        for n, p in params.items():
            moved = p - self.start[n]
            self.importance[n] = xp.maximum(self.importance[n] + self.omega[n] / (moved * moved + self.damping), 0.0)
            self.start[n] = xp.asarray(p, copy=True)
            self.omega[n][...] = 0.0
        self.w = self.importance
        self.w_anchor = {n: self.importance[n] * self.start[n] for n in params}
        self.w_anchor2 = {n: self.w_anchor[n] * self.start[n] for n in params}

    def stop_member(self, s: int) -> None:
        super().stop_member(s)
        for held in (self.omega, self.start, self.importance):
            for array in (held or {}).values():
                array[s] = 0.0
