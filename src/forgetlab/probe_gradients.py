"""Per-sample gradients of the data loss of P probe samples at once, as rows of one (P, n_params)
matrix, so that every probe sample's first-order loss change under an update g is one product:
dl = -lr * G @ flatten(g, network)   (forgetlab.metrics.predicted_loss_change).

The loss of a probe sample is the one the networks train on, without the L2 term (the penalty is
not part of what a probe sample "knows"): for the MLP E_p = loss(a^(L)_p, y_p); for the RNN the mean
over the loss steps S of the sequence, E_p = 1/|S| sum_{t in S} loss(y_{p,t}, target_p).

Flat layout: the parameters of one member in the order of ``network.params``, each raveled in C
order. Every result has the network's leading member axis (``networks.base``): (S, P, n_params).

MLP, for all P samples at once (no loop over samples):
    delta^(L) = dE/dz^(L)                                   (networks.functions.output_delta)
    delta^(l) = (delta^(l+1) W^(l+1)) * f'(z^(l))
    dE_p/dW^(l) = delta^(l)_p (outer) a^(l-1)_p,  dE_p/db^(l) = delta^(l)_p
RNN, BPTT over the whole sequence from h_0 = 0, batched over P sequences (loop over time only):
    delta_y_t = dE_t/dz_y / |S| at t in S, 0 elsewhere
    dE/dz_t   = (W_hy^T delta_y_t + W_hh^T dE/dz_{t+1}) * f'(z_t)
    dE_p/dW_hh = sum_t dE/dz_t h_{t-1}^T, dE_p/dW_xh = sum_t dE/dz_t x_t^T, dE_p/db_h = sum_t dE/dz_t,
    dE_p/dW_hy = sum_t delta_y_t h_t^T,   dE_p/db_y  = sum_t delta_y_t
"""

from __future__ import annotations

import math

import numpy as np

from forgetlab.networks import functions
from forgetlab.networks.mlp import MLP
from forgetlab.networks.rnn import RNN


def parameter_count(network: MLP | RNN) -> int:
    """Parameters of one member."""
    return sum(math.prod(p.shape[1:]) for p in network.params.values())


def flatten(grads: dict[str, np.ndarray], network: MLP | RNN) -> np.ndarray:
    """One flat vector per member (S, n_params) of a gradient or update by parameter name (what an
    algorithm's ``gradient`` returns, or ``network.params`` itself), in the layout of the probe gradients."""
    missing = [name for name in network.params if name not in grads]
    if missing:
        raise KeyError(f"the gradient has no entry for the parameters {missing}; it needs one per network.params entry")
    xp, S = network.xp, network.n_members
    return xp.concat([xp.reshape(xp.asarray(grads[name]), (S, -1)) for name in network.params], axis=-1)


def _layout(network: MLP | RNN, P: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An empty (S, P, n_params) matrix and, by parameter name, its (S, P, *shape) view for that parameter."""
    xp, S = network.xp, network.n_members
    dtype = next(iter(network.params.values())).dtype
    out = xp.empty((S, P, parameter_count(network)), dtype=dtype)
    views, start = {}, 0
    for name, p in network.params.items():
        size = math.prod(p.shape[1:])
        views[name] = xp.reshape(out[..., start : start + size], (S, P, *p.shape[1:]), copy=False)
        start += size
    return out, views


def mlp_per_sample_gradients(net: MLP, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dE_p/dtheta for x (P, n_in), y (P, n_out), mask (P, n_out) (or each with a leading member
    axis) -> (S, P, n_params)."""
    xp = net.xp
    fwd = net.forward(x, mask)
    out, views = _layout(net, x.shape[-2])
    delta = functions.output_delta(net.output, net.loss, fwd.a[-1], y, mask)
    for l in range(len(net.W) - 1, -1, -1):
        views[f"W{l}"][...] = delta[..., :, None] * fwd.a[l][..., None, :]
        views[f"b{l}"][...] = delta
        if l > 0:
            delta = xp.matmul(delta, net.W[l]) * functions.activation_derivative(net.activation, fwd.z[l - 1], fwd.a[l])
    return out


def rnn_per_sequence_gradients(net: RNN, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dE_p/dtheta for sequences x (P, T, I), targets y (P, O), masks (P, O) (or each with a leading
    member axis) -> (S, P, n_params)."""
    xp = net.xp
    fwd = net.forward(x, mask)
    P, T = x.shape[-3], x.shape[-2]
    S, H = net.n_members, net.n_hidden
    steps = net.loss_step_index(T)
    h_steps = fwd.h[:, :, 1:][:, :, steps]  # (S, P, |S|, H) states read out at the loss steps
    a_steps, y_steps, mask_steps = fwd.a[:, :, steps], y[..., None, :], mask[..., None, :]
    delta_y = functions.output_delta(net.output, net.loss, a_steps, y_steps, mask_steps) / steps.shape[0]
    injected = xp.zeros((S, P, T, H), dtype=fwd.z.dtype)
    injected[:, :, steps] = xp.matmul(delta_y, net.W_hy[:, None])  # W_hy^T delta_y_t for every sequence and loss step
    f_prime = functions.activation_derivative(net.activation, fwd.z, fwd.h[:, :, 1:])
    delta_z = xp.empty_like(fwd.z)
    from_future = xp.zeros((S, P, H), dtype=fwd.z.dtype)
    for t in range(T - 1, -1, -1):
        delta_z[:, :, t] = (injected[:, :, t] + from_future) * f_prime[:, :, t]
        from_future = xp.matmul(delta_z[:, :, t], net.W_hh)
    out, views = _layout(net, P)
    # Sums over time as batched matmuls (BLAS); einsum does not use BLAS for them and is ~20x slower.
    delta_z_T = delta_z.mT
    views["W_xh"][...] = xp.matmul(delta_z_T, x)
    views["W_hh"][...] = xp.matmul(delta_z_T, fwd.h[:, :, :-1])
    views["b_h"][...] = xp.sum(delta_z, axis=-2)
    views["W_hy"][...] = xp.matmul(delta_y.mT, h_steps)
    views["b_y"][...] = xp.sum(delta_y, axis=-2)
    return out


def per_sample_gradients(network: MLP | RNN, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, P, n_params) data-loss gradients of P probe samples (vectors for the MLP, sequences for the
    RNN) for each member."""
    if isinstance(network, MLP):
        return mlp_per_sample_gradients(network, x, y, mask)
    if isinstance(network, RNN):
        return rnn_per_sequence_gradients(network, x, y, mask)
    raise TypeError(f"per-sample gradients exist for MLP and RNN networks; got {type(network).__name__}")


def per_sample_losses(
    network: MLP | RNN, x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(loss (S, P), correct (S, P) bool) of P probe samples from one forward pass: the data loss the
    gradients above differentiate, and whether the prediction (the largest unmasked output, at the
    last step for the RNN) is the target's class."""
    xp = network.xp
    if isinstance(network, RNN):
        steps = network.loss_steps(x.shape[-2])
        if len(steps) == 1:  # loss at the last step only: no state or output of the other steps is needed
            last = network.predict(x, mask)
            loss = functions.loss(network.output, network.loss, last, y, mask)
        else:
            fwd = network.forward(x, mask)
            a_steps = xp.take(fwd.a, network.loss_step_index(x.shape[-2]), axis=-2)
            per_step = functions.loss(network.output, network.loss, a_steps, y[..., None, :], mask[..., None, :])
            loss, last = xp.mean(per_step, axis=-1), fwd.a[:, :, -1]
    else:
        last = network.predict(x, mask)
        loss = functions.loss(network.output, network.loss, last, y, mask)
    correct = functions.masked_argmax(last, mask) == xp.argmax(y, axis=-1)
    return loss, correct
