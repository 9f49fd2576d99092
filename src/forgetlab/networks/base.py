"""What every network offers the trainer and the learning algorithms: its parameters, a forward
pass, and the loss and prediction at its output (the formulas are in ``networks.functions``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from forgetlab.networks import functions


class Network(ABC):
    """A network with output function ``output`` and loss ``loss`` (names from ``functions``)."""

    output: str
    loss: str

    @property
    @abstractmethod
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name; the live arrays, updated in place by the learning algorithms."""

    @property
    @abstractmethod
    def weight_names(self) -> list[str]:
        """Parameters that carry the L2 penalty (weights, not biases)."""

    @abstractmethod
    def predict(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Network output for a batch of samples -> (B, n_out)."""

    @abstractmethod
    def data_loss(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
        """Mean over the batch of the loss without the L2 term."""

    def perturb(self, scale: float, rng: np.random.Generator) -> None:
        """Add scale * N(0, 1) noise to every parameter, in place, parameter by parameter in name order."""
        for name in sorted(self.params):
            p = self.params[name]
            p += scale * rng.standard_normal(p.shape)

    def sample_loss(self, a: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Loss of each output a (..., n_out) against its target y, masked units excluded: shape (...)."""
        return functions.loss(self.output, self.loss, a, y, mask)

    def output_delta(self, a: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """delta = dE/dz at the output pre-activation z for the output a = g(z): shape of a."""
        return functions.output_delta(self.output, self.loss, a, y, mask)

    def predicted_unit(self, a: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The unit each output a (..., n_out) predicts: its largest unmasked unit, shape (...)."""
        return functions.masked_argmax(a, mask)
