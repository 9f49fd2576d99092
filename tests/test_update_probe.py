"""The update-resolution probe (eval.probe_every, eval.interference) against direct measurements
taken at every weight update, for the MLP and for recurrent algorithms that update in mid-sequence."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from forgetlab import metrics
from forgetlab.config import ConfigError, validate
from forgetlab.assembly import build_trainer
from forgetlab.update_probe import UpdateProbe

# 2 tasks of about 36 training samples each (90 % of the digits held out for testing).
TINY = ("tracking.enabled=false", "trainer.epochs_per_task=1", "task_sequence.n_tasks=2",
        "task_sequence.test_size=0.9", "eval.every_samples=0", "eval.update_probe_per_task=3")
# RTRL updating every 3 steps with loss at every step: 2 updates inside each 8-step sequence and one
# at its end. BPTT(4; 3) in a stream: the last error of a sequence waits for the next one's update.
LEARNERS = {
    "mlp": (),
    "rtrl_mid_sequence": ("learner=rnn_rtrl", "network.hidden_size=6", "network.loss_at=all", "algorithm.update_every=3"),
    "tbptt_stream": ("learner=rnn_bptt_truncated", "network.hidden_size=6", "network.loss_at=all",
                     "algorithm.h=4", "algorithm.h_prime=3", "algorithm.reset=never"),
}


def probe_of(trainer) -> UpdateProbe:
    """The update-resolution probe among the trainer's callbacks."""
    (probe,) = [c for c in trainer.callbacks if isinstance(c, UpdateProbe)]
    return probe


@pytest.fixture
def tiny(compose_cfg):
    def make(learner: str, *overrides: str):
        cfg = compose_cfg(*TINY, *LEARNERS[learner], "eval.probe_every=1", *overrides)
        validate(cfg)
        return build_trainer(cfg)

    return make


class Direct:
    """At every update: the weights, and each probe sample's loss and correctness from a forward pass
    of that sample alone; row 0 before training."""

    def __init__(self, trainer):
        self.trainer = trainer
        probe = probe_of(trainer)
        self.x, self.y, self.mask = probe.x, probe.y, probe.mask
        self.theta, self.loss, self.correct = [], [], []
        self()
        trainer.algorithm.on_update.append(self)

    def __call__(self):
        net = self.trainer.network
        # One member (the lone network): its row of each member-axis result.
        self.theta.append(net.flatten(net.params)[0].copy())
        self.loss.append([net.data_loss(x[None], y[None], m[None])[0] for x, y, m in zip(self.x, self.y, self.mask)])
        self.correct.append([np.argmax(np.where(m > 0, net.predict(x[None], m[None])[0, 0], -np.inf)) == np.argmax(y)
                             for x, y, m in zip(self.x, self.y, self.mask)])


@pytest.mark.parametrize("learner", LEARNERS)
def test_probe_rows_equal_a_direct_evaluation_after_every_update(tiny, learner):
    trainer = tiny(learner)
    direct = Direct(trainer)
    history = trainer.run()[0].records.get("update_probe")
    U = trainer.algorithm.updates
    assert U > trainer.sequence.tasks[0].n_train  # the recurrent learners update several times per sequence
    np.testing.assert_array_equal(history.updates, np.arange(U + 1))
    np.testing.assert_array_equal(history.correct, np.array(direct.correct))
    np.testing.assert_allclose(history.loss, np.array(direct.loss), rtol=1e-12, atol=1e-15)
    assert history.correct.shape == (U + 1, 6)  # 3 samples of each of the 2 tasks


@pytest.mark.parametrize("learner", LEARNERS)
def test_a_sample_is_presented_at_the_update_that_applies_its_last_error(tiny, learner):
    """Found independently of the probe's bookkeeping: each learn() call is matched to the probe
    samples by its input; its last error is applied by the last update inside the call, or by the
    next update when the call leaves an error pending."""
    trainer = tiny(learner)
    algorithm, probe = trainer.algorithm, probe_of(trainer)
    expected = [[] for _ in probe.task]
    pending_seen = []
    learn = algorithm.learn

    def watched_learn(x, y, mask):
        loss = learn(x, y, mask)
        completing = algorithm.updates + (1 if algorithm.error_pending else 0)
        pending_seen.append(algorithm.error_pending)
        for p, x_p in enumerate(probe.x):
            if any(np.array_equal(x_p, x_b) for x_b in x[0]):  # member 0's batch
                expected[p].append(completing)
        return loss

    algorithm.learn = watched_learn
    history = trainer.run()[0].records.get("update_probe")
    assert [list(row[row >= 0]) for row in history.presented_update] == expected
    assert all(len(e) == 1 for e in expected)  # one epoch: every probe sample once
    assert any(pending_seen) == (learner == "tbptt_stream")
    metrics.presentation_anchors(history.presented_update, algorithm.updates)  # a valid history


def test_update_stage_and_stage_task_follow_the_boundaries(tiny, compose_cfg):
    trainer = tiny("mlp")
    (result,) = trainer.run()
    history = result.records.get("update_probe")
    ends = [p.updates for p in result.points if p.boundary and p.stage >= 0]
    assert len(history.update_stage) == ends[-1]
    for stage, (start, end) in enumerate(zip([0, *ends[:-1]], ends)):
        assert np.all(history.update_stage[start:end] == stage)
    np.testing.assert_array_equal(history.stage_task, [0, 1])
    (joint,) = build_trainer(compose_cfg(*TINY, "eval.probe_every=1", "task_sequence.joint=true")).run()
    np.testing.assert_array_equal(joint.records.get("update_probe").stage_task, [-1])
    assert np.all(joint.records.get("update_probe").update_stage == 0)


def test_every_kth_update_gives_the_same_rows_subsampled(tiny):
    every_update = tiny("rtrl_mid_sequence").run()[0].records.get("update_probe")
    every_fifth = tiny("rtrl_mid_sequence", "eval.probe_every=5").run()[0].records.get("update_probe")
    np.testing.assert_array_equal(every_fifth.updates, every_update.updates[::5])
    np.testing.assert_array_equal(every_fifth.correct, every_update.correct[::5])
    np.testing.assert_array_equal(every_fifth.loss, every_update.loss[::5])
    np.testing.assert_array_equal(every_fifth.presented_update, every_update.presented_update)


@pytest.mark.parametrize("learner", ["mlp", "tbptt_stream"])
def test_the_probe_changes_no_number_of_the_run(tiny, learner):
    plain = tiny(learner, "eval.probe_every=0").run()[0]
    probed = tiny(learner, "eval.interference=true").run()[0]
    assert plain.records.get("update_probe") is None and probed.records.get("update_probe") is not None
    for a, b in zip(plain.points, probed.points):
        np.testing.assert_array_equal(a.accuracy, b.accuracy)
        np.testing.assert_array_equal(a.probe_loss, b.probe_loss)
        np.testing.assert_array_equal([a.updates, a.train_loss], [b.updates, b.train_loss])


@pytest.mark.parametrize("learner", LEARNERS)
def test_interference_records_the_applied_change_of_the_weights(tiny, learner):
    """step_norm, the first-order prediction and the cosines are those of theta_u - theta_{u-1} taken
    from the weights themselves, and the gradient of a sample's loss at theta_{u-1}."""
    trainer = tiny(learner, "eval.interference=true")
    direct = Direct(trainer)
    history = trainer.run()[0].records.get("update_probe")
    i = history.interference
    theta = np.array(direct.theta)
    steps = np.diff(theta, axis=0)
    np.testing.assert_allclose(i.step_norm, np.linalg.norm(steps, axis=1), rtol=1e-12)
    np.testing.assert_allclose(i.consecutive_cosine[1:], metrics.cosine(steps[1:], steps[:-1]), rtol=1e-9, atol=1e-12)
    assert np.isnan(i.consecutive_cosine[0])
    np.testing.assert_allclose(i.measured, np.diff(np.array(direct.loss), axis=0), rtol=1e-9, atol=1e-15)
    net = copy.deepcopy(trainer.network)
    for u in (0, len(steps) // 2, len(steps) - 1):
        flat = theta[u]
        start = 0
        for p in net.params.values():
            p[...] = flat[start : start + p.size].reshape(p.shape)
            start += p.size
        G = net.per_sample_gradients(probe_of(trainer).x, probe_of(trainer).y, probe_of(trainer).mask)[0]
        np.testing.assert_allclose(i.predicted[u], G @ steps[u], rtol=1e-9, atol=1e-15)
        means = metrics.task_mean_gradients(G, history.task, 2)
        np.testing.assert_allclose(i.task_cosine[u], metrics.cosine(-steps[u], means), rtol=1e-9, atol=1e-12)


def test_an_mlp_step_is_minus_lr_times_the_gradient_of_its_sample(tiny):
    trainer = tiny("mlp", "eval.interference=true", "algorithm.l2=0.01")
    algorithm, net = trainer.algorithm, trainer.network
    gradients = []
    learn = algorithm.learn

    def watched_learn(x, y, mask):
        gradients.append(net.flatten(algorithm.gradient(x, y, mask)[1])[0])
        return learn(x, y, mask)

    algorithm.learn = watched_learn
    direct = Direct(trainer)
    trainer.run()
    steps = np.diff(np.array(direct.theta), axis=0)
    np.testing.assert_allclose(steps, -algorithm.lr[0] * np.array(gradients), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("learner", LEARNERS)
def test_first_order_prediction_matches_the_measured_change_for_a_tiny_lr(tiny, learner):
    history = tiny(learner, "eval.interference=true", "algorithm.lr=1e-4").run()[0].records.get("update_probe")
    agreement = metrics.first_order_agreement(history.interference.predicted, history.interference.measured)
    assert agreement["correlation"] > 0.9999
    assert agreement["slope"] == pytest.approx(1.0, abs=1e-3)
    # at the trained rates curvature shows: the prediction overshoots
    trained = tiny(learner, "eval.interference=true").run()[0].records.get("update_probe").interference
    assert metrics.first_order_agreement(trained.predicted, trained.measured)["correlation"] < agreement["correlation"]


def test_interference_matrix_at_each_boundary(tiny):
    trainer = tiny("rtrl_mid_sequence", "eval.interference=true")
    (result,) = trainer.run()
    i = result.records.get("update_probe").interference
    boundary_updates = [p.updates for p in result.points if p.boundary]
    np.testing.assert_array_equal(i.matrix_updates, boundary_updates)
    probe = probe_of(trainer)
    G = trainer.network.per_sample_gradients(probe.x, probe.y, probe.mask)[0]
    expected, pairs = metrics.interference_matrix(G, probe.task, 2)
    np.testing.assert_allclose(i.matrix[-1], expected, rtol=1e-12)
    np.testing.assert_array_equal(i.matrix_pairs[-1], pairs)
    assert i.matrix.shape == (3, 2, 2)


def test_stored_arrays(tiny):
    history = tiny("mlp", "eval.interference=true").run()[0].records.get("update_probe")
    arrays = history.arrays()
    assert arrays["loss"].dtype == np.float32 and arrays["predicted"].dtype == np.float32
    assert arrays["correct"].dtype == bool and bool(arrays["interference"])
    R, P = history.correct.shape
    assert arrays["predicted"].shape == arrays["measured"].shape == (R - 1, P)
    assert arrays["task_cosine"].shape == (R - 1, 2)
    without = tiny("mlp").run()[0].records.get("update_probe").arrays()
    assert not bool(without["interference"]) and "predicted" not in without


@pytest.mark.parametrize(
    "overrides,key",
    [
        (("eval.interference=true",), "eval.interference"),
        (("eval.probe_every=1", "eval.update_probe_per_task=0"), "eval.update_probe_per_task"),
        (("eval.probe_every=-1",), "eval.probe_every"),
    ],
)
def test_bad_probe_settings_name_the_key(compose_cfg, overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate(compose_cfg(*overrides))


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["mlp", "tbptt_stream"])
def test_each_member_of_an_ensemble_has_the_probe_history_of_its_config_alone(compose_cfg, learner):
    from forgetlab.assembly import build_ensemble_trainer

    cfgs = [compose_cfg(*TINY, *LEARNERS[learner], "eval.probe_every=1", "eval.interference=true", f"seed={s}",
                        f"algorithm.lr={lr}") for s, lr in ((0, 0.3), (1, 0.1))]
    ensemble = build_ensemble_trainer(cfgs).run()
    for cfg, member in zip(cfgs, ensemble):
        (alone,) = build_trainer(cfg).run()
        a, b = member.records.get("update_probe").arrays(), alone.records.get("update_probe").arrays()
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
