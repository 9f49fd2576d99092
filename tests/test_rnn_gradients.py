"""Gradient identities of the recurrent learning algorithms (float64, central differences):
with the weights frozen over a sequence, RTRL's accumulated gradient = epochwise BPTT's = finite
differences, and BPTT(h; h') without truncation = epochwise BPTT; truncation truncates; online
updates happen when they should; a stream carries its state."""

import itertools

import numpy as np
import pytest

from forgetlab.algorithms.bptt_epochwise import BPTTEpochwise
from forgetlab.algorithms.bptt_truncated import BPTTTruncated
from forgetlab.algorithms.rtrl import IMPLEMENTATIONS, RTRL, sensitivity_update
from forgetlab.networks import functions
from forgetlab.networks.rnn import LOSS_AT, RNN, RNN_ACTIVATIONS
from forgetlab.gradcheck import finite_difference, relative_error

COMBOS = list(itertools.product(RNN_ACTIVATIONS, functions.OUTPUTS, functions.LOSSES, LOSS_AT))
T, I, H, O = 5, 3, 4, 5
TOL = 1e-6


def make_net(activation="tanh", output="softmax", loss="cross_entropy", loss_at="all", seed=0, loss_last_steps=1):
    rng = np.random.default_rng(seed)
    net = RNN(I, H, O, activation, output, loss, loss_at, loss_last_steps, init_scale=1.5, rng=rng)
    net.b_h[:] = rng.normal(scale=0.5, size=H)  # nonzero biases exercise dE/db fully
    net.b_y[:] = rng.normal(scale=0.5, size=O)
    return net


def make_sequence(seed=1, length=T, masked=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, length, I))
    y = np.zeros((1, O))
    y[0, rng.integers(3)] = 1.0
    mask = np.ones((1, O))
    if masked:
        mask[0, 3:] = 0.0  # task-IL: units 3, 4 take no part
    return x, y, mask


def assert_same(a, b, tol=TOL):
    for name in b:
        assert relative_error(a[name], b[name]) < tol, (name, relative_error(a[name], b[name]))


@pytest.mark.parametrize("activation,output,loss,loss_at", COMBOS)
def test_rtrl_equals_epochwise_bptt_equals_finite_differences(activation, output, loss, loss_at):
    net = make_net(activation, output, loss, loss_at)
    x, y, mask = make_sequence()
    bptt = BPTTEpochwise(net, lr=0.1, l2=0.03)
    numeric = finite_difference(lambda: bptt.objective(x, y, mask), net.params)
    loss_b, g_bptt = bptt.gradient(x, y, mask)
    assert loss_b == pytest.approx(net.data_loss(x, y, mask), rel=1e-12)
    assert_same(g_bptt, numeric)
    for update_every, implementation in itertools.product((1, 2), IMPLEMENTATIONS):
        rtrl = RTRL(net, lr=0.1, l2=0.03, update_every=update_every, implementation=implementation)
        loss_r, g_rtrl = rtrl.gradient(x, y, mask)
        assert loss_r == pytest.approx(loss_b, rel=1e-12)
        assert_same(g_rtrl, numeric)
        assert_same(g_rtrl, g_bptt, tol=1e-10)


@pytest.mark.parametrize("activation,output,loss", list(itertools.product(RNN_ACTIVATIONS, functions.OUTPUTS, functions.LOSSES)))
def test_loss_on_the_last_k_steps_rtrl_equals_epochwise_bptt_equals_finite_differences(activation, output, loss):
    net = make_net(activation, output, loss, "last", loss_last_steps=3)
    x, y, mask = make_sequence()
    assert list(net.loss_steps(T)) == [T - 3, T - 2, T - 1]
    bptt = BPTTEpochwise(net, lr=0.1, l2=0.03)
    numeric = finite_difference(lambda: bptt.objective(x, y, mask), net.params)
    loss_b, g_bptt = bptt.gradient(x, y, mask)
    assert loss_b == pytest.approx(net.data_loss(x, y, mask), rel=1e-12)
    assert_same(g_bptt, numeric)
    assert relative_error(g_bptt["W_hh"], make_and_grad(activation, output, loss, x, y, mask)["W_hh"]) > 1e-3
    for update_every, implementation in itertools.product((1, 2), IMPLEMENTATIONS):
        rtrl = RTRL(net, lr=0.1, l2=0.03, update_every=update_every, implementation=implementation)
        assert_same(rtrl.gradient(x, y, mask)[1], numeric)
    for h, h_prime in ((T, T), (T, 1), (2, 1)):
        tbptt = BPTTTruncated(net, lr=0.1, l2=0.03, h=h, h_prime=h_prime).gradient(x, y, mask)[1]
        if h >= T:
            assert_same(tbptt, g_bptt, tol=1e-10)
        else:
            assert relative_error(tbptt["W_xh"], g_bptt["W_xh"]) > 1e-3  # the early steps' credit is cut


def make_and_grad(activation, output, loss, x, y, mask):
    """Epochwise BPTT's gradient with the loss at the last step only (the default)."""
    return BPTTEpochwise(make_net(activation, output, loss, "last"), lr=0.1, l2=0.03).gradient(x, y, mask)[1]


@pytest.mark.parametrize("loss_at", LOSS_AT)
@pytest.mark.parametrize("h,h_prime", [(T, T), (T, 1), (T + 3, 2), (T, 3)])
def test_tbptt_without_truncation_equals_full_bptt(loss_at, h, h_prime):
    """h >= T: no error is ever cut off, whatever h' (h' = T is the epochwise schedule itself)."""
    net = make_net("sigmoid", "sigmoid", "mse", loss_at)
    x, y, mask = make_sequence()
    full = BPTTEpochwise(net, lr=0.1, l2=0.02).gradient(x, y, mask)[1]
    tbptt = BPTTTruncated(net, lr=0.1, l2=0.02, h=h, h_prime=h_prime).gradient(x, y, mask)[1]
    assert_same(tbptt, full, tol=1e-10)


def test_truncation_truncates_to_the_last_h_steps():
    """BPTT(2; 2) with loss at the last step = the exact gradient of that loss with the state entering
    step T-2 held fixed, which differs from the full gradient."""
    net = make_net("tanh", "softmax", "cross_entropy", "last")
    x, y, mask = make_sequence()
    tbptt = BPTTTruncated(net, lr=0.1, h=2, h_prime=2).gradient(x, y, mask)[1]
    full = BPTTEpochwise(net, lr=0.1).gradient(x, y, mask)[1]
    h_enter = net.forward(x, mask).h[:, :, T - 2].copy()  # at the current weights, then frozen

    def truncated_objective():
        a_last = net.forward(x[:, T - 2 :], mask, h0=h_enter).a[:, :, -1]
        return functions.loss(net.output, net.loss, a_last, y, mask)[:, 0]

    numeric = finite_difference(truncated_objective, net.params)
    assert_same(tbptt, numeric)
    assert relative_error(tbptt["W_hh"], full["W_hh"]) > 1e-3
    assert relative_error(tbptt["W_xh"], full["W_xh"]) > 1e-3
    np.testing.assert_allclose(tbptt["W_hy"], full["W_hy"], rtol=1e-12)  # the readout is not truncated


def test_sensitivity_update_is_the_kronecker_formula():
    rng = np.random.default_rng(0)
    K, S = H + I + 1, 3
    W_hh, P = rng.normal(size=(S, H, H)), rng.normal(size=(S, H, H * K))
    u, fp = rng.normal(size=(S, 1, K)), rng.uniform(size=(S, 1, H))
    updated = sensitivity_update(P, W_hh, u, fp, out=np.empty_like(P))
    for s in range(S):
        immediate = np.kron(np.eye(H), u[s])  # U[i, j*K + k] = [i = j] u_k
        expected = fp[s].T * (W_hh[s] @ P[s] + immediate)
        np.testing.assert_allclose(updated[s], expected, rtol=1e-12)


class Recorder:
    """Wraps an algorithm's apply to record every update and the weights it was applied to."""

    def __init__(self, algo):
        self.grads, self.before = [], []
        apply = algo.apply

        def recording_apply(grads):
            self.before.append({n: p.copy() for n, p in algo.network.params.items()})
            self.grads.append({n: g.copy() for n, g in grads.items()})
            apply(grads)

        algo.apply = recording_apply


@pytest.mark.parametrize("implementation", ["forward", "reverse"])
@pytest.mark.parametrize("loss_at,update_every,expected", [("all", 1, 5), ("all", 2, 3), ("all", 5, 1), ("last", 1, 1)])
def test_rtrl_updates_online_every_update_every_steps(loss_at, update_every, expected, implementation):
    net = make_net(loss_at=loss_at)
    x, y, mask = make_sequence()
    rtrl = RTRL(net, lr=0.5, l2=0.01, update_every=update_every, implementation=implementation)
    record = Recorder(rtrl)
    rtrl.learn(x, y, mask)
    assert rtrl.updates == len(record.grads) == expected
    if loss_at == "all" and update_every == 2:
        # the first update: steps 0 and 1 at the initial weights, i.e. the exact gradient of (E_0 + E_1)/T
        # (= 2/T times the mean loss of the two-step prefix) plus two shares 2/T of the L2 term
        for n, p in net.params.items():
            p[...] = record.before[0][n]
        prefix = BPTTEpochwise(net, lr=0.5).gradient(x[:, :2], y, mask)[1]
        for n, g in prefix.items():
            l2 = 0.01 * net.params[n] if n in net.weight_names else 0.0
            np.testing.assert_allclose(record.grads[0][n], 2 / T * (g + l2), rtol=1e-10, atol=1e-15)
        assert not np.allclose(record.before[1]["W_hh"], record.before[0]["W_hh"])


@pytest.mark.parametrize("loss_at,h_prime,expected", [("all", 1, 5), ("all", 2, 3), ("last", 2, 1), ("all", 5, 1)])
def test_tbptt_updates_every_h_prime_steps(loss_at, h_prime, expected):
    net = make_net(loss_at=loss_at)
    x, y, mask = make_sequence()
    tbptt = BPTTTruncated(net, lr=0.5, h=5, h_prime=h_prime)
    tbptt.learn(x, y, mask)
    assert tbptt.updates == expected


@pytest.mark.parametrize("make,after_next_two_steps", [
    (lambda net: RTRL(net, lr=0.1, update_every=3, reset="never"), 5),  # 11, 12: an update point
    (lambda net: BPTTTruncated(net, lr=0.1, h=4, h_prime=3, reset="never"), 4),  # a new stretch: 2 of 3 steps
])
def test_stream_update_points_run_on_across_sequences(make, after_next_two_steps):
    """reset=never, update points every 3 steps: with two sequences of 5 steps the points are steps
    3, 6 and 9; step 10's error waits for the end of the task. RTRL's points then go on (12, ...),
    while truncated BPTT's delivered stretch ends there and the next stretch starts afresh."""
    net = make_net(loss_at="all")
    algo = make(net)
    x, y, mask = make_sequence()
    algo.learn(x, y, mask)
    assert algo.updates == 1
    algo.learn(x, y, mask)
    assert algo.updates == 3
    algo.end_task()
    assert algo.updates == 4
    algo.learn(x[:, :2], y, mask)
    assert algo.updates == after_next_two_steps


def test_epochwise_bptt_learns_one_update_per_sequence():
    net = make_net()
    x, y, mask = make_sequence()
    algo = BPTTEpochwise(net, lr=0.2)
    before = {n: p.copy() for n, p in net.params.items()}
    loss0, grads = algo.gradient(x, y, mask)
    algo.learn(x, y, mask)
    assert algo.updates == 1
    for n, p in net.params.items():
        np.testing.assert_allclose(p, before[n] - 0.2 * grads[n])
    assert algo.gradient(x, y, mask)[0] < loss0


@pytest.mark.parametrize("make", [
    lambda net, reset: RTRL(net, lr=0.0, update_every=1, reset=reset),
    lambda net, reset: BPTTTruncated(net, lr=0.0, h=2 * T, h_prime=1, reset=reset),
])
def test_stream_mode_carries_the_state_and_its_gradient(make):
    """reset=never: sequence B starts where A ended; with frozen weights (lr = 0) the gradient
    of B's loss flows back through A as well, exactly as for A and B run as one sequence."""
    net = make_net(loss_at="last")
    (xa, y, mask), (xb, _, _) = make_sequence(seed=1), make_sequence(seed=2)
    stream = make(net, "never")
    stream.learn(xa, y, mask)
    carried = stream.state.h
    np.testing.assert_allclose(carried, net.forward(xa, mask).h[:, :, -1], rtol=1e-12)
    _, g_stream = stream.gradient(xb, y, mask)
    _, g_again = stream.gradient(xb, y, mask)  # gradient() leaves the carried state as it was
    assert_same(g_again, g_stream, tol=1e-14)
    joined = np.concatenate([xa, xb], axis=1)

    def loss_of_b_after_a():
        a_last = net.forward(joined, mask).a[:, :, -1]
        return functions.loss(net.output, net.loss, a_last, y, mask)[:, 0]

    assert_same(g_stream, finite_difference(loss_of_b_after_a, net.params))
    _, g_fresh = make(net, "per_sequence").gradient(xb, y, mask)
    assert relative_error(g_fresh["W_hh"], g_stream["W_hh"]) > 1e-3
