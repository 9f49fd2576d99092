"""Delayed recall: the cue, the delay, the recall step, the tasks, and why truncation matters."""

import numpy as np
import pytest

from forgetlab.data import build_task_sequence, delayed_recall
from forgetlab.assembly import build_trainer


def test_each_sequence_is_a_cue_then_distractors_then_the_recall_flag():
    seq = delayed_recall.delayed_recall(n_tasks=5, delay=4, n_symbols=10, noise=1.0, samples_per_symbol=20)
    assert seq.input_shape == (6, 21) == delayed_recall.sequence_shape(4, 10)
    for t in seq.tasks:
        for x, y in ((t.x_train, t.y_train), (t.x_test, t.y_test)):
            cue = x[:, 0]
            np.testing.assert_array_equal(cue[:, :10], np.eye(10)[y])  # the symbol, one-hot, at step 0 only
            assert not cue[:, 10:].any()
            delay = x[:, 1:-1]
            assert not delay[:, :, :10].any() and not delay[:, :, -1].any()
            assert delay[:, :, 10:20].std() > 0.5  # the distractors
            np.testing.assert_array_equal(x[:, -1, -1], 1.0)
            assert not x[:, -1, :-1].any()
    assert [list(t.classes) for t in seq.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_samples_and_split_are_fixed_by_data_seed_and_stratified():
    a = delayed_recall.delayed_recall(data_seed=3, samples_per_symbol=40)
    b = delayed_recall.delayed_recall(data_seed=3, samples_per_symbol=40)
    c = delayed_recall.delayed_recall(data_seed=4, samples_per_symbol=40)
    np.testing.assert_array_equal(a.tasks[2].x_train, b.tasks[2].x_train)
    assert not np.array_equal(a.tasks[2].x_train, c.tasks[2].x_train)
    for t in a.tasks:  # 40 per symbol, test_size=0.25: 30 / 10 of each
        np.testing.assert_array_equal(np.unique(t.y_train, return_counts=True)[1], [30, 30])
        np.testing.assert_array_equal(np.unique(t.y_test, return_counts=True)[1], [10, 10])


def test_more_tasks_than_symbols_is_refused():
    with pytest.raises(ValueError, match="n_tasks <= n_symbols"):
        delayed_recall.delayed_recall(n_tasks=3, n_symbols=2)


def test_config_builds_sequences_only(compose_cfg):
    cfg = compose_cfg("task_sequence=delayed_recall", "learner=rnn_bptt_epochwise", "task_sequence.delay=3")
    seq = build_task_sequence(cfg.task_sequence)
    assert seq.input_shape == (5, 21) and seq.n_tasks == 5
    vector = compose_cfg("task_sequence=delayed_recall", "task_sequence.input=vector").task_sequence
    with pytest.raises(ValueError, match="delayed_recall"):
        build_task_sequence(vector)


def final_accuracy(compose_cfg, learner_overrides: list[str], seeds: range) -> list[float]:
    """Test accuracy after joint training on one task of 2 symbols (chance 0.5) for each seed."""
    cfg = compose_cfg(
        "task_sequence=delayed_recall", "task_sequence.n_symbols=2", "task_sequence.n_tasks=1",
        "task_sequence.delay=10", "task_sequence.samples_per_symbol=100", "network.hidden_size=16",
        "trainer.epochs_per_task=5", "eval.every_samples=0", "eval.probe_per_task=0", "tracking.enabled=false",
        *learner_overrides,
    )
    accuracy = []
    for seed in seeds:
        cfg.seed = seed
        accuracy.append(float(build_trainer(cfg).run()[0].accuracy_matrix[-1, 0]))
    return accuracy


def test_epochwise_bptt_learns_the_recall_and_bptt_1_1_stays_at_chance(compose_cfg):
    # 150 training sequences of 12 steps, 5 epochs, 16 units; 50 test sequences per run.
    seeds = range(3)
    full = final_accuracy(compose_cfg, ["learner=rnn_bptt_epochwise"], seeds)
    truncated = final_accuracy(
        compose_cfg, ["learner=rnn_bptt_truncated", "algorithm.h=1", "algorithm.h_prime=1"], seeds
    )
    assert np.mean(full) >= 0.9, full
    assert np.mean(truncated) <= 0.6, truncated
