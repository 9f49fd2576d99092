"""Per-sample gradients of the data loss of P probe samples at once, as rows of one (P, n_params)
matrix, so that every probe sample's first-order loss change under an update g is one product:
dl = -lr * G @ flatten(g, network)   (forgetlab.metrics.predicted_loss_change).

The loss of a probe sample is the one the networks train on, without the L2 term (the penalty is
not part of what a probe sample "knows"): for the MLP E_p = loss(a^(L)_p, y_p); for the RNN the mean
over the loss steps S of the sequence, E_p = 1/|S| sum_{t in S} loss(y_{p,t}, target_p).

Flat layout: the parameters in the order of ``network.params``, each raveled in C order.

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

import numpy as np

from forgetlab.networks import functions
from forgetlab.networks.mlp import MLP
from forgetlab.networks.rnn import RNN


def parameter_count(network: MLP | RNN) -> int:
    return sum(p.size for p in network.params.values())


def flatten(grads: dict[str, np.ndarray], network: MLP | RNN) -> np.ndarray:
    """One flat vector (n_params,) of a gradient or update by parameter name (what an algorithm's
    ``gradient`` returns, or ``network.params`` itself), in the layout of the probe gradients."""
    missing = [name for name in network.params if name not in grads]
    if missing:
        raise KeyError(f"the gradient has no entry for the parameters {missing}; it needs one per network.params entry")
    return np.concatenate([np.asarray(grads[name]).ravel() for name in network.params])


def _layout(network: MLP | RNN, P: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An empty (P, n_params) matrix and, by parameter name, its (P, *shape) view for that parameter."""
    dtype = next(iter(network.params.values())).dtype
    out = np.empty((P, parameter_count(network)), dtype=dtype)
    views, start = {}, 0
    for name, p in network.params.items():
        views[name] = out[:, start : start + p.size].reshape(P, *p.shape)
        start += p.size
    return out, views


def mlp_per_sample_gradients(net: MLP, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dE_p/dtheta for x (P, n_in), y (P, n_out), mask (P, n_out) -> (P, n_params)."""
    fwd = net.forward(x, mask)
    out, views = _layout(net, x.shape[0])
    delta = functions.output_delta(net.output, net.loss, fwd.a[-1], y, mask)
    for l in range(len(net.W) - 1, -1, -1):
        np.einsum("po,pi->poi", delta, fwd.a[l], out=views[f"W{l}"])
        views[f"b{l}"][...] = delta
        if l > 0:
            delta = (delta @ net.W[l]) * functions.activation_derivative(net.activation, fwd.z[l - 1], fwd.a[l])
    return out


def rnn_per_sequence_gradients(net: RNN, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dE_p/dtheta for sequences x (P, T, I), targets y (P, O), masks (P, O) -> (P, n_params)."""
    fwd = net.forward(x, mask)
    P, T, _ = x.shape
    steps = net.loss_steps(T)
    h_steps = fwd.h[:, 1:][:, steps]  # (P, |S|, H) states read out at the loss steps
    a_steps, y_steps, mask_steps = fwd.a[:, steps], y[:, None, :], mask[:, None, :]
    delta_y = functions.output_delta(net.output, net.loss, a_steps, y_steps, mask_steps) / len(steps)
    injected = np.zeros((P, T, net.n_hidden), dtype=fwd.z.dtype)
    injected[:, steps] = delta_y @ net.W_hy  # W_hy^T delta_y_t for every sequence and loss step
    f_prime = functions.activation_derivative(net.activation, fwd.z, fwd.h[:, 1:])
    delta_z = np.empty_like(fwd.z)
    from_future = np.zeros((P, net.n_hidden), dtype=fwd.z.dtype)
    for t in range(T - 1, -1, -1):
        delta_z[:, t] = (injected[:, t] + from_future) * f_prime[:, t]
        from_future = delta_z[:, t] @ net.W_hh
    out, views = _layout(net, P)
    # Sums over time as batched matmuls (BLAS); einsum does not use BLAS for them and is ~20x slower.
    delta_z_T = delta_z.transpose(0, 2, 1)
    np.matmul(delta_z_T, x, out=views["W_xh"])
    np.matmul(delta_z_T, fwd.h[:, :-1], out=views["W_hh"])
    views["b_h"][...] = delta_z.sum(axis=1)
    np.matmul(delta_y.transpose(0, 2, 1), h_steps, out=views["W_hy"])
    views["b_y"][...] = delta_y.sum(axis=1)
    return out


def per_sample_gradients(network: MLP | RNN, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(P, n_params) data-loss gradients of P probe samples (vectors for the MLP, sequences for the RNN)."""
    if isinstance(network, MLP):
        return mlp_per_sample_gradients(network, x, y, mask)
    if isinstance(network, RNN):
        return rnn_per_sequence_gradients(network, x, y, mask)
    raise TypeError(f"per-sample gradients exist for MLP and RNN networks; got {type(network).__name__}")


def per_sample_losses(
    network: MLP | RNN, x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(loss (P,), correct (P,) bool) of P probe samples from one forward pass: the data loss the
    gradients above differentiate, and whether the prediction (the largest unmasked output, at the
    last step for the RNN) is the target's class."""
    if isinstance(network, RNN):
        steps = network.loss_steps(x.shape[1])
        if len(steps) == 1:  # loss at the last step only: no state or output of the other steps is needed
            last = network.predict(x, mask)
            loss = functions.loss(network.output, network.loss, last, y, mask)
        else:
            fwd = network.forward(x, mask)
            per_step = functions.loss(network.output, network.loss, fwd.a[:, steps], y[:, None, :], mask[:, None, :])
            loss, last = per_step.mean(axis=1), fwd.a[:, -1]
    else:
        last = network.predict(x, mask)
        loss = functions.loss(network.output, network.loss, last, y, mask)
    correct = functions.masked_argmax(last, mask) == np.argmax(y, axis=-1)
    return loss, correct
