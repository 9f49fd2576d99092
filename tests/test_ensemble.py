"""Ensembles: S members trained side by side as stacked arrays give each member exactly the numbers
of its config trained alone (every algorithm), a diverging member stops alone, and only configs that
differ in member keys may share an ensemble."""

from dataclasses import replace

import numpy as np
import pytest

from forgetlab.algorithms import ALGORITHMS, build_algorithm
from forgetlab.assembly import build_ensemble_trainer, build_trainer, ensemble_signature, incompatible_key, member_keys
from forgetlab.gradcheck import finite_difference, relative_error
from forgetlab.networks import NETWORKS, build_network
from forgetlab.trainer import Callback, TrainingDiverged
from tests.test_resilience import DIVERGING

SMALL = ["tracking.enabled=false", "task_sequence.n_tasks=2", "trainer.epochs_per_task=1", "eval.every_samples=150"]

# Each learner in a setting that exercises its whole schedule: mid-sequence updates (loss at every
# step), L2, a softmax output, mini-batches for the MLP.
LEARNERS = {
    "backprop": ["learner=mlp_backprop", "network.hidden_sizes=[32]", "trainer.batch_size=3",
                 "network.output=softmax", "network.loss=cross_entropy"],
    "bptt_epochwise": ["learner=rnn_bptt_epochwise", "network.loss_at=all", "network.output=softmax",
                       "network.loss=cross_entropy"],
    "bptt_truncated": ["learner=rnn_bptt_truncated", "network.loss_at=all", "algorithm.h=3", "algorithm.h_prime=2"],
    "rtrl": ["learner=rnn_rtrl", "network.loss_at=all", "algorithm.update_every=3", "network.hidden_size=16"],
}


def learner(algorithm: str) -> list[str]:
    """The overrides that exercise ``algorithm``: its setting above, or (an algorithm added since) the
    algorithm on the first network it trains, reading what that network reads."""
    if algorithm in LEARNERS:
        return LEARNERS[algorithm]
    network = ALGORITHMS[algorithm].trains[0]
    return [f"algorithm={algorithm}", f"network={network}", f"task_sequence.input={NETWORKS[network].reads}"]

# Members of one ensemble: their own seeds, learning rates, L2 coefficients, initial scales and perturbations.
MEMBERS = [
    ["seed=0"],
    ["seed=1", "algorithm.lr=0.2"],
    ["seed=2", "algorithm.l2=0.001", "network.init_scale=0.7", "network.init_perturbation=1e-6"],
    ["seed=3", "algorithm.lr=0.05", "algorithm.l2=0.01"],
    ["seed=4"],
    ["seed=5", "network.init_scale=1.3"],
    ["seed=6", "algorithm.lr=0.3"],
    ["seed=7", "algorithm.l2=0.002"],
]


def assert_same_run(solo, member, solo_params, member_params):
    """Bit-identical results: every field of every evaluation point, the presentation times, the
    final weights."""
    assert len(solo.points) == len(member.points)
    for p, q in zip(solo.points, member.points):
        for field in ("samples_seen", "updates", "stage", "boundary", "tasks_trained"):
            assert getattr(p, field) == getattr(q, field), field
        for field in ("accuracy", "loss", "probe_correct", "probe_loss", "train_loss"):
            np.testing.assert_array_equal(getattr(p, field), getattr(q, field), err_msg=field)
    np.testing.assert_array_equal(solo.presented_at, member.presented_at)
    for name, value in solo_params.items():
        np.testing.assert_array_equal(value, member_params[name], err_msg=name)


def solo_run(cfg):
    trainer = build_trainer(cfg)
    (result,) = trainer.run()
    return result, {n: p[0] for n, p in trainer.network.params.items()}


@pytest.mark.parametrize("n_members", [3, pytest.param(8, marks=pytest.mark.slow)])
@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_each_member_has_the_numbers_of_its_config_alone(compose_cfg, algorithm, n_members):
    assert_each_member_as_alone([compose_cfg(*SMALL, *learner(algorithm), *member) for member in MEMBERS[:n_members]])


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["forward", "reverse"])
def test_each_form_of_rtrl_gives_each_member_the_numbers_of_its_config_alone(compose_cfg, implementation):
    overrides = [*SMALL, *learner("rtrl"), f"algorithm.implementation={implementation}"]
    assert_each_member_as_alone([compose_cfg(*overrides, *member) for member in MEMBERS[:3]])


def assert_each_member_as_alone(cfgs):
    n_members = len(cfgs)
    ensemble = build_ensemble_trainer(cfgs)
    results = ensemble.run()
    assert len(results) == n_members and all(r.error is None for r in results)
    for m in sorted({1, 2, n_members - 1}):  # each differs from member 0 in other member keys
        solo, solo_params = solo_run(cfgs[m])
        assert_same_run(solo, results[m], solo_params, {n: p[m] for n, p in ensemble.network.params.items()})
    assert not np.array_equal(results[0].points[-1].probe_loss, results[1].points[-1].probe_loss)


@pytest.mark.slow
def test_the_solo_path_is_the_ensemble_of_one(compose_cfg):
    cfg = compose_cfg(*SMALL, *learner("rtrl"), "seed=3")
    trainer = build_trainer(cfg)
    assert trainer.network.n_members == 1 and trainer.algorithm.lr.shape == (1,)
    alone = build_ensemble_trainer([cfg])
    (a,), (b,) = trainer.run(), alone.run()
    assert_same_run(a, b, trainer.network.params, alone.network.params)


def test_callbacks_see_each_members_points(compose_cfg):
    cfgs = [compose_cfg(*SMALL, *member) for member in MEMBERS[:3]]
    seen = [[], [], []]

    class Spy(Callback):
        def on_eval(self, trainer, points):
            for m, point in points.items():
                seen[m].append(point)

    results = build_ensemble_trainer(cfgs, [Spy()]).run()
    for m in range(3):
        assert seen[m] == results[m].points
    assert seen[0][-1].accuracy.tolist() != seen[1][-1].accuracy.tolist()


@pytest.mark.slow
def test_a_diverging_member_stops_alone(compose_cfg):
    """DIVERGING's member (lr 1e6, init scale 3) fails as it does alone; the others, which share its
    architecture, go on with the numbers of their own solo runs."""
    keys = member_keys(compose_cfg(*SMALL))
    shared = [*SMALL, *[o for o in DIVERGING if o.split("=")[0] not in keys]]
    diverging = [o for o in DIVERGING if o.split("=")[0] in keys]
    cfgs = [compose_cfg(*shared, "seed=1", "algorithm.lr=0.05"), compose_cfg(*shared, "seed=0", *diverging),
            compose_cfg(*shared, "seed=2", "algorithm.lr=0.02")]
    ensemble = build_ensemble_trainer(cfgs)
    with np.errstate(all="ignore"):
        results = ensemble.run()
        (alone, _) = solo_run(cfgs[1])
    assert isinstance(results[1].error, TrainingDiverged)
    assert str(results[1].error) == str(alone.error)
    assert "diverged at update 7 (7 samples seen" in str(results[1].error)
    assert [p.samples_seen for p in results[1].points] == [p.samples_seen for p in alone.points] == [0]
    assert all(np.all(p[1] == 0.0) for p in ensemble.network.params.values())  # masked out, finite
    for m in (0, 2):
        assert results[m].error is None
        solo, solo_params = solo_run(cfgs[m])
        assert_same_run(solo, results[m], solo_params, {n: p[m] for n, p in ensemble.network.params.items()})


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["bptt_epochwise", "bptt_truncated", "rtrl"])
def test_a_recurrent_member_whose_weights_turn_nan_stops_alone(compose_cfg, algorithm):
    """The RNN's bounded units keep its loss finite even at absurd learning rates, so the divergence is
    made: member 1's readout turns NaN after update 20; it stops at the next update, its carried state
    is cleared, and the others keep the numbers of their solo runs."""
    cfgs = [compose_cfg(*SMALL, *learner(algorithm), *member) for member in MEMBERS[:3]]
    ensemble = build_ensemble_trainer(cfgs)
    algo, learn, poisoned = ensemble.algorithm, ensemble.algorithm.learn, []

    def poisoning_learn(x, y, mask):
        loss = learn(x, y, mask)
        if algo.updates >= 20 and not poisoned:
            ensemble.network.params["W_hy"][1] = np.nan
            poisoned.append(algo.updates)
        return loss

    algo.learn = poisoning_learn
    with np.errstate(all="ignore"):
        results = ensemble.run()
    assert isinstance(results[1].error, TrainingDiverged) and "the training loss is nan" in str(results[1].error)
    assert all(np.all(np.isfinite(p)) for p in ensemble.network.params.values())
    assert algo.updates > 100  # the others trained on
    for m in (0, 2):
        solo, solo_params = solo_run(cfgs[m])
        assert_same_run(solo, results[m], solo_params, {n: p[m] for n, p in ensemble.network.params.items()})


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_gradients_of_three_members_match_finite_differences(compose_cfg, algorithm):
    """float64 central differences of the sum of the members' objectives (each depends on its own
    weights only), with a different sample and L2 coefficient per member."""
    recurrent = NETWORKS[ALGORITHMS[algorithm].trains[0]].reads == "sequence"
    cfg = compose_cfg(*SMALL, *learner(algorithm), "network.hidden_size=5" if recurrent else "network.hidden_sizes=[6]")
    rng = np.random.default_rng(4)
    shape = (6, 4) if recurrent else (9,)
    net = build_network(cfg.network, shape, 5, [np.random.default_rng(s) for s in range(3)], init_scale=[1.0, 1.5, 0.8])
    for name in set(net.params) - set(net.weight_names):
        net.params[name][...] = rng.normal(scale=0.5, size=net.params[name].shape)
    algo = build_algorithm([replace(cfg.algorithm, lr=lr, l2=l2) for lr, l2 in ((0.1, 0.0), (0.2, 0.01), (0.3, 0.03))], net)
    batch = 1 if recurrent else 3
    x = rng.uniform(size=(3, batch, *shape))
    y = np.zeros((3, batch, 5))
    y[:, :, 2] = 1.0
    mask = np.ones((3, batch, 5))
    _, analytic = algo.gradient(x, y, mask)
    numeric = finite_difference(algo.frozen_objective(x, y, mask), net.params)
    for name, g in analytic.items():
        assert g.shape == net.params[name].shape
        for m in range(3):
            assert relative_error(g[m], numeric[name][m]) < 1e-6, (name, m)


@pytest.mark.slow
def test_only_member_keys_may_differ(compose_cfg):
    base = compose_cfg(*SMALL)
    members = [compose_cfg(*SMALL, *m) for m in MEMBERS]
    assert incompatible_key([base, *members]) is None
    assert member_keys(base) == {"seed", "algorithm.lr", "algorithm.l2", "network.init_scale", "network.init_perturbation"}
    assert len({ensemble_signature(c) for c in [base, *members]}) == 1
    for other in ("task_sequence.scenario=domain", "trainer.epochs_per_task=2", "network.hidden_sizes=[8]",
                  "eval.every_samples=10"):
        cfg = compose_cfg(*SMALL, other)
        assert incompatible_key([base, cfg])[0] == other.split("=")[0]
        assert ensemble_signature(cfg) != ensemble_signature(base)
        with pytest.raises(ValueError, match=repr(other.split("=")[0])):
            build_ensemble_trainer([base, cfg])


def test_evaluation_in_passes_of_a_few_members_scores_each_as_alone(compose_cfg, monkeypatch):
    cfgs = [compose_cfg(*SMALL, *member) for member in MEMBERS[:3]]
    trainer = build_ensemble_trainer(cfgs)
    monkeypatch.setattr(type(trainer.evaluator), "MEMBERS_PER_PASS", 2)  # passes of members 0-1 and 2
    together = trainer.evaluator.evaluate(trainer.network)
    for m in range(3):
        alone = trainer.evaluator.evaluate(trainer.network.members(slice(m, m + 1)))
        for field in ("accuracy", "loss", "probe_correct", "probe_loss"):
            np.testing.assert_array_equal(getattr(together, field)[m], getattr(alone, field)[0], err_msg=field)
    view = trainer.network.members(slice(1, 2))
    view.params["W0"][0, 0, 0] = 123.0  # a view: writes reach the ensemble
    assert trainer.network.params["W0"][1, 0, 0] == 123.0 and view.n_members == 1


def test_a_member_whose_weights_turn_inf_at_a_finite_loss_stops_at_the_next_point(compose_cfg):
    """An output bias at +inf saturates the sigmoid: the loss stays finite and the gradient 0, so only
    the weights tell; member 1 stops at the evaluation point after it, the others go on as alone."""
    cfgs = [compose_cfg(*SMALL, *member) for member in MEMBERS[:3]]
    ensemble = build_ensemble_trainer(cfgs)
    algo, learn, poisoned = ensemble.algorithm, ensemble.algorithm.learn, []

    def poisoning_learn(x, y, mask):
        loss = learn(x, y, mask)
        if algo.updates == 20 and not poisoned:
            ensemble.network.params["b1"][1] = np.inf
            poisoned.append(True)
        return loss

    algo.learn = poisoning_learn
    with np.errstate(all="ignore"):
        results = ensemble.run()
    assert "by update 150 (150 samples seen" in str(results[1].error)
    assert "the root mean square of the weights is inf" in str(results[1].error)
    assert [p.samples_seen for p in results[1].points] == [0]
    for m in (0, 2):
        solo, solo_params = solo_run(cfgs[m])
        assert_same_run(solo, results[m], solo_params, {n: p[m] for n, p in ensemble.network.params.items()})
