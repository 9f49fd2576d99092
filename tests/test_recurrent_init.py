"""The RNN's recurrent initialisation (network.recurrent_init, network.recurrent_scale): each option gives
what it claims, every option draws the same numbers (a seed's W_xh and W_hy do not depend on it), and
the default, gaussian at scale 1, is bit for bit the initialisation runs were recorded with."""

import dataclasses

import numpy as np
import pytest

from forgetlab.config import ConfigError, validate
from forgetlab.networks import build_network
from forgetlab.networks.rnn import RNN
from forgetlab.tracking.mlflow_run import config_hash

H, I, O = 16, 5, 3


def rnn(seed=7, init_scale=1.0, **kwargs) -> RNN:
    return RNN(I, H, O, init_scale=init_scale, rng=np.random.default_rng(seed), **kwargs)


def test_gaussian_at_scale_1_is_the_draw_runs_were_recorded_with():
    """The initialisation before recurrent_init existed, written out: N(0, init_scale^2 / fan_in) for
    W_xh, W_hh, W_hy in this order from the member's generator, biases 0."""
    for init_scale in (1.0, 0.7):
        net = rnn(init_scale=init_scale, recurrent_init="gaussian", recurrent_scale=1.0)
        r = np.random.default_rng(7)
        expected = [init_scale / np.sqrt(fan_in) * r.standard_normal(shape)
                    for shape, fan_in in (((H, I), I), ((H, H), H), ((O, H), H))]
        for name, value in zip(("W_xh", "W_hh", "W_hy"), expected):
            np.testing.assert_array_equal(net.params[name][0], value, err_msg=name)
        assert not net.b_h.any() and not net.b_y.any()


def test_gaussian_scale_multiplies_the_draw():
    base, scaled = rnn(), rnn(recurrent_scale=0.5)
    np.testing.assert_array_equal(scaled.W_hh, 0.5 * base.W_hh)
    np.testing.assert_array_equal(scaled.W_xh, base.W_xh)


@pytest.mark.parametrize("init_scale, recurrent_scale", [(1.0, 1.0), (1.0, 0.9), (0.5, 2.0)])
def test_orthogonal_has_every_singular_value_at_its_gain(init_scale, recurrent_scale):
    net = rnn(init_scale=init_scale, recurrent_init="orthogonal", recurrent_scale=recurrent_scale)
    W = net.W_hh[0]
    gain = init_scale * recurrent_scale
    np.testing.assert_allclose(W.T @ W, gain**2 * np.eye(H), atol=1e-12)
    np.testing.assert_allclose(W @ W.T, gain**2 * np.eye(H), atol=1e-12)
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), gain, rtol=1e-12)
    # a random rotation, not a fixed one: another seed gives another matrix, and it is not diagonal
    other = rnn(seed=8, init_scale=init_scale, recurrent_init="orthogonal", recurrent_scale=recurrent_scale).W_hh[0]
    assert np.max(np.abs(W - other)) > 0.1 and np.max(np.abs(W - np.diag(np.diag(W)))) > 0.1


def test_identity_is_the_scaled_identity():
    net = rnn(init_scale=0.8, recurrent_init="identity", recurrent_scale=0.5)
    np.testing.assert_array_equal(net.W_hh[0], 0.4 * np.eye(H))


def test_every_recurrent_init_draws_the_same_numbers():
    """Only W_hh depends on the option: a seed's input and output weights are the same under each."""
    nets = {kind: rnn(recurrent_init=kind) for kind in ("gaussian", "orthogonal", "identity")}
    for kind, net in nets.items():
        for name in ("W_xh", "W_hy"):
            np.testing.assert_array_equal(net.params[name], nets["gaussian"].params[name], err_msg=f"{kind}: {name}")


def test_members_of_an_ensemble_each_get_their_own_orthogonal_matrix():
    rngs = [np.random.default_rng(s) for s in (1, 2)]
    ensemble = RNN(I, H, O, init_scale=[1.0, 0.5], recurrent_init="orthogonal", rng=rngs)
    for s, (seed, scale) in enumerate(((1, 1.0), (2, 0.5))):
        alone = RNN(I, H, O, init_scale=scale, recurrent_init="orthogonal", rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(ensemble.W_hh[s], alone.W_hh[0])


def test_the_config_builds_the_declared_init(compose_cfg):
    cfg = validate(compose_cfg("learner=rnn_rtrl", "network.recurrent_init=identity", "network.recurrent_scale=0.9"))
    net = build_network(cfg.network, (4, 3), 2, np.random.default_rng(0))
    np.testing.assert_array_equal(net.W_hh[0], 0.9 * np.eye(cfg.network.hidden_size))


@pytest.mark.parametrize("override, words", [
    ("network.recurrent_init=uniform", ["'network.recurrent_init'", "'uniform'", "'orthogonal'"]),
    ("network.recurrent_scale=0", ["'network.recurrent_scale'", "0", "(0, inf)"]),
])
def test_bad_values_are_refused_with_the_key(compose_cfg, override, words):
    with pytest.raises(ConfigError) as error:
        validate(compose_cfg("learner=rnn_rtrl", override))
    for word in words:
        assert word in str(error.value)


def test_the_new_keys_at_their_neutral_values_keep_the_config_hash(compose_cfg):
    cfg = compose_cfg("learner=rnn_rtrl")
    stripped = dataclasses.asdict(cfg)
    for key in ("recurrent_init", "recurrent_scale"):
        del stripped["network"][key]
    assert config_hash(cfg) == config_hash(stripped)
    assert config_hash(compose_cfg("learner=rnn_rtrl", "network.recurrent_init=orthogonal")) != config_hash(cfg)
    assert config_hash(compose_cfg("learner=rnn_rtrl", "network.recurrent_scale=0.9")) != config_hash(cfg)
