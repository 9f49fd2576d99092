"""What the quadratic-penalty strategies (EWC, SI) share: the penalty's strength, the one member key
the members of an ensemble may differ in, and its gradient added to every update of any algorithm.

The penalty of member s is P_s(theta) = strength_s * sum_i w_i (theta_i - anchor_i)^2 summed over every
parameter (weights and biases), with importances w >= 0 and anchors fixed between task ends: EWC's
w = F/2 (its (lambda/2) F), SI's w = Omega. Its gradient strength * 2 w (theta - anchor) joins the
gradient of every update (``adjust``), whichever algorithm makes it and whenever: per sample,
per mini-batch, per sequence or in mid-sequence. So the penalty acts once per update: RTRL and
BPTT(h; 1), which update at every step carrying loss, apply it T times per sequence where epochwise
BPTT applies it once (the unit of SGD on a penalised objective is the update, as in every library
this follows); a strength is chosen per learner, which the selection sweeps do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgetlab.constraints import AT_LEAST_0, constrain
from forgetlab.strategies.base import Strategy, StrategyConfig


# The strength's constraints; a subclass that changes its default repeats them (a field redeclared
# without its metadata would lose them, and with them its place among the ensemble's member keys).
STRENGTH = constrain(AT_LEAST_0, member=True)


@dataclass
class PenaltyConfig(StrategyConfig):
    """The keys of a quadratic-penalty strategy: EWC's lambda, SI's c (van de Ven's ``reg_strength``)."""

    strength: float = field(default=1.0, metadata=STRENGTH)


class QuadraticPenalty(Strategy):
    """P(theta) = strength * sum_i w_i (theta_i - anchor_i)^2 per member, written as the sums it needs,
    ``w`` = sum of importances, ``w_anchor`` = sum of importance * anchor and ``w_anchor2`` = sum of
    importance * anchor^2 (by parameter name, (S, *shape)), so that EWC's penalty per task is held in
    three arrays however many tasks there were: P = strength * sum(w theta^2 - 2 w_anchor theta + w_anchor2),
    dP/dtheta = 2 strength (w theta - w_anchor)."""

    def __init__(self, network, rngs, strength: float | list[float] = 1.0) -> None:
        super().__init__(network, rngs)
        self.strength, self.strength_of = self.per_member(strength, "strategy.strength")
        self.twice_strength_of = {n: 2.0 * v for n, v in self.strength_of.items()}
        self.active = bool(network.xp.any(self.strength != 0.0))  # no work at all when every strength is 0
        self.w = self.w_anchor = self.w_anchor2 = None  # None until the first task has ended

    def adjust(self, grads: dict[str, np.ndarray]) -> None:
        if self.w is None:
            return
        params, twice_strength_of = self.network.params, self.twice_strength_of
        for n, g in grads.items():
            pull = self.w[n] * params[n]
            pull -= self.w_anchor[n]
            pull *= twice_strength_of[n]
            g += pull

    def penalty(self) -> np.ndarray:
        """P(theta) of each member (S,) at the current weights: what ``adjust``'s term is the gradient of."""
        xp, S = self.network.xp, self.network.n_members
        total = xp.zeros(S, dtype=self.strength.dtype)
        if self.w is None:
            return total
        for n, p in self.network.params.items():
            terms = self.w[n] * p * p - 2.0 * self.w_anchor[n] * p + self.w_anchor2[n]
            total = total + xp.sum(xp.reshape(terms, (S, -1)), axis=-1)
        return self.strength * total

    def stop_member(self, s: int) -> None:
        for held in (self.w, self.w_anchor, self.w_anchor2):
            for array in (held or {}).values():
                array[s] = 0.0
