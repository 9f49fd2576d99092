"""Divergence: training that has left the range where its numbers mean anything.

The trainer checks two signs, member by member: a training loss that is not finite (after every
update) and weights that are not finite or have exploded (``WeightCheck``, at every evaluation point);
a member that shows either stops there, the others go on. The second catches
what the first misses: with a huge learning rate the units saturate, the loss stays finite, and the
run would end FINISHED at chance accuracy. Measured with ``algorithm.lr=1e6`` on the four learner
presets (split digits): the root mean square (RMS) of the parameters went from 0.12-0.21 at
initialisation to 2e4-6e4 within the first 100 samples; with the presets' own learning rates it stays
below 1, and even ``lr=10`` stays below 2. The bound, 1000 x max(1, initial RMS), lies between.
"""

from __future__ import annotations

import math

import numpy as np

from forgetlab.arrays import array_namespace, to_numpy

MAX_RMS_GROWTH = 1e3


class TrainingDiverged(FloatingPointError):
    """The training loss or the weights became inf, nan or exploded: they are no longer numbers worth evaluating."""


def weight_rms(params: dict[str, np.ndarray]) -> np.ndarray:
    """Root mean square of all parameters of a member together, for each member: (S,) on the host
    (nan or inf once any of its parameters is)."""
    first = next(iter(params.values()))
    xp, S = array_namespace(first), first.shape[0]
    total = sum(xp.sum(xp.reshape(p * p, (S, -1)), axis=-1) for p in params.values())
    count = sum(math.prod(p.shape[1:]) for p in params.values())
    return np.sqrt(to_numpy(total) / count) if count else np.zeros(S)


class WeightCheck:
    """Finds the members whose parameters' RMS is not finite or exceeds ``MAX_RMS_GROWTH`` x max(1,
    its value when the check was created)."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.params = params
        self.initial = weight_rms(params)
        self.limit = MAX_RMS_GROWTH * np.maximum(1.0, self.initial)

    def exceeded(self) -> list[tuple[int, str]]:
        """(member, what happened to its weights) for each member over its bound."""
        rms = weight_rms(self.params)
        over = ~(rms <= self.limit)  # True for nan too
        return [(int(m), f"the root mean square of the weights is {rms[m]:.3g}, above {self.limit[m]:.3g} = "
                         f"{MAX_RMS_GROWTH:g} x max(1, its initial {self.initial[m]:.3g})") for m in np.flatnonzero(over)]
