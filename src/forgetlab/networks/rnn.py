"""Elman recurrent network:  h_t = f(W_hh h_{t-1} + W_xh x_t + b_h),  y_t = g(W_hy h_t + b_y),  h_0 = 0.

A sample is a sequence x of shape (T, I); a batch is (N, T, I), the same for every member, or
(S, N, T, I), each member its own. The target and the output mask of a sample apply at every step
that carries loss: the last ``loss_last_steps`` steps (``loss_at="last"``; one by default) or every
step (``loss_at="all"``). The data loss of a sequence is the mean of the per-step losses over those
steps, so that it is on the scale of the MLP's per-sample loss whatever ``loss_at`` is:

    E = 1/|S| sum_{t in S} loss(y_t, target) + (lambda/2) (||W_xh||^2 + ||W_hh||^2 + ||W_hy||^2)

Every parameter has a leading member axis (``networks.base``): W_hh is (S, H, H), and so on; states
are (S, N, H). The network only runs forward; every gradient is derived in the learning algorithm
that uses it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from forgetlab.arrays import NUMPY, dtype_of
from forgetlab.constraints import AT_LEAST_1, Options, constrain, fail
from forgetlab.cost_model import SECONDS_PER_STEP, DataSize, NetworkCost
from forgetlab.networks import functions
from forgetlab.networks.base import NetworkConfig, Network, member_inits

RNN_ACTIVATIONS = ("tanh", "sigmoid")
LOSS_AT = ("last", "all")


@dataclass
class RNNConfig(NetworkConfig):
    name: str = "rnn"
    activation: str = field(default="tanh", metadata=constrain(Options(*RNN_ACTIVATIONS)))
    hidden_size: int = field(default=32, metadata=constrain(AT_LEAST_1))
    loss_at: str = field(default="last", metadata=constrain(Options(*LOSS_AT)))
    loss_last_steps: int = field(default=1, metadata=constrain(AT_LEAST_1))  # with loss_at=last: how many final steps

    def check(self, run) -> None:
        if self.loss_at != "last" and self.loss_last_steps != 1:
            fail("network.loss_last_steps", self.loss_last_steps,
                 f"1 with network.loss_at={self.loss_at!r} (it counts the final steps that carry loss with loss_at='last')")


@dataclass
class RNNForward:
    """h[:, :, t] is the state after step t - 1 (h[:, :, 0] = initial state), shape (S, N, T + 1, H);
    z[:, :, t] the pre-activation of step t (S, N, T, H); a[:, :, t] the output at step t (S, N, T, O)."""

    h: np.ndarray
    z: np.ndarray
    a: np.ndarray


class RNN(Network):
    name = "rnn"
    Config = RNNConfig
    reads = "sequence"
    size_key = "hidden_size"

    @classmethod
    def from_config(cls, cfg: RNNConfig, input_shape, n_outputs, rng, init_scale, *, xp, dtype) -> RNN:
        if len(input_shape) != 2:
            raise ValueError(f"the RNN reads sequences of shape (T, n_in); got samples of shape {input_shape}")
        return cls(input_shape[-1], cfg.hidden_size, n_outputs, activation=cfg.activation, output=cfg.output,
                   loss=cfg.loss, loss_at=cfg.loss_at, loss_last_steps=cfg.loss_last_steps, init_scale=init_scale,
                   rng=rng, dtype=dtype, xp=xp)

    @classmethod
    def cost(cls, cfg: RNNConfig, data: DataSize) -> NetworkCost:
        H, I, O, T, N = int(cfg.hidden_size), data.n_inputs, data.n_outputs, data.steps, data.eval_samples
        return NetworkCost(
            params=H * I + H * H + H + O * H + O,
            forward_ops=2 * T * (H * (H + I) + O * H),  # outputs at every step: an upper bound
            memory={"the evaluation's forward pass": N * (T + 1) * H * 2 + N * T * O},
            seconds_per_sample=T * SECONDS_PER_STEP,
        )

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        activation: str = "tanh",
        output: str = "softmax",
        loss: str = "cross_entropy",
        loss_at: str = "last",
        loss_last_steps: int = 1,
        init_scale: float | Sequence[float] = 1.0,
        rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
        dtype: type = np.float64,
        xp=None,
    ) -> None:
        """Weights ~ N(0, init_scale^2 / fan_in) (fan_in of W_hh is H), biases 0. One member per
        generator in ``rng`` (a single generator: one member), each drawing W_xh, W_hh, W_hy in this
        order with its own ``init_scale`` (one for all, or one per member)."""
        inits = member_inits(rng, init_scale)
        self.activation, self.output, self.loss, self.loss_at = activation, output, loss, loss_at
        self.loss_last_steps = loss_last_steps
        self.xp, self.n_members = NUMPY if xp is None else xp, len(inits)
        xp = self.xp

        def init(shape, fan_in):
            return [(scale / np.sqrt(fan_in) * r.standard_normal(shape)).astype(dtype) for r, scale in inits]

        drawn = [init(shape, fan_in) for shape, fan_in in
                 (((n_hidden, n_in), n_in), ((n_hidden, n_hidden), n_hidden), ((n_out, n_hidden), n_hidden))]
        W_xh, W_hh, W_hy = (xp.asarray(np.stack(members)) for members in drawn)
        S = self.n_members
        self.W_xh, self.W_hh, self.W_hy = W_xh, W_hh, W_hy
        self.b_h = xp.zeros((S, n_hidden), dtype=dtype_of(xp, dtype))
        self.b_y = xp.zeros((S, n_out), dtype=dtype_of(xp, dtype))

    @property
    def n_inputs(self) -> int:
        return self.W_xh.shape[-1]

    @property
    def n_hidden(self) -> int:
        return self.W_hh.shape[-1]

    @property
    def n_outputs(self) -> int:
        return self.W_hy.shape[-2]

    @cached_property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name; the arrays are the live ones, updated in place (never rebound, so the
        dict is built once)."""
        return {"W_xh": self.W_xh, "W_hh": self.W_hh, "b_h": self.b_h, "W_hy": self.W_hy, "b_y": self.b_y}

    def members(self, selected: slice) -> RNN:
        view = copy.copy(self)
        view.__dict__.pop("params", None)  # the cached dict of the whole ensemble
        for name in ("W_xh", "W_hh", "b_h", "W_hy", "b_y"):
            setattr(view, name, getattr(self, name)[selected])
        view.n_members = view.W_hh.shape[0]
        return view

    @property
    def weight_names(self) -> list[str]:
        """Parameters that carry the L2 penalty (weights, not biases)."""
        return ["W_xh", "W_hh", "W_hy"]

    def loss_steps(self, T: int) -> np.ndarray:
        """Steps that carry loss in a sequence of length T: the last ``loss_last_steps`` (all of
        them in a shorter sequence), or every step."""
        return np.arange(max(T - self.loss_last_steps, 0), T) if self.loss_at == "last" else np.arange(T)

    def loss_step_index(self, T: int):
        """``loss_steps(T)`` as an index array of the network's namespace: arrays on a device are
        indexed by arrays on that device."""
        return self.xp.asarray(self.loss_steps(T))

    def step(self, h_prev: np.ndarray, x_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z_t, h_t) (S, N, H) for states h_prev (S, N, H) and inputs x_t (S, N, I) or (N, I)."""
        xp = self.xp
        z = xp.matmul(h_prev, self.W_hh.mT) + xp.matmul(x_t, self.W_xh.mT) + self.b_h[:, None, :]
        return z, functions.activation(self.activation, z)

    def readout(self, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """y = g(W_hy h + b_y) over the last axis, for states h (S, N, H) or (S, N, T, H)."""
        lift = (slice(None),) + (None,) * (h.ndim - 3)  # the member axis, then one axis per axis of h past (S, N)
        z = self.xp.matmul(h, self.W_hy.mT[lift]) + self.b_y[lift + (None,)]
        return functions.output(self.output, z, mask)

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """W_xh x_t + b_h of every step at once, for x (N, T, I) or (S, N, T, I): (S, N, T, H); one
        (T, I) @ (I, H) product per member and sequence instead of T."""
        return self.xp.matmul(x, self.W_xh.mT[:, None]) + self.b_h[:, None, None, :]

    def forward(self, x: np.ndarray, mask: np.ndarray, h0: np.ndarray | None = None) -> RNNForward:
        """Run a batch of sequences x (N, T, I) or (S, N, T, I) from h0 (S, N, H) (zero when None);
        outputs at every step. ``mask`` (N, O) or (S, N, O)."""
        xp = self.xp
        N, T = x.shape[-3], x.shape[-2]
        S, H = self.n_members, self.n_hidden
        h = xp.empty((S, N, T + 1, H), dtype=self.W_hh.dtype)
        z = xp.empty((S, N, T, H), dtype=self.W_hh.dtype)
        # Step-major views, (T, S, N, H): a step is one integer index, the cheapest NumPy indexing.
        steps_first = (2, 0, 1, 3)
        h_t, z_t = xp.permute_dims(h, steps_first), xp.permute_dims(z, steps_first)
        x_proj_t = xp.permute_dims(self.input_projection(x), steps_first)
        h_t[0] = 0.0 if h0 is None else h0
        W_hh_T = self.W_hh.mT
        for t in range(T):
            z_t[t] = xp.matmul(h_t[t], W_hh_T) + x_proj_t[t]
            h_t[t + 1] = functions.activation(self.activation, z_t[t])
        a = self.readout(h[:, :, 1:], mask[..., None, :])
        return RNNForward(h=h, z=z, a=a)

    def final_state(self, x: np.ndarray) -> np.ndarray:
        """h_T (S, N, H) for a batch of sequences (N, T, I) or (S, N, T, I) started from h_0 = 0."""
        xp = self.xp
        N, T = x.shape[-3], x.shape[-2]
        h = xp.zeros((self.n_members, N, self.n_hidden), dtype=self.W_hh.dtype)
        x_proj_t = xp.permute_dims(self.input_projection(x), (2, 0, 1, 3))
        W_hh_T = self.W_hh.mT
        for t in range(T):
            h = functions.activation(self.activation, xp.matmul(h, W_hh_T) + x_proj_t[t])
        return h

    def predict(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Output at the last step for a batch of sequences (N, T, I) or (S, N, T, I) -> (S, N, O)."""
        return self.readout(self.final_state(x), mask)

    def data_loss(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean over the batch of the sequence loss (mean over the loss steps), no L2 term: (S,)."""
        a = self.xp.take(self.forward(x, mask).a, self.loss_step_index(x.shape[-2]), axis=-2)
        per_step = self.sample_loss(a, y[..., None, :], mask[..., None, :])
        return self.xp.mean(per_step, axis=(-2, -1))
