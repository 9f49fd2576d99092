"""Elman recurrent network:  h_t = f(W_hh h_{t-1} + W_xh x_t + b_h),  y_t = g(W_hy h_t + b_y),  h_0 = 0.

A sample is a sequence x of shape (T, I); a batch is (N, T, I), the same for every member, or
(S, N, T, I), each member its own. The target and the output mask of a sample apply at every step
that carries loss: the last ``loss_last_steps`` steps (``loss_at="last"``; one by default) or every
step (``loss_at="all"``). The data loss of a sequence is the mean of the per-step losses over those
steps, so that it is on the scale of the MLP's per-sample loss whatever ``loss_at`` is:

    E = 1/|S| sum_{t in S} loss(y_t, target) + (lambda/2) (||W_xh||^2 + ||W_hh||^2 + ||W_hy||^2)

Every parameter has a leading member axis (``networks.base``): W_hh is (S, H, H), and so on; states
are (S, N, H).

Backward pass (``backward``): BPTT through a stretch of L steps t = 1..L entered from the state h_0,
which is held fixed (nothing flows back past it: a whole sequence from h_0 = 0, or a stretch of
truncated BPTT), for every sequence of the batch at once, from the error injected at the output of
each step, delta_y_t = dE/dz_y at step t (0 where no loss; ``data_gradient``: dE_t/dz_y / |S| at t in S):

    dE/dh_t   = W_hy^T delta_y_t + W_hh^T dE/dz_{t+1}         (dE/dz_{L+1} = 0)
    dE/dz_t   = dE/dh_t * f'(z_t)
    dE/dW_hh  = sum_t dE/dz_t h_{t-1}^T
    dE/dW_xh  = sum_t dE/dz_t x_t^T
    dE/db_h   = sum_t dE/dz_t
    dE/dW_hy  = sum_t delta_y_t h_t^T
    dE/db_y   = sum_t delta_y_t

The sums run over the steps of each sequence (``per_sample``), or over the steps of every sequence.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from forgetlab.arrays import NUMPY, dtype_of
from forgetlab.constraints import AT_LEAST_1, POSITIVE, Options, constrain, fail
from forgetlab.cost_model import SECONDS_PER_STEP, DataSize, NetworkCost
from forgetlab.networks import functions
from forgetlab.networks.base import Network, NetworkConfig, member_inits, put

RNN_ACTIVATIONS = ("tanh", "sigmoid")
LOSS_AT = ("last", "all")
# How W_hh starts (``recurrent_weights``): gaussian N(0, 1/H) (spectral radius about 1), orthogonal
# (every singular value equal: no direction of the state grows or decays faster than another in the
# first steps; Saxe et al. 2014) or the identity (the state carried on unchanged; Le, Jaitly & Hinton
# 2015), each scaled by init_scale * recurrent_scale.
RECURRENT_INITS = ("gaussian", "orthogonal", "identity")


@dataclass
class RNNConfig(NetworkConfig):
    name: str = "rnn"
    activation: str = field(default="tanh", metadata=constrain(Options(*RNN_ACTIVATIONS)))
    hidden_size: int = field(default=32, metadata=constrain(AT_LEAST_1))
    loss_at: str = field(default="last", metadata=constrain(Options(*LOSS_AT)))
    loss_last_steps: int = field(default=1, metadata=constrain(AT_LEAST_1))  # with loss_at=last: how many final steps
    recurrent_init: str = field(default="gaussian", metadata=constrain(Options(*RECURRENT_INITS)))
    recurrent_scale: float = field(default=1.0, metadata=constrain(POSITIVE))  # the gain of W_hh's initial values

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


def recurrent_weights(kind: str, drawn: np.ndarray, init_scale: float, recurrent_scale: float) -> np.ndarray:
    """W_hh (H, H) from its Gaussian draw ``drawn`` = init_scale / sqrt(H) * N(0, 1):

        gaussian:    W_hh = recurrent_scale * drawn            (spectral radius about init_scale * recurrent_scale)
        orthogonal:  W_hh = init_scale * recurrent_scale * Q,  Q R = drawn with diag(R) > 0 (Q Haar-distributed,
                     Mezzadri 2007), so W_hh^T W_hh = (init_scale * recurrent_scale)^2 I
        identity:    W_hh = init_scale * recurrent_scale * I
    """
    if kind == "gaussian":
        return recurrent_scale * drawn  # x * 1.0 is x, bit for bit
    gain = init_scale * recurrent_scale
    if kind == "orthogonal":
        Q, R = np.linalg.qr(drawn)
        return gain * (Q * np.where(np.diag(R) < 0, -1.0, 1.0))
    if kind == "identity":
        return gain * np.eye(len(drawn))
    raise ValueError(f"recurrent_init must be one of {RECURRENT_INITS}; got {kind!r}")


def _steps_of_every_sequence(xp, a: np.ndarray) -> np.ndarray:
    """(..., N, L, k) as (..., N L, k). One sequence, as the recurrent learners have, is an index (a
    view with a lone network's layout, at a tenth of reshape's Python cost, paid on every update)."""
    return a[..., 0, :, :] if a.shape[-3] == 1 else xp.reshape(a, (*a.shape[:-3], -1, a.shape[-1]))


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
                   recurrent_init=cfg.recurrent_init, recurrent_scale=cfg.recurrent_scale, rng=rng, dtype=dtype, xp=xp)

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
        recurrent_init: str = "gaussian",
        recurrent_scale: float = 1.0,
        rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
        dtype: type = np.float64,
        xp=None,
    ) -> None:
        """Weights ~ N(0, init_scale^2 / fan_in) (fan_in of W_hh is H), biases 0, W_hh then made what
        ``recurrent_init`` says (``recurrent_weights``). One member per generator in ``rng`` (a single
        generator: one member), each drawing W_xh, W_hh, W_hy in this order with its own ``init_scale``
        (one for all, or one per member): every recurrent init draws the same numbers, so a seed's
        W_xh and W_hy do not depend on it."""
        inits = member_inits(rng, init_scale)
        self.activation, self.output, self.loss, self.loss_at = activation, output, loss, loss_at
        self.loss_last_steps = loss_last_steps
        self.xp, self.n_members = NUMPY if xp is None else xp, len(inits)
        xp = self.xp

        def init(shape, fan_in):
            return [scale / np.sqrt(fan_in) * r.standard_normal(shape) for r, scale in inits]

        drawn = [init(shape, fan_in) for shape, fan_in in
                 (((n_hidden, n_in), n_in), ((n_hidden, n_hidden), n_hidden), ((n_out, n_hidden), n_hidden))]
        drawn[1] = [recurrent_weights(recurrent_init, W, scale, recurrent_scale) for W, (_, scale) in zip(drawn[1], inits)]
        W_xh, W_hh, W_hy = (xp.asarray(np.stack(members).astype(dtype)) for members in drawn)
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

    def backward(self, x: np.ndarray, h: np.ndarray, z: np.ndarray, delta_y: np.ndarray, per_sample: bool = False,
                 out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """dE/dtheta by parameter name by BPTT over a stretch of L steps of N sequences: x (N, L, I) or
        (S, N, L, I) its inputs; h (S, N, L + 1, H) its states, h[..., 0, :] the one entering it, held
        fixed; z (S, N, L, H) its pre-activations; delta_y (S, N, L, O) = dE/dz_y at each step.
        Gradients (S, N, *shape), one per sequence (``per_sample``), or (S, *shape), their sum; written
        into ``out`` if given."""
        xp = self.xp
        S, N, L, H = z.shape
        f_prime = functions.activation_derivative(self.activation, z, h[..., 1:, :])
        injected = xp.matmul(delta_y, self.W_hy[:, None])  # W_hy^T delta_y_t of every sequence and step at once
        delta_z = xp.empty_like(z)
        from_future = xp.zeros((S, N, H), dtype=z.dtype)  # W_hh^T dE/dz_{t+1}
        # Step-major views (L, S, N, H): a step is one integer index, and each member multiplies its (N, H)
        # rows by W_hh, as a lone network does (one sequence: a vector-matrix product).
        steps_first = (2, 0, 1, 3)
        injected_t, f_prime_t, delta_z_t = (xp.permute_dims(a, steps_first) for a in (injected, f_prime, delta_z))
        for t in range(L - 1, -1, -1):
            delta_z_t[t] = (injected_t[t] + from_future) * f_prime_t[t]
            from_future = xp.matmul(delta_z_t[t], self.W_hh)
        h_prev, h_now = h[..., :-1, :], h[..., 1:, :]
        if not per_sample:  # the sums run over the steps of every sequence: one axis of N L steps
            delta_z, delta_y, h_prev, h_now, x = (_steps_of_every_sequence(xp, a)
                                                  for a in (delta_z, delta_y, h_prev, h_now, x))
        # Sums over steps as batched matmuls (BLAS); einsum does not use BLAS for them and is ~20x slower.
        delta_z_T = delta_z.mT
        grads: dict[str, np.ndarray] = {}
        put(grads, "W_xh", xp.matmul(delta_z_T, x), out)
        put(grads, "W_hh", xp.matmul(delta_z_T, h_prev), out)
        put(grads, "b_h", xp.sum(delta_z, axis=-2), out)
        put(grads, "W_hy", xp.matmul(delta_y.mT, h_now), out)
        put(grads, "b_y", xp.sum(delta_y, axis=-2), out)
        return grads

    def data_gradient(self, x, y, mask, per_sample=False, out=None):
        """Sequences x (N, T, I) or (S, N, T, I) from h_0 = 0; y and mask (N, O) or (S, N, O).
        See ``Network``."""
        xp = self.xp
        N, T = x.shape[-3], x.shape[-2]
        fwd = self.forward(x, mask)
        steps = self.loss_step_index(T)
        # take, not a[..., steps, :]: indexing lays the steps out first in memory, and the mean over them
        # would then add them in another order than a lone network does.
        a_steps = xp.take(fwd.a, steps, axis=-2)  # (S, N, |S|, O)
        y_steps, mask_steps = y[..., None, :], mask[..., None, :]
        loss = xp.mean(self.sample_loss(a_steps, y_steps, mask_steps), axis=-1)  # (S, N)
        delta_y = xp.zeros_like(fwd.a)
        per_step = steps.shape[0] * (1 if per_sample else N)  # the mean over the loss steps (and the batch)
        delta_y[..., steps, :] = self.output_delta(a_steps, y_steps, mask_steps) / per_step
        grads = self.backward(x, fwd.h, fwd.z, delta_y, per_sample, out)
        return (loss, grads) if per_sample else (xp.mean(loss, axis=-1), grads)

    def per_sample_losses(self, x, y, mask):
        """Sequences x (N, T, I) or (S, N, T, I); y and mask (N, O) or (S, N, O); the prediction is the
        output at the last step. See ``Network``."""
        xp = self.xp
        T = x.shape[-2]
        if self.loss_steps(T).shape[0] == 1:  # the last step only: no output of the other steps is needed
            last = self.predict(x, mask)
            loss = self.sample_loss(last, y, mask)
        else:
            fwd = self.forward(x, mask)
            a_steps = xp.take(fwd.a, self.loss_step_index(T), axis=-2)
            loss = xp.mean(self.sample_loss(a_steps, y[..., None, :], mask[..., None, :]), axis=-1)
            last = fwd.a[:, :, -1]
        return loss, self.predicted_unit(last, mask) == xp.argmax(y, axis=-1)
