"""A network's per-sample gradients (``Network.per_sample_gradients``, what the update probe's
interference diagnostics use) against float64 central finite differences of each sample's data
loss, their flat layout, and the first-order prediction of a small SGD step."""

import itertools

import numpy as np
import pytest

from forgetlab import metrics as M
from forgetlab.gradcheck import finite_difference, relative_error
from forgetlab.networks import functions
from forgetlab.networks.mlp import MLP
from forgetlab.networks.rnn import LOSS_AT, RNN, RNN_ACTIVATIONS

TOL = 1e-6
P, O = 4, 5


def targets(rng, n, masked=True):
    y = np.zeros((n, O))
    y[np.arange(n), rng.integers(0, 3, size=n)] = 1.0
    mask = np.ones((n, O))
    if masked:
        mask[:, 3:] = 0.0  # task-IL: units 3, 4 take no part
    return y, mask


def make_mlp(activation, output, loss, seed=0, members=1):
    rng = np.random.default_rng(seed)
    net = MLP([3, 4, 3, O], activation, output, loss, init_scale=1.5, rng=rng if members == 1 else rng.spawn(members))
    for b in net.b:
        b[:] = rng.normal(scale=0.5, size=b.shape)  # nonzero biases exercise dE/db fully
    x = rng.normal(size=(P, 3))
    return net, x, *targets(rng, P)


def make_rnn(activation, output, loss, loss_at, seed=0, T=4, members=1):
    rng = np.random.default_rng(seed)
    net = RNN(2, 3, O, activation, output, loss, loss_at, init_scale=1.5, rng=rng if members == 1 else rng.spawn(members))
    net.b_h[:] = rng.normal(scale=0.5, size=net.b_h.shape)
    net.b_y[:] = rng.normal(scale=0.5, size=net.b_y.shape)
    x = rng.normal(size=(P, T, 2))
    return net, x, *targets(rng, P)


def assert_rows_match_finite_differences(net, G, x, y, mask):
    S = net.n_members
    assert G.shape == (S, P, sum(p[0].size for p in net.params.values()))
    for p in range(P):
        sample = (x[p : p + 1], y[p : p + 1], mask[p : p + 1])
        numeric = net.flatten(finite_difference(lambda: net.data_loss(*sample), net.params))
        for s in range(S):
            assert relative_error(G[s, p], numeric[s]) <= TOL, (s, p, relative_error(G[s, p], numeric[s]))


@pytest.mark.parametrize(
    "activation,output,loss", list(itertools.product(functions.HIDDEN_ACTIVATIONS, functions.OUTPUTS, functions.LOSSES))
)
def test_mlp_per_sample_gradients_match_finite_differences(activation, output, loss):
    net, x, y, mask = make_mlp(activation, output, loss)
    assert_rows_match_finite_differences(net, net.per_sample_gradients(x, y, mask), x, y, mask)


RNN_COMBOS = list(itertools.product(RNN_ACTIVATIONS, functions.OUTPUTS, functions.LOSSES, LOSS_AT))


@pytest.mark.parametrize("activation,output,loss,loss_at", RNN_COMBOS)
def test_rnn_per_sequence_gradients_match_finite_differences(activation, output, loss, loss_at):
    net, x, y, mask = make_rnn(activation, output, loss, loss_at)
    assert_rows_match_finite_differences(net, net.per_sample_gradients(x, y, mask), x, y, mask)


@pytest.mark.parametrize("network", ["mlp", "rnn"])
def test_the_gradients_of_several_members_match_finite_differences(network):
    net, x, y, mask = (make_mlp("tanh", "softmax", "mse", members=3) if network == "mlp"
                       else make_rnn("tanh", "softmax", "mse", "all", members=3))
    assert_rows_match_finite_differences(net, net.per_sample_gradients(x, y, mask), x, y, mask)


def test_batched_rows_equal_one_sample_at_a_time_and_the_backward_pass_flattened():
    for net, x, y, mask in (make_mlp("relu", "softmax", "cross_entropy"), make_rnn("tanh", "sigmoid", "mse", "all")):
        G = net.per_sample_gradients(x, y, mask)
        for p in range(P):
            np.testing.assert_allclose(G[:, p], net.per_sample_gradients(x[p : p + 1], y[p : p + 1], mask[p : p + 1])[:, 0])
        # written into the flat matrix in place (out=) or returned by name: the same numbers
        np.testing.assert_array_equal(G, net.flatten(net.data_gradient(x, y, mask, per_sample=True)[1]))


def test_flatten_follows_the_order_of_network_params():
    net, *_ = make_rnn("tanh", "softmax", "cross_entropy", "last")
    flat = net.flatten(net.params)
    start = 0
    for name, p in net.params.items():
        np.testing.assert_array_equal(flat[:, start : start + p[0].size], p.reshape(len(p), -1))
        start += p[0].size
    assert (1, start) == flat.shape == (1, net.parameter_count)
    with pytest.raises(KeyError, match="W_hh"):
        net.flatten({k: v for k, v in net.params.items() if k != "W_hh"})


def test_per_sample_losses_are_the_networks_data_loss():
    for net, x, y, mask in (make_mlp("tanh", "sigmoid", "cross_entropy"), make_rnn("sigmoid", "softmax", "mse", "all"),
                            make_rnn("tanh", "sigmoid", "mse", "last")):
        loss, correct = net.per_sample_losses(x, y, mask)
        assert loss.shape == (1, P) and correct.dtype == bool
        assert loss.mean(axis=-1) == pytest.approx(net.data_loss(x, y, mask))
        prediction = functions.masked_argmax(net.predict(x, mask), mask)
        np.testing.assert_array_equal(correct, prediction == y.argmax(axis=1))


@pytest.mark.parametrize("network", ["mlp", "rnn"])
def test_first_order_prediction_of_a_small_sgd_step(network):
    """A mini-batch SGD step theta -= lr g with small lr changes each probe sample's loss by
    -lr <grad_p, g> up to O(lr^2): correlation ~ 1 and calibration slope ~ 1 over 30 probe samples."""
    rng = np.random.default_rng(3)
    if network == "mlp":
        net = MLP([6, 8, O], "sigmoid", "softmax", "cross_entropy", init_scale=1.5, rng=rng)
        x = rng.normal(size=(32, 6))
    else:
        net = RNN(2, 6, O, "tanh", "sigmoid", "mse", "all", init_scale=1.5, rng=rng)
        x = rng.normal(size=(32, 5, 2))
    y, mask = targets(rng, 32, masked=False)
    probe, batch = slice(0, 30), slice(30, 32)
    (G,) = net.per_sample_gradients(x[probe], y[probe], mask[probe])
    g = net.per_sample_gradients(x[batch], y[batch], mask[batch])[0].mean(axis=0)  # the mini-batch gradient
    lr = 1e-4
    before = net.per_sample_losses(x[probe], y[probe], mask[probe])[0][0]
    start = 0
    for p in net.params.values():
        p -= lr * g[start : start + p[0].size].reshape(p.shape)
        start += p[0].size
    measured = net.per_sample_losses(x[probe], y[probe], mask[probe])[0][0] - before
    fit = M.first_order_agreement(M.predicted_loss_change(G, g, lr), measured)
    assert fit["n"] == 30
    assert fit["correlation"] > 0.9999
    assert fit["slope"] == pytest.approx(1.0, abs=1e-3)
