import itertools

import numpy as np
import pytest

from forgetlab.algorithms.backprop import Backprop
from forgetlab.networks import functions
from forgetlab.networks.mlp import MLP
from forgetlab.gradcheck import finite_difference, relative_error

COMBOS = list(itertools.product(functions.HIDDEN_ACTIVATIONS, functions.OUTPUTS, functions.LOSSES))


def make_problem(activation, output, loss, batch, masked, seed=0):
    rng = np.random.default_rng(seed)
    net = MLP([5, 4, 3, 6], activation, output, loss, init_scale=1.5, rng=rng)
    for b in net.b:
        b[:] = rng.normal(scale=0.5, size=b.shape)  # nonzero biases exercise dE/db fully
    x = rng.normal(size=(batch, 5))
    labels = rng.integers(0, 3, size=batch)
    y = np.zeros((batch, 6))
    y[np.arange(batch), labels] = 1.0
    mask = np.ones((batch, 6))
    if masked:
        mask[:, 3:] = 0.0  # task-IL: units 3..5 take no part
    return net, x, y, mask


@pytest.mark.parametrize("activation,output,loss", COMBOS)
@pytest.mark.parametrize("batch,masked", [(1, False), (4, True)])
def test_backprop_gradient_matches_finite_differences(activation, output, loss, batch, masked):
    net, x, y, mask = make_problem(activation, output, loss, batch, masked)
    algo = Backprop(net, lr=0.1, l2=0.03)

    def objective():
        a = net.predict(x, mask)
        return float(np.mean(functions.loss(output, loss, a, y, mask))) + algo.l2_term()

    _, analytic = algo.gradient(x, y, mask)
    numeric = finite_difference(objective, net.params)
    for name in net.params:
        assert relative_error(analytic[name], numeric[name]) < 1e-6, name


def test_l2_applies_to_weights_not_biases():
    net, x, y, mask = make_problem("tanh", "sigmoid", "mse", 1, False)
    with_l2 = Backprop(net, lr=0.1, l2=0.5).gradient(x, y, mask)[1]
    without = Backprop(net, lr=0.1, l2=0.0).gradient(x, y, mask)[1]
    np.testing.assert_allclose(with_l2["W0"] - without["W0"], 0.5 * net.W[0])
    np.testing.assert_allclose(with_l2["b0"], without["b0"])


def test_learn_is_one_sgd_step_and_lowers_the_loss():
    net, x, y, mask = make_problem("sigmoid", "sigmoid", "mse", 1, False)
    algo = Backprop(net, lr=0.05)
    before = {k: v.copy() for k, v in net.params.items()}
    loss0, grads = algo.gradient(x, y, mask)
    algo.learn(x, y, mask)
    for name, p in net.params.items():
        np.testing.assert_allclose(p, before[name] - 0.05 * grads[name])
    assert algo.updates == 1
    assert algo.gradient(x, y, mask)[0] < loss0


def test_masked_softmax_ignores_masked_units():
    z = np.array([[1.0, 2.0, 50.0]])
    mask = np.array([[1.0, 1.0, 0.0]])
    a = functions.output("softmax", z, mask)
    np.testing.assert_allclose(a.sum(), 1.0)
    assert a[0, 2] == 0.0
    assert functions.masked_argmax(a, mask)[0] == 1
