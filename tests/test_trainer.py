import math

import numpy as np
import pytest

from forgetlab import metrics
from forgetlab.contract import final_metrics
from forgetlab.assembly import build_trainer
from forgetlab.trainer import Callback


@pytest.fixture
def small(compose_cfg):
    def make(*overrides):
        cfg = compose_cfg("tracking.enabled=false", "trainer.epochs_per_task=1", *overrides)
        return build_trainer(cfg)

    return make


def test_schedule_boundaries_and_counters(small):
    trainer = small("eval.every_samples=50")
    (result,) = trainer.run()
    boundaries = [p for p in result.points if p.boundary]
    assert len(boundaries) == 6  # init + 5 tasks
    assert boundaries[0].samples_seen == 0 and boundaries[0].stage == -1
    sizes = np.cumsum([t.n_train for t in trainer.sequence.tasks])
    assert [p.samples_seen for p in boundaries[1:]] == list(sizes)
    steps = [p.samples_seen for p in result.points]
    assert steps == sorted(set(steps)), "one point per step, in order"
    assert all(p.updates == p.samples_seen for p in result.points)  # per-sample backprop
    assert result.accuracy_matrix.shape == (6, 5)


def test_evaluation_matches_a_per_sample_loop(small):
    trainer = small()
    scores = trainer.evaluator.evaluate(trainer.network)
    net, sc = trainer.network, trainer.scenario
    for k, task in enumerate(trainer.sequence.tasks):
        y, mask, unit = sc.targets(task.y_test, np.full(len(task.y_test), k))
        outputs = [net.predict(x[None], m[None])[0, 0] for x, m in zip(task.x_test, mask)]
        hits = [np.argmax(np.where(m > 0, a, -np.inf)) == u for a, m, u in zip(outputs, mask, unit)]
        assert scores.accuracy[0, k] == pytest.approx(np.mean(hits))
        losses = [net.data_loss(x[None], t[None], m[None])[0] for x, t, m in zip(task.x_test, y, mask)]
        assert scores.loss[0, k] == pytest.approx(np.mean(losses))
    probe = trainer.probe
    assert scores.probe_correct.shape == scores.probe_loss.shape == (1, 100)
    for p in (0, 57, 99):
        x = trainer.sequence.tasks[probe.task[p]].x_train[probe.index[p]]
        y, mask, unit = sc.targets(probe.label[p : p + 1], probe.task[p : p + 1])
        a = net.predict(x[None], mask)[0, 0]
        assert scores.probe_correct[0, p] == (np.argmax(np.where(mask[0] > 0, a, -np.inf)) == unit[0])
        assert scores.probe_loss[0, p] == pytest.approx(net.data_loss(x[None], y, mask)[0])


def test_scheduled_points_are_the_first_batch_ends_past_each_multiple(small):
    """With batches of 7 and a point every 10 samples, a point comes after the first batch that reaches
    each multiple of 10 (one point for several multiples in one batch), except where the stage's
    boundary point stands."""
    trainer = small("eval.every_samples=10", "trainer.batch_size=7")
    (result,) = trainer.run()
    expected, start = [], 0
    for task in trainer.sequence.tasks:
        end = start + task.n_train
        batch_ends = [min(b, end) for b in range(start + 7, end + 7, 7)]
        multiples = range(start - start % 10 + 10, end, 10)
        expected += sorted({min(b for b in batch_ends if b >= m) for m in multiples} - {end})
        start = end
    assert [p.samples_seen for p in result.points if not p.boundary] == expected


def test_probe_presentations_are_recorded(small):
    trainer = small("trainer.epochs_per_task=2")
    (result,) = trainer.run()
    assert result.presented_at.shape == (100, 2)
    assert (result.presented_at > 0).all()
    # a probe sample of task k is presented while task k trains
    ends = np.cumsum([2 * t.n_train for t in trainer.sequence.tasks])
    starts = np.concatenate([[0], ends[:-1]])
    for task, times in zip(result.probe.task, result.presented_at):
        assert (times > starts[task]).all() and (times <= ends[task]).all()


def test_same_seed_same_numbers_other_seed_other_numbers(small):
    a = small("seed=3").run()[0].accuracy_matrix
    b = small("seed=3").run()[0].accuracy_matrix
    c = small("seed=4").run()[0].accuracy_matrix
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_joint_has_one_stage_and_stream_is_single_pass(small):
    (joint,) = small("task_sequence.joint=true", "trainer.epochs_per_task=2").run()
    assert joint.accuracy_matrix.shape == (2, 5)
    stream = small("task_sequence=digit_stream", "trainer.epochs_per_task=3")
    (result,) = stream.run()
    assert result.points[-1].samples_seen == sum(t.n_train for t in stream.sequence.tasks)


def test_class_incremental_collapses_but_joint_does_not(compose_cfg):
    seq = build_trainer(compose_cfg("tracking.enabled=false")).run()[0].accuracy_matrix
    joint = build_trainer(compose_cfg("tracking.enabled=false", "task_sequence.joint=true")).run()[0].accuracy_matrix
    assert final_metrics(seq)["final/acc"] < 0.3
    assert final_metrics(seq)["final/forgetting"] > 0.9
    assert final_metrics(joint)["final/acc"] > 0.9


def test_final_metrics_follow_the_contract():
    R = np.array([[0.1, 0.1, 0.1], [0.9, 0.2, 0.0], [0.6, 0.8, 0.3], [0.3, 0.5, 0.9]])
    final = final_metrics(R)
    assert final["final/acc"] == pytest.approx((0.3 + 0.5 + 0.9) / 3)
    assert final["final/bwt"] == pytest.approx(((0.3 - 0.9) + (0.5 - 0.8)) / 2)
    assert final["final/fwt"] == pytest.approx(((0.2 - 0.1) + (0.3 - 0.1)) / 2)
    assert final["final/forgetting"] == pytest.approx(((0.9 - 0.3) + (0.8 - 0.5)) / 2)
    assert math.isnan(metrics.backward_transfer(R[1:2, :1]))  # no earlier task for T = 1


def test_a_scheduled_point_on_a_boundary_is_logged_once(small):
    trainer = small("eval.every_samples=1")  # every sample: the last one of each task is also a boundary
    seen = []
    class Spy(Callback):
        def on_eval(self, trainer, points):
            seen.append((points[0].samples_seen, points[0].boundary))

    trainer.callbacks.append(Spy())
    trainer.run()
    steps = [s for s, _ in seen]
    assert len(steps) == len(set(steps))
    ends = set(np.cumsum([t.n_train for t in trainer.sequence.tasks]))
    assert {s for s, b in seen if b} == ends | {0}


def test_probe_presentation_times_are_the_batches_that_held_the_sample(small):
    """With mini-batches that do not divide the task, each probe sample's recorded times are the
    samples_seen right after the batches the algorithm was actually handed it in."""
    trainer = small("trainer.epochs_per_task=2", "trainer.batch_size=7")
    algorithm, handed, seen = trainer.algorithm, [], [0]

    def learn(x, y, mask):  # x (1 member, B, n_in)
        seen.append(seen[-1] + x.shape[1])
        handed.append((x[0].copy(), seen[-1]))
        return type(algorithm).learn(algorithm, x, y, mask)

    algorithm.learn = learn
    (result,) = trainer.run()
    tasks, probe = trainer.sequence.tasks, result.probe
    checked = 0
    for p, (k, i) in enumerate(zip(probe.task, probe.index)):
        image = tasks[k].x_train[i]
        if (tasks[k].x_train == image).all(axis=1).sum() > 1:
            continue  # a duplicate image in the task: its batches are ambiguous
        expected = [end for x, end in handed if (x == image).all(axis=1).any()]
        assert list(result.presented_at[p]) == expected
        checked += 1
    assert checked > 90
