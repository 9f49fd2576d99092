"""Elman recurrent network:  h_t = f(W_hh h_{t-1} + W_xh x_t + b_h),  y_t = g(W_hy h_t + b_y),  h_0 = 0.

A sample is a sequence x of shape (T, I); a batch is (N, T, I). The target and the output mask of a
sample apply at every step that carries loss: the last step (``loss_at="last"``) or every step
(``loss_at="all"``). The data loss of a sequence is the mean of the per-step losses over those steps,
so that it is on the scale of the MLP's per-sample loss whatever ``loss_at`` is:

    E = 1/|S| sum_{t in S} loss(y_t, target) + (lambda/2) (||W_xh||^2 + ||W_hh||^2 + ||W_hy||^2)

The network only runs forward; every gradient is derived in the learning algorithm that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from forgetlab.networks import functions
from forgetlab.networks.base import Network

# The allowed values, checked by the config before a network is built.
RNN_ACTIVATIONS = ("tanh", "sigmoid")
LOSS_AT = ("last", "all")


@dataclass
class RNNForward:
    """h[:, t] is the state after step t - 1 (h[:, 0] = initial state), shape (N, T + 1, H);
    z[:, t] the pre-activation of step t (N, T, H); a[:, t] the output at step t (N, T, O)."""

    h: np.ndarray
    z: np.ndarray
    a: np.ndarray


class RNN(Network):
    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        activation: str = "tanh",
        output: str = "softmax",
        loss: str = "cross_entropy",
        loss_at: str = "last",
        init_scale: float = 1.0,
        rng: np.random.Generator | None = None,
        dtype: type = np.float64,
    ) -> None:
        """Weights ~ N(0, init_scale^2 / fan_in) (fan_in of W_hh is H), biases 0."""
        rng = rng if rng is not None else np.random.default_rng(0)
        self.activation, self.output, self.loss, self.loss_at = activation, output, loss, loss_at

        def init(shape, fan_in):
            return (init_scale / np.sqrt(fan_in) * rng.standard_normal(shape)).astype(dtype)

        self.W_xh = init((n_hidden, n_in), n_in)
        self.W_hh = init((n_hidden, n_hidden), n_hidden)
        self.b_h = np.zeros(n_hidden, dtype=dtype)
        self.W_hy = init((n_out, n_hidden), n_hidden)
        self.b_y = np.zeros(n_out, dtype=dtype)

    @property
    def n_inputs(self) -> int:
        return self.W_xh.shape[1]

    @property
    def n_hidden(self) -> int:
        return self.W_hh.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.W_hy.shape[0]

    @cached_property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name; the arrays are the live ones, updated in place (never rebound, so the
        dict is built once)."""
        return {"W_xh": self.W_xh, "W_hh": self.W_hh, "b_h": self.b_h, "W_hy": self.W_hy, "b_y": self.b_y}

    @property
    def weight_names(self) -> list[str]:
        """Parameters that carry the L2 penalty (weights, not biases)."""
        return ["W_xh", "W_hh", "W_hy"]

    def loss_steps(self, T: int) -> np.ndarray:
        """Steps that carry loss in a sequence of length T."""
        return np.array([T - 1]) if self.loss_at == "last" else np.arange(T)

    def step(self, h_prev: np.ndarray, x_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z_t, h_t) for states (..., H) and inputs (..., I)."""
        z = h_prev @ self.W_hh.T + x_t @ self.W_xh.T + self.b_h
        return z, functions.activation(self.activation, z)

    def readout(self, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """y = g(W_hy h + b_y) over the last axis."""
        return functions.output(self.output, h @ self.W_hy.T + self.b_y, mask)

    def forward(self, x: np.ndarray, mask: np.ndarray, h0: np.ndarray | None = None) -> RNNForward:
        """Run a batch of sequences x (N, T, I) from h0 (N, H) (zero when None); outputs at every step."""
        N, T, _ = x.shape
        H = self.n_hidden
        h = np.empty((N, T + 1, H), dtype=self.W_hh.dtype)
        z = np.empty((N, T, H), dtype=self.W_hh.dtype)
        h[:, 0] = 0.0 if h0 is None else h0
        # The input projection of every step at once: one matmul instead of T.
        x_proj = x @ self.W_xh.T + self.b_h
        for t in range(T):
            z[:, t] = h[:, t] @ self.W_hh.T + x_proj[:, t]
            h[:, t + 1] = functions.activation(self.activation, z[:, t])
        a = self.readout(h[:, 1:], mask[:, None, :])
        return RNNForward(h=h, z=z, a=a)

    def final_state(self, x: np.ndarray) -> np.ndarray:
        """h_T for a batch of sequences (N, T, I) started from h_0 = 0."""
        N, T, _ = x.shape
        h = np.zeros((N, self.n_hidden), dtype=self.W_hh.dtype)
        x_proj = x @ self.W_xh.T + self.b_h
        for t in range(T):
            h = functions.activation(self.activation, h @ self.W_hh.T + x_proj[:, t])
        return h

    def predict(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Output at the last step for a batch of sequences (N, T, I) -> (N, O)."""
        return self.readout(self.final_state(x), mask)

    def data_loss(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
        """Mean over the batch of the sequence loss (mean over the loss steps), no L2 term."""
        a = self.forward(x, mask).a[:, self.loss_steps(x.shape[1])]
        per_step = self.sample_loss(a, y[:, None, :], mask[:, None, :])
        return float(np.mean(per_step))
