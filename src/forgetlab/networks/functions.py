"""Activations, output functions and losses shared by every network.

The output layer is where the loss meets the network, so the error signal at the output,
delta = dE/dz for the output pre-activation z, lives here once for every (output, loss) pair.

``mask`` marks the output units that take part in the loss and in prediction (1) and those that
do not (0): task-incremental learning trains and predicts with only the current task's classes.
For a softmax output the masked units are removed from the normalisation, as if they did not exist.

Every function works on arrays of any leading shape (members, samples, steps) over the last axis,
in the array namespace of its arguments (``forgetlab.arrays``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from forgetlab.arrays import array_namespace

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu")
OUTPUTS = ("sigmoid", "softmax")
LOSSES = ("mse", "cross_entropy")

# Clipping keeps log() finite; it never binds in a gradient check (outputs stay far from 0 and 1).
_EPS = 1e-12


def sigmoid(z):
    if type(z) is np.ndarray:
        # scipy's ufunc: one call (this runs twice per sample update), no overflow warning for large
        # |z|, and full relative precision for very negative z, where 1 + tanh(z/2) cancels.
        return expit(z)
    xp = array_namespace(z)
    return 1.0 / (1.0 + xp.exp(-z))


def activation(name: str, z):
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return array_namespace(z).tanh(z)
    if name == "relu":
        return array_namespace(z).maximum(z, 0.0)
    raise ValueError(f"unknown activation {name!r}; allowed: {HIDDEN_ACTIVATIONS}")


def activation_derivative(name: str, z, a):
    """f'(z), written with a = f(z) where that is cheaper."""
    if name == "sigmoid":
        return a * (1.0 - a)
    if name == "tanh":
        return 1.0 - a * a
    if name == "relu":
        xp = array_namespace(z)
        return xp.astype(z > 0.0, z.dtype)
    raise ValueError(f"unknown activation {name!r}; allowed: {HIDDEN_ACTIVATIONS}")


def output(name: str, z, mask):
    """Output activation a = g(z) over the last axis; masked units output 0."""
    if name == "sigmoid":
        return sigmoid(z) * mask
    if name == "softmax":
        xp = array_namespace(z)
        z = xp.where(mask > 0, z, -xp.inf)
        e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)
    raise ValueError(f"unknown output {name!r}; allowed: {OUTPUTS}")


def loss(output_name: str, loss_name: str, a, y, mask):
    """Per-sample loss (summed over the last axis, masked units excluded); no L2 term.

    mse:            E = 1/2 sum_k (a_k - y_k)^2
    cross_entropy:  softmax output  E = -sum_k y_k log a_k
                    sigmoid output  E = -sum_k [y_k log a_k + (1 - y_k) log(1 - a_k)]
    """
    xp = array_namespace(a)
    if loss_name == "mse":
        return 0.5 * xp.sum(mask * (a - y) ** 2, axis=-1)
    if loss_name == "cross_entropy":
        log_a = xp.log(xp.maximum(a, _EPS))
        if output_name == "softmax":
            return -xp.sum(mask * y * log_a, axis=-1)
        log_1ma = xp.log(xp.maximum(1.0 - a, _EPS))
        return -xp.sum(mask * (y * log_a + (1.0 - y) * log_1ma), axis=-1)
    raise ValueError(f"unknown loss {loss_name!r}; allowed: {LOSSES}")


def output_delta(output_name: str, loss_name: str, a, y, mask):
    """delta = dE/dz at the output layer for the loss above.

    sigmoid + mse:            (a - y) * a (1 - a)
    sigmoid + cross_entropy:  a - y
    softmax + cross_entropy:  a - y            (targets sum to 1 over the unmasked units)
    softmax + mse:            J^T (a - y) with J = diag(a) - a a^T, i.e. a * ((a - y) - sum_k a_k (a_k - y_k))
    Masked units get delta 0.
    """
    err = mask * (a - y)
    if output_name == "sigmoid":
        return err * a * (1.0 - a) if loss_name == "mse" else err
    if output_name == "softmax":
        if loss_name == "cross_entropy":
            return err
        xp = array_namespace(a)
        return a * (err - xp.sum(a * err, axis=-1, keepdims=True))
    raise ValueError(f"unknown output {output_name!r}; allowed: {OUTPUTS}")


def masked_argmax(a, mask):
    """Predicted unit: the largest output among the unmasked units."""
    xp = array_namespace(a)
    return xp.argmax(xp.where(mask > 0, a, -xp.inf), axis=-1)
