"""Divergence: training that has left the range where its numbers mean anything.

The trainer checks two signs: a training loss that is not finite (after every update) and weights
that are not finite or have exploded (``WeightCheck``, at every evaluation point). The second catches
what the first misses: with a huge learning rate the units saturate, the loss stays finite, and the
run would end FINISHED at chance accuracy. Measured with ``algorithm.lr=1e6`` on the four learner
presets (split digits): the root mean square (RMS) of the parameters went from 0.12-0.21 at
initialisation to 2e4-6e4 within the first 100 samples; with the presets' own learning rates it stays
below 1, and even ``lr=10`` stays below 2. The bound, 1000 x max(1, initial RMS), lies between.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from forgetlab.trainer import EvalPoint

MAX_RMS_GROWTH = 1e3


class TrainingDiverged(FloatingPointError):
    """The training loss or the weights became inf, nan or exploded: they are no longer numbers worth evaluating."""


def weight_rms(params: dict[str, np.ndarray]) -> float:
    """Root mean square of all parameters together (nan or inf once any of them is)."""
    total = sum(float(np.vdot(p, p)) for p in params.values())
    count = sum(p.size for p in params.values())
    return math.sqrt(total / count) if count else 0.0


class WeightCheck:
    """Raises TrainingDiverged when the parameters' RMS is not finite or exceeds
    ``MAX_RMS_GROWTH`` x max(1, its value when the check was created)."""

    def __init__(self, params: dict[str, np.ndarray], stage_names: list[str]) -> None:
        self.params, self.stage_names = params, stage_names
        self.initial = weight_rms(params)
        self.limit = MAX_RMS_GROWTH * max(1.0, self.initial)

    def __call__(self, point: EvalPoint) -> None:
        rms = weight_rms(self.params)
        if rms <= self.limit:  # False for nan too
            return
        stage = self.stage_names[point.stage] if point.stage >= 0 else "init"
        raise TrainingDiverged(
            f"Training diverged by update {point.updates} ({point.samples_seen} samples seen, stage {stage!r}): "
            f"the root mean square of the weights is {rms:.3g}, above {self.limit:.3g} = {MAX_RMS_GROWTH:g} x "
            f"max(1, its initial {self.initial:.3g}). Lower algorithm.lr or network.init_scale."
        )
