"""The metrics of forgetlab.metrics against matrices and probes computed by hand (docs/metrics.md)."""

import numpy as np
import pytest

from forgetlab import metrics as M

nan = float("nan")

# R[i, j]: accuracy on task j after training task i. Task 0 gains after task 1 (0.9 -> 0.95) before
# it is forgotten, and task 1 scores 0.85 before it is trained: the two forgetting conventions differ.
R3 = np.array(
    [
        [0.90, 0.85, 0.00],
        [0.95, 0.80, 0.20],
        [0.30, 0.60, 0.70],
    ]
)
R3_INIT = np.array([0.1, 0.2, 0.3])


def test_task_metrics_on_a_hand_computed_matrix():
    assert M.average_accuracy(R3) == pytest.approx((0.3 + 0.6 + 0.7) / 3)
    assert M.backward_transfer(R3) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)  # -0.4: lost accuracy
    assert M.forward_transfer(R3, R3_INIT) == pytest.approx(((0.85 - 0.2) + (0.2 - 0.3)) / 2)
    assert M.forgetting_max(R3) == pytest.approx(((0.95 - 0.3) + (0.85 - 0.6)) / 2)  # RWalk: 0.45
    assert M.forgetting_after_training(R3) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.6)) / 2)  # Avalanche: 0.4
    assert M.learning_accuracy(R3) == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert M.intransigence(R3, np.array([0.95, 0.9, 0.8])) == pytest.approx((0.05 + 0.1 + 0.1) / 3)


def test_signs_forgetting_positive_bwt_negative_and_the_reverse_when_accuracy_grows():
    forgetting = np.array([[0.9, 0.0], [0.4, 0.9]])
    assert M.backward_transfer(forgetting) == pytest.approx(-0.5)
    assert M.forgetting_after_training(forgetting) == pytest.approx(0.5)
    assert M.forgetting_max(forgetting) == pytest.approx(0.5)
    improving = np.array([[0.5, 0.0], [0.7, 0.9]])
    assert M.backward_transfer(improving) == pytest.approx(0.2)
    assert M.forgetting_after_training(improving) == pytest.approx(-0.2)
    assert M.forgetting_max(improving) == pytest.approx(-0.2)


def test_avalanche_forgetting_is_minus_bwt_and_rwalk_forgetting_bounds_it():
    rng = np.random.default_rng(0)
    for T in range(2, 7):
        R = rng.uniform(size=(T, T))
        assert M.forgetting_after_training(R) == pytest.approx(-M.backward_transfer(R), abs=1e-15)
        assert M.forgetting_max(R) >= M.forgetting_after_training(R) - 1e-15
    # equal when the diagonal is the best earlier accuracy of every column
    R = np.array([[0.9, 0.1, 0.1], [0.5, 0.8, 0.1], [0.2, 0.3, 0.9]])
    assert M.forgetting_max(R) == pytest.approx(M.forgetting_after_training(R))
    assert M.forgetting_max(R3) > M.forgetting_after_training(R3)


def test_one_task():
    R = np.array([[0.8]])
    assert M.average_accuracy(R) == pytest.approx(0.8)
    assert M.learning_accuracy(R) == pytest.approx(0.8)
    assert M.intransigence(R, np.array([0.9])) == pytest.approx(0.1)
    for value in (
        M.backward_transfer(R), M.forward_transfer(R, np.array([0.1])),
        M.forgetting_max(R), M.forgetting_after_training(R),
    ):
        assert np.isnan(value)


def test_never_evaluated_entries_leave_their_terms_out():
    R = R3.copy()
    R[1, 0] = nan  # only the RWalk max looks at it: the max runs over the evaluated rows
    assert M.forgetting_max(R) == pytest.approx(((0.9 - 0.3) + (0.85 - 0.6)) / 2)
    assert M.backward_transfer(R) == pytest.approx(M.backward_transfer(R3))
    R = R3.copy()
    R[0, 0] = nan  # task 0 has no "right after training" value: its BWT/F_after term is dropped
    assert M.backward_transfer(R) == pytest.approx(0.6 - 0.8)
    assert M.forgetting_after_training(R) == pytest.approx(-M.backward_transfer(R))
    assert M.learning_accuracy(R) == pytest.approx((0.8 + 0.7) / 2)
    R = R3.copy()
    R[2, 1] = nan
    assert M.average_accuracy(R) == pytest.approx((0.3 + 0.7) / 2)
    assert M.backward_transfer(R) == pytest.approx(0.3 - 0.9)
    assert np.isnan(M.average_accuracy(np.full((2, 2), nan)))
    assert np.isnan(M.backward_transfer(np.full((2, 2), nan)))
    assert np.isnan(M.forgetting_max(np.full((2, 2), nan)))


def test_a_non_square_matrix_is_refused_where_tasks_must_match_rows():
    joint = np.array([[0.9, 0.8, 0.7]])  # one stage (joint): ACC only
    assert M.average_accuracy(joint) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="square"):
        M.backward_transfer(joint)


# A probe of E = 5 evaluation points and P = 4 samples; updates run at half the sample rate.
SEEN = np.array([0, 10, 20, 30, 40])
UPDATES = np.array([0, 5, 10, 15, 20])
CORRECT = np.array(
    [  # p0 p1 p2 p3
        [0, 1, 1, 0],
        [1, 0, 1, 0],
        [0, 1, 0, 0],
        [1, 1, 1, 0],
        [0, 1, 0, 0],
    ],
    dtype=bool,
)
PRESENTED = np.array([[3, -1], [12, 25], [-1, -1], [30, -1]])  # p2 is never presented


def test_flips_to_wrong_and_to_correct_count_transitions_from_the_first_presentation_on():
    forgot, learned = M.transition_counts(CORRECT, SEEN, PRESENTED)
    # p0: window from point 1 (first >= 3): 1 0 1 0; p1: from point 2: 1 1 1; p3: from point 3: 0 0
    np.testing.assert_array_equal(forgot, [2, 0, nan, 0])
    np.testing.assert_array_equal(learned, [1, 0, nan, 0])
    np.testing.assert_array_equal(M.flips_to_wrong(CORRECT, SEEN, PRESENTED), forgot)


def test_unforgettable_and_never_learned_fractions_over_presented_samples():
    fractions = M.sample_fractions(CORRECT, SEEN, PRESENTED)
    assert fractions["unforgettable"] == pytest.approx(1 / 3)  # p1
    assert fractions["never_learned"] == pytest.approx(1 / 3)  # p3


def test_retention_curve_conditions_on_correct_right_after_the_last_presentation():
    # p0: last presentation 3, anchor point 1 (correct); later: lag 17 -> 0, 27 -> 1, 37 -> 0.
    # p1: last presentation 25, anchor point 3 (correct); later: lag 15 -> 1.
    # p3: anchor point 3 is wrong: not counted. p2: never presented.
    fraction, pairs = M.retention_curve(CORRECT, SEEN, PRESENTED, bin_edges=[0, 16, 30, 40])
    np.testing.assert_array_equal(pairs, [1, 2, 1])
    np.testing.assert_allclose(fraction, [1.0, 0.5, 0.0])
    fraction, pairs = M.retention_curve(CORRECT, SEEN, PRESENTED, bin_edges=[0, 5, 10])
    np.testing.assert_array_equal(pairs, [0, 0])
    assert np.isnan(fraction).all()


def test_accuracy_drop_per_update_uses_samples_presented_before_and_not_during_the_interval():
    drop, u, size = M.interval_accuracy_drops(CORRECT, SEEN, UPDATES, PRESENTED)
    # (0,10]: nothing presented before 0. (10,20]: {p0} 1 -> 0. (20,30]: p1 and p3 are presented
    # during it, so {p0} 0 -> 1. (30,40]: {p0, p1, p3}: p0 1 -> 0, p1 stays, p3 stays.
    np.testing.assert_array_equal(size, [0, 1, 1, 3])
    np.testing.assert_allclose(drop, [nan, 1.0, -1.0, 1 / 3])
    np.testing.assert_array_equal(u, [5, 5, 5, 5])
    assert M.accuracy_drop_per_update(CORRECT, SEEN, UPDATES, PRESENTED) == pytest.approx((1 - 1 + 1 / 3) / 15)
    # per update, not per sample: twice the updates for the same samples halve it
    assert M.accuracy_drop_per_update(CORRECT, SEEN, 2 * UPDATES, PRESENTED) == pytest.approx((1 / 3) / 30)


def test_empty_probe_gives_nan_not_an_error():
    correct = np.zeros((5, 0), dtype=bool)
    presented = np.zeros((0, 0), dtype=np.int64)
    forgot, learned = M.transition_counts(correct, SEEN, presented)
    assert forgot.shape == learned.shape == (0,)
    fractions = M.sample_fractions(correct, SEEN, presented)
    assert np.isnan(fractions["unforgettable"]) and np.isnan(fractions["never_learned"])
    fraction, pairs = M.retention_curve(correct, SEEN, presented, bin_edges=[0, 10, 20])
    assert np.isnan(fraction).all() and (pairs == 0).all()
    assert np.isnan(M.accuracy_drop_per_update(correct, SEEN, UPDATES, presented))


def test_samples_never_presented_are_left_out_everywhere():
    presented = np.full((4, 1), -1)
    assert np.isnan(M.flips_to_wrong(CORRECT, SEEN, presented)).all()
    assert np.isnan(M.sample_fractions(CORRECT, SEEN, presented)["unforgettable"])
    assert (M.retention_curve(CORRECT, SEEN, presented, [0, 100])[1] == 0).all()
    assert np.isnan(M.accuracy_drop_per_update(CORRECT, SEEN, UPDATES, presented))


def test_normalized_bwt_is_the_share_of_what_was_learned_above_chance_that_was_lost():
    chance = np.array([0.5, 0.5, 0.5])
    assert M.normalized_backward_transfer(R3, chance) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / ((0.9 - 0.5) + (0.8 - 0.5)))
    back_to_chance = np.array([[0.9, 0.5], [0.5, 0.9]])
    assert M.normalized_backward_transfer(back_to_chance, np.array([0.5, 0.5])) == pytest.approx(-1.0)
    kept = np.array([[0.9, 0.5], [0.9, 0.9]])
    assert M.normalized_backward_transfer(kept, np.array([0.5, 0.5])) == 0.0
    # BWT rewards not learning (0 lost of nothing learned); the normalised BWT does not score it at all
    learned_nothing = np.array([[0.5, 0.5], [0.5, 0.9]])
    assert M.backward_transfer(learned_nothing) == 0.0
    assert np.isnan(M.normalized_backward_transfer(learned_nothing, np.array([0.5, 0.5])))
    assert np.isnan(M.normalized_backward_transfer(np.array([[0.4, 0.5], [0.3, 0.9]]), np.array([0.5, 0.5])))
    # the same loss of accuracy weighs more for a learner that learned less
    little = np.array([[0.6, 0.5], [0.5, 0.9]])
    much = np.array([[1.0, 0.5], [0.9, 0.9]])
    assert M.backward_transfer(little) == pytest.approx(M.backward_transfer(much))
    assert M.normalized_backward_transfer(little, np.array([0.5, 0.5])) == pytest.approx(-1.0)
    assert M.normalized_backward_transfer(much, np.array([0.5, 0.5])) == pytest.approx(-0.2)
    assert np.isnan(M.normalized_backward_transfer(np.array([[0.8]]), np.array([0.5])))
    with pytest.raises(ValueError, match="one entry per task"):
        M.normalized_backward_transfer(R3, np.array([0.5, 0.5]))


def test_chance_is_one_over_the_active_output_units_of_each_task():
    from forgetlab.data import Scenario, build_task_sequence
    from forgetlab.config import as_config, compose

    sequence = build_task_sequence(as_config(compose(["task_sequence=split_digits"])).task_sequence)
    expected = {"task": 0.5, "domain": 0.5, "class": 0.1}
    for scenario, chance in expected.items():
        np.testing.assert_array_equal(Scenario(scenario, sequence).chance(), np.full(len(sequence.tasks), chance))
