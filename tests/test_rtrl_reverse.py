"""RTRL's reverse form (algorithms/rtrl_reverse.py) against its forward form (float64): the same
online learning to 1e-12 for every loss placement, update period, L2 on and off and ensembles, with the
weights changing in mid-sequence; each update against finite differences of the online objective (the
loss of the window's steps along the trajectory that ran with the weights in force at each step); the
auto rule; a stream keeps the forward form."""

import itertools

import numpy as np
import pytest

from forgetlab.algorithms.rtrl import RTRL, implementation_for
from forgetlab.algorithms.rtrl_reverse import History, chain_steps
from forgetlab.gradcheck import finite_difference, relative_error
from forgetlab.networks import functions
from forgetlab.networks.rnn import RNN

T, I, H, O = 7, 3, 4, 5
PLACEMENTS = [("last", 1), ("all", 1), ("last", 3)]


def make_net(loss_at="all", loss_last_steps=1, members=1, output="softmax", loss="cross_entropy"):
    net = RNN(I, H, O, "tanh", output, loss, loss_at, loss_last_steps, init_scale=1.5,
              rng=[np.random.default_rng(10 + s) for s in range(members)])
    rng = np.random.default_rng(3)
    net.b_h[:] = rng.normal(scale=0.5, size=net.b_h.shape)  # nonzero biases exercise dE/db fully
    net.b_y[:] = rng.normal(scale=0.5, size=net.b_y.shape)
    return net


def make_sequences(n=4, length=T, members=None):
    rng = np.random.default_rng(1)
    shape = (1, length, I) if members is None else (members, 1, length, I)
    xs = [rng.normal(size=shape) for _ in range(n)]
    y = np.zeros((1, O))
    y[0, 1] = 1.0
    mask = np.ones((1, O))
    mask[0, 4] = 0.0  # a task-IL mask: unit 4 takes no part
    return xs, y, mask


def train(form, loss_at, k, update_every, l2, members=1, own_inputs=False):
    """The weights, losses, update count and last frozen gradient of the form after a few sequences."""
    net = make_net(loss_at, k, members)
    lr = [0.3 + 0.1 * s for s in range(members)]
    l2s = [l2 * (s + 1) for s in range(members)]
    algorithm = RTRL(net, lr=lr, l2=l2s, update_every=update_every, implementation=form)
    xs, y, mask = make_sequences(members=members if own_inputs else None)
    losses = [algorithm.learn(x, y, mask) for x in xs]
    _, frozen = algorithm.gradient(xs[0], y, mask)
    return net.params, np.array(losses), algorithm.updates, frozen


def assert_equal_to_1e_12(a: dict, b: dict):
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("update_every", [1, 2, 3, T, T + 2])
@pytest.mark.parametrize("l2", [0.0, 0.01])
def test_reverse_learns_as_forward_rtrl_online(placement, update_every, l2):
    forward = train("forward", *placement, update_every, l2)
    reverse = train("reverse", *placement, update_every, l2)
    assert forward[2] == reverse[2] > 0  # the same updates
    assert_equal_to_1e_12(forward[0], reverse[0])
    np.testing.assert_allclose(forward[1], reverse[1], rtol=1e-12)
    assert_equal_to_1e_12(forward[3], reverse[3])
    assert relative_error(forward[0]["W_hh"], make_net(*placement).W_hh) > 1e-3  # it did learn


@pytest.mark.parametrize("placement,update_every,own_inputs", [(("all", 1), 1, False), (("last", 3), 2, True)])
def test_reverse_learns_as_forward_rtrl_in_an_ensemble_and_each_member_as_alone(placement, update_every, own_inputs):
    members = 3
    forward = train("forward", *placement, update_every, 0.01, members, own_inputs)
    reverse = train("reverse", *placement, update_every, 0.01, members, own_inputs)
    assert_equal_to_1e_12(forward[0], reverse[0])
    assert_equal_to_1e_12(forward[3], reverse[3])
    # member 1 alone (its own lr, l2, initial weights and inputs): bit for bit its slice of the ensemble
    net = make_net(*placement, members)
    alone = net.members(slice(1, 2))
    alone_algorithm = RTRL(alone, lr=0.4, l2=0.02, update_every=update_every, implementation="reverse")
    xs, y, mask = make_sequences(members=members if own_inputs else None)
    ensemble = RTRL(make_net(*placement, members), lr=[0.3, 0.4, 0.5], l2=[0.01, 0.02, 0.03],
                    update_every=update_every, implementation="reverse")
    for x in xs:
        alone_algorithm.learn(x[1:2] if own_inputs else x, y, mask)
        ensemble.learn(x, y, mask)
    for name, p in alone.params.items():
        np.testing.assert_array_equal(p[0], ensemble.network.params[name][1])


def recording(algorithm) -> list[tuple[dict, dict]]:
    """Record every update's gradient and the weights it was applied to."""
    updates = []
    apply = algorithm.apply

    def recording_apply(grads):
        updates.append(({n: p.copy() for n, p in algorithm.network.params.items()},
                        {n: g.copy() for n, g in grads.items()}))
        apply(grads)

    algorithm.apply = recording_apply
    return updates


@pytest.mark.parametrize("form", ["forward", "reverse"])
@pytest.mark.parametrize("placement,update_every", [(("all", 1), 1), (("all", 1), 3), (("last", 3), 2)])
def test_each_update_is_the_gradient_of_its_window_along_the_trajectory_it_ran(form, placement, update_every):
    """Online RTRL's update at the end of a window = d/d(eps) of the loss at the window's loss steps,
    where the sequence runs from h_0 = 0 with theta_s + eps at every step s, theta_s the weights in force
    at step s (they changed at every earlier update point): the P recursion's meaning, checked by
    central differences for every parameter."""
    net = make_net(*placement, output="sigmoid", loss="mse")
    algorithm = RTRL(net, lr=0.5, update_every=update_every, implementation=form)
    updates = recording(algorithm)
    (x, *_), y, mask = make_sequences(1)
    algorithm.learn(x, y, mask)
    loss_steps = set(net.loss_steps(T).tolist())
    windows = [(start, min(start + update_every, T)) for start in range(0, T, update_every)]
    windows = [(start, end) for start, end in windows if loss_steps & set(range(start, end))]  # those that update
    assert len(updates) == len(windows) >= 2
    in_force = [next(j for j, (_, end) in enumerate(windows) if s < end) for s in range(T)]  # updates before s
    eps = {n: np.zeros_like(p) for n, p in net.params.items()}

    def window_loss(j):
        start, end = windows[j]
        h, total = np.zeros((1, 1, H)), 0.0
        for s in range(end):
            theta = {n: updates[in_force[s]][0][n] + eps[n] for n in eps}
            h = np.tanh(h @ theta["W_hh"].mT + x[:, s] @ theta["W_xh"].mT + theta["b_h"][:, None])
            if s >= start and s in loss_steps:
                a = functions.output(net.output, h @ theta["W_hy"].mT + theta["b_y"][:, None], mask)
                total += float(functions.loss(net.output, net.loss, a, y, mask).sum()) / len(loss_steps)
        return total

    for j, (_, applied) in enumerate(updates):
        numeric = finite_difference(lambda: window_loss(j), eps)
        for name in numeric:
            assert relative_error(applied[name], numeric[name]) < 1e-7, (j, name)


def test_the_weights_in_force_at_each_step_matter_to_the_gradient():
    """The reverse pass must use each step's own weights: the same history read with the last W_hh at
    every step gives another gradient, so the finite differences above tell the two apart."""
    net = make_net("all", output="sigmoid", loss="mse")
    algorithm = RTRL(net, lr=2.0, update_every=1, implementation="reverse")
    (x, *_), y, mask = make_sequences(1)
    state = algorithm.initial_state(T)
    for t in range(T):  # online, as learn() does: an update after every step but the last
        algorithm.step(state, x[:, t], y, mask, 1.0 / T)
        state.steps_since_update = 1
        last = algorithm.held_back_gradient(state)
        if t < T - 1:
            algorithm.apply(last)
    assert algorithm.updates == T - 1
    last = algorithm.held_back_gradient(state)
    kept = [B_s.copy() for B_s in state.B]
    for B_s, f_prime in zip(state.B, state.f_prime):
        B_s[...] = f_prime.mT * net.W_hh
    assert relative_error(algorithm.held_back_gradient(state)["W_hh"], last["W_hh"]) > 1e-3
    for B_s, B_kept in zip(state.B, kept):
        B_s[...] = B_kept
    np.testing.assert_array_equal(algorithm.held_back_gradient(state)["W_hh"], last["W_hh"])  # a pure function


def test_auto_picks_by_the_estimate_and_a_stream_runs_forward():
    net = make_net("last")
    assert isinstance(RTRL(net, lr=0.1).initial_state(28), History)  # one reverse pass a sequence
    small_all = RTRL(make_net("all"), lr=0.1)
    assert small_all.implementation_for(T) == implementation_for("auto", "per_sequence", H, I, T, T, 1)
    stream = RTRL(net, lr=0.1, reset="never")
    assert stream.implementation_for(28) == "forward" and not isinstance(stream.initial_state(28), History)
    assert implementation_for("auto", "per_sequence", 32, 28, 28, 28, 1) == "reverse"  # the study's RTRL
    assert implementation_for("forward", "per_sequence", 32, 28, 28, 28, 1) == "forward"
    with pytest.raises(ValueError, match="reverse.*per_sequence"):
        RTRL(net, lr=0.1, reset="never", implementation="reverse")
    with pytest.raises(ValueError, match="implementation"):
        RTRL(net, lr=0.1, implementation="backward")


@pytest.mark.parametrize("T_,n_loss,every", list(itertools.product([1, 5, 8], [1, 3, 8], [1, 2, 5])))
def test_chain_steps_counts_the_products_the_reverse_passes_make(T_, n_loss, every, monkeypatch):
    net = RNN(I, H, O, "tanh", "sigmoid", "mse", "last", min(n_loss, T_), rng=np.random.default_rng(0))
    algorithm = RTRL(net, lr=0.0, update_every=every, implementation="reverse")
    calls = {"products": 0, "passes": 0}
    window_gradient, matmul, dot = algorithm.reverse.window_gradient, net.xp.matmul, np.dot

    def counting(product):
        def counted(a, b, **kwargs):
            calls["products"] += b.shape[-2:] == (H, H) and a.shape[-1] == H and a.size == H
            return product(a, b, **kwargs)
        return counted

    def counting_window_gradient(state):
        result = window_gradient(state)
        calls["passes"] += result is not None
        return result

    monkeypatch.setattr(algorithm.reverse, "window_gradient", counting_window_gradient)
    monkeypatch.setattr(net.xp, "matmul", counting(matmul))
    monkeypatch.setattr(np, "dot", counting(dot))
    x = np.random.default_rng(0).normal(size=(1, T_, I))
    algorithm.learn(x, np.eye(O)[[1]], np.ones((1, O)))
    products_of_passes = calls["products"] - T_  # net.step's (1, H) @ (H, H) at each step
    assert (products_of_passes, calls["passes"]) == chain_steps(T_, min(n_loss, T_), every)


def test_the_implementation_key_at_auto_keeps_the_config_hash_and_reverse_needs_per_sequence(compose_cfg):
    import dataclasses

    from forgetlab.config import ConfigError, validate
    from forgetlab.tracking.mlflow_run import config_hash

    cfg = compose_cfg("learner=rnn_rtrl")
    stripped = dataclasses.asdict(cfg)
    del stripped["algorithm"]["implementation"]  # a run recorded before the key existed
    assert config_hash(cfg) == config_hash(stripped)
    assert config_hash(compose_cfg("learner=rnn_rtrl", "algorithm.implementation=forward")) != config_hash(cfg)
    validate(compose_cfg("learner=rnn_rtrl", "algorithm.implementation=reverse"))
    with pytest.raises(ConfigError, match=r"'algorithm.implementation' parameter must be 'auto' or 'forward' with "
                                          r"algorithm.reset='never'.*Got 'reverse' instead"):
        validate(compose_cfg("learner=rnn_rtrl", "algorithm.reset=never", "algorithm.implementation=reverse"))
    with pytest.raises(ConfigError, match=r"'algorithm.implementation' parameter must be one of 'auto', 'forward', "
                                          r"'reverse'\. Got 'backward' instead"):
        validate(compose_cfg("learner=rnn_rtrl", "algorithm.implementation=backward"))
