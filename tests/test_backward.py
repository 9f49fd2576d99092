"""Each network's one backward pass (``MLP.backward``, ``RNN.backward``: what the learning algorithms
and the per-sample gradients call) against float64 central finite differences, for every hidden
activation and every (output, loss) pair, per sample and summed over the batch, on two members; the
RNN's over a stretch entered from a non-zero state held fixed, with the loss at the last step, the
last 3 steps or every step. Then ``data_gradient``: the summed gradient is the batch mean."""

import itertools

import numpy as np
import pytest

from forgetlab.gradcheck import EPS, relative_error
from forgetlab.networks import functions
from forgetlab.networks.mlp import MLP
from forgetlab.networks.rnn import RNN, RNN_ACTIVATIONS

TOL = 1e-6
S, O, T = 2, 5, 4
OUTPUT_LOSSES = list(itertools.product(functions.OUTPUTS, functions.LOSSES))  # every pair output_delta defines
LOSS_STEPS = [("last", 1), ("last", 3), ("all", 1)]  # (loss_at, loss_last_steps)
MODES = pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "summed"])


def targets(rng, batch):
    y = np.zeros((batch, O))
    y[np.arange(batch), rng.integers(0, 3, size=batch)] = 1.0
    mask = np.ones((batch, O))
    mask[:, 4:] = 0.0  # a unit that takes no part
    return y, mask


def finite_difference_per_sample(losses, params, eps=EPS):
    """d losses()[s, b] / d theta of every member s and sample b by central differences, by name
    (S, B, *shape); ``losses()`` (S, B) reads the live ``params``, a member's only its own."""
    grads = {}
    for name, p in params.items():
        g = None
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            plus = losses()[i[0]]
            p[i] = old - eps
            minus = losses()[i[0]]
            p[i] = old
            if g is None:
                g = np.empty((p.shape[0], len(plus), *p.shape[1:]))
            g[(i[0], slice(None), *i[1:])] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads


def assert_matches(analytic, numeric, per_sample):
    for name, g in numeric.items():
        expected = g if per_sample else g.sum(axis=1)
        assert analytic[name].shape == expected.shape, name
        assert relative_error(analytic[name], expected) < TOL, (name, relative_error(analytic[name], expected))


def make_mlp(activation, output, loss, batch, seed=0):
    rng = np.random.default_rng(seed)
    net = MLP([3, 4, O], activation, output, loss, init_scale=1.5, rng=rng.spawn(S))
    for b in net.b:
        b[:] = rng.normal(scale=0.5, size=b.shape)  # nonzero biases exercise dE/db fully
    x = rng.normal(size=(batch, 3))  # the same samples for every member
    return net, x, *targets(rng, batch)


@MODES
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES)
@pytest.mark.parametrize("activation", functions.HIDDEN_ACTIVATIONS)
def test_mlp_backward_matches_finite_differences(activation, output, loss, batch, per_sample):
    net, x, y, mask = make_mlp(activation, output, loss, batch)
    fwd = net.forward(x, mask)
    analytic = net.backward(fwd, net.output_delta(fwd.a[-1], y, mask), per_sample)
    numeric = finite_difference_per_sample(lambda: net.sample_loss(net.predict(x, mask), y, mask), net.params)
    assert_matches(analytic, numeric, per_sample)


def make_rnn(activation, output, loss, loss_at, loss_last_steps, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    net = RNN(2, 3, O, activation, output, loss, loss_at, loss_last_steps, init_scale=1.5, rng=rng.spawn(S))
    net.b_h[:] = rng.normal(scale=0.5, size=net.b_h.shape)
    net.b_y[:] = rng.normal(scale=0.5, size=net.b_y.shape)
    x = rng.normal(size=(S, batch, T, 2))  # each member its own sequences
    return net, x, *targets(rng, batch), rng


@MODES
@pytest.mark.parametrize("loss_at,loss_last_steps", LOSS_STEPS)
@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES)
@pytest.mark.parametrize("activation", RNN_ACTIVATIONS)
def test_rnn_backward_from_an_entering_state_matches_finite_differences(activation, output, loss, loss_at,
                                                                        loss_last_steps, per_sample):
    """A stretch of T steps entered from h_0 != 0 held fixed (as truncated BPTT's are): each
    sequence's loss is the mean over its loss steps, delta_y_t = dE_t/dz_y / |S| there."""
    net, x, y, mask, rng = make_rnn(activation, output, loss, loss_at, loss_last_steps)
    h_0 = rng.normal(scale=0.5, size=(S, x.shape[1], 3))
    steps = net.loss_steps(T)
    y_t, mask_t = y[:, None, :], mask[:, None, :]

    def losses():
        a = net.forward(x, mask, h0=h_0).a[:, :, steps]
        return np.mean(net.sample_loss(a, y_t, mask_t), axis=-1)

    fwd = net.forward(x, mask, h0=h_0)
    delta_y = np.zeros_like(fwd.a)
    delta_y[:, :, steps] = net.output_delta(fwd.a[:, :, steps], y_t, mask_t) / len(steps)
    analytic = net.backward(x, fwd.h, fwd.z, delta_y, per_sample)
    assert_matches(analytic, finite_difference_per_sample(losses, net.params), per_sample)


@pytest.mark.parametrize("network", ["mlp", "rnn-last", "rnn-all"])
def test_data_gradient_summed_is_the_batch_mean_of_the_per_sample_gradients(network):
    if network == "mlp":
        net, x, y, mask = make_mlp("tanh", "softmax", "mse", batch=3)
    else:
        net, x, y, mask, _ = make_rnn("tanh", "sigmoid", "cross_entropy", network[4:], 3)
        x = x[0]  # the same sequences for every member
    loss_p, per_sample = net.data_gradient(x, y, mask, per_sample=True)
    loss, mean = net.data_gradient(x, y, mask)
    np.testing.assert_allclose(loss, net.data_loss(x, y, mask), rtol=1e-12)
    np.testing.assert_allclose(loss_p, net.per_sample_losses(x, y, mask)[0], rtol=1e-12)
    for name, p in net.params.items():
        assert per_sample[name].shape == (S, 3, *p.shape[1:]) and mean[name].shape == p.shape
        np.testing.assert_allclose(mean[name], per_sample[name].mean(axis=1), rtol=1e-12, atol=1e-15)
