"""Update-resolution metrics of forgetlab.metrics on probe histories worked out by hand
(docs/metrics.md, "Update resolution"), and against brute-force loops on random histories."""

import numpy as np
import pytest

from forgetlab import metrics as M

nan = float("nan")
T_, F_ = True, False

# U = 4 updates, rows 0..4. Probe samples:
#   p0 presented at update 1: correct right after, wrong one update later, correct again after.
#   p1 presented at update 2: stays correct to the end (censored).
#   p2 presented at updates 1 and 3: its first anchor sees one update before it is trained again;
#      its second anchor is wrong right after the presentation (not learned).
#   p3 never presented: left out of everything.
CORRECT = np.array(
    [
        # p0  p1  p2  p3
        [F_, F_, F_, T_],  # row 0, before training
        [T_, F_, T_, T_],  # after update 1
        [F_, T_, T_, T_],  # 2
        [T_, T_, F_, T_],  # 3
        [T_, T_, F_, T_],  # 4
    ]
)
PRESENTED = np.array([[1, -1], [2, -1], [1, 3], [-1, -1]])
LOSS = np.array(
    [
        [0.9, 0.9, 0.9, 0.1],
        [0.2, 0.8, 0.3, 0.1],
        [0.6, 0.3, 0.4, 0.1],
        [0.3, 0.1, 0.7, 0.1],
        [0.1, 0.2, 0.5, 0.1],
    ]
)


def test_anchors_and_horizons():
    a = M.presentation_anchors(PRESENTED, n_updates=4)
    # (p, u, h): p2 is trained again at update 3, so its first anchor observes only lag 1
    assert list(zip(a.sample, a.update, a.horizon)) == [(0, 1, 3), (1, 2, 2), (2, 1, 1), (2, 3, 1)]


def test_retention_and_erasure_by_hand():
    retention, pairs = M.retention_by_updates(CORRECT, PRESENTED, [0, 1, 2, 3, 4])
    # learned anchors: (p0, 1), (p1, 2), (p2, 1); (p2, 3) is wrong right after its presentation
    np.testing.assert_array_equal(pairs, [3, 3, 2, 1, 0])
    np.testing.assert_allclose(retention, [1.0, 2 / 3, 1.0, 1.0, nan])
    erasure, erasure_pairs = M.erasure_after_updates(CORRECT, PRESENTED, [1, 2, 3, 4, 1000])
    np.testing.assert_allclose(erasure, [1 / 3, 0.0, 0.0, nan, nan])  # p0 is erased by the next update
    np.testing.assert_array_equal(erasure_pairs, [3, 2, 1, 0, 0])


def test_loss_change_counts_every_anchor():
    change, pairs = M.loss_change_after_updates(LOSS, PRESENTED, [1, 2, 3])
    # lag 1: p0 0.2 -> 0.6, p1 0.3 -> 0.1, p2@1 0.3 -> 0.4, p2@3 0.7 -> 0.5
    np.testing.assert_array_equal(pairs, [4, 2, 1])
    np.testing.assert_allclose(change, [(0.4 - 0.2 + 0.1 - 0.2) / 4, (0.1 - 0.1) / 2, -0.1])


def test_time_to_forget_and_survival_by_hand():
    times = M.time_to_forget(CORRECT, PRESENTED)
    np.testing.assert_array_equal(times.sample, [0, 1, 2])
    np.testing.assert_array_equal(times.update, [1, 2, 1])
    np.testing.assert_array_equal(times.time, [1, 2, 1])  # p0 wrong after 1 update; p1, p2 never seen wrong
    np.testing.assert_array_equal(times.censored, [False, True, True])
    # Kaplan-Meier: 3 at risk at k = 1 (the one censored there counts), 1 event -> 2/3; no event at 2;
    # beyond the longest observation (censored at 2) S is not identified.
    np.testing.assert_allclose(M.survival_after_updates(times, [0, 1, 2, 3]), [1.0, 2 / 3, 2 / 3, nan])


def test_survival_edge_cases():
    none = M.ForgetTimes(*(np.array([], dtype=int) for _ in range(3)), np.array([], dtype=bool))
    assert np.isnan(M.survival_after_updates(none, [1, 10])).all()
    never_wrong = M.ForgetTimes(np.array([0, 1]), np.array([1, 1]), np.array([5, 3]), np.array([True, True]))
    np.testing.assert_allclose(M.survival_after_updates(never_wrong, [1, 5, 6]), [1.0, 1.0, nan])
    all_wrong = M.ForgetTimes(np.array([0, 1]), np.array([1, 1]), np.array([1, 2]), np.array([False, False]))
    np.testing.assert_allclose(M.survival_after_updates(all_wrong, [0, 1, 2, 50]), [1.0, 0.5, 0.0, 0.0])


def test_no_eligible_pair_is_nan_with_count_zero():
    correct = np.zeros((3, 2), dtype=bool)
    never = np.full((2, 1), -1)
    for fn in (M.erasure_after_updates, M.retention_by_updates):
        value, pairs = fn(correct, never, [1, 10])
        assert np.isnan(value).all() and (pairs == 0).all()
    change, pairs = M.loss_change_after_updates(np.zeros((3, 2)), never, [1])
    assert np.isnan(change).all() and (pairs == 0).all()
    # presented but never correct right after: no erasure pair, but the loss change is defined
    presented = np.array([[1], [2]])
    value, pairs = M.erasure_after_updates(correct, presented, [1])
    assert np.isnan(value[0]) and pairs[0] == 0
    # ... for p0; p1, presented at the last update, observes no later row
    assert M.loss_change_after_updates(np.zeros((3, 2)), presented, [1])[1][0] == 1
    assert M.time_to_forget(correct, presented).time.size == 0
    mean, counted = M.flips_to_wrong_by_interval(correct, never, [1])
    assert np.isnan(mean[0]) and counted[0] == 0


def test_flips_to_wrong_depend_on_the_evaluation_interval():
    # p0 presented at update 1, U = 8; evaluated every update it is forgotten twice (2->3, 5->6);
    # every 2 updates (rows 0, 2, 4, 6, 8: T F F T from row 2) once; every 3 (rows 3, 6: F F) never.
    # p1 is presented at update 8: every 3 updates no row follows, so it has no window there.
    correct = np.array(
        [[F_, T_, T_, F_, F_, T_, F_, F_, T_], [F_, F_, F_, F_, F_, F_, F_, T_, T_]]
    ).T
    presented = np.array([[1], [8]])
    mean, counted = M.flips_to_wrong_by_interval(correct, presented, [1, 2, 3])
    np.testing.assert_array_equal(counted, [2, 2, 1])
    np.testing.assert_allclose(mean, [(2 + 0) / 2, (1 + 0) / 2, 0.0])


def test_invalid_presentations_are_refused():
    correct = np.zeros((4, 1), dtype=bool)
    with pytest.raises(ValueError, match="in \\[1, 3\\]"):
        M.erasure_after_updates(correct, np.array([[4]]))
    with pytest.raises(ValueError, match="in \\[1, 3\\]"):
        M.erasure_after_updates(correct, np.array([[0]]))  # row 0 is before any update
    with pytest.raises(ValueError, match="strictly increasing"):
        M.erasure_after_updates(correct, np.array([[2, 2]]))
    with pytest.raises(ValueError, match="padding at the end"):
        M.erasure_after_updates(correct, np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="correct must be"):
        M.erasure_after_updates(np.zeros((4, 2), dtype=bool), np.array([[1]]))
    with pytest.raises(ValueError, match="lags must be >= 0"):
        M.retention_by_updates(correct, np.array([[1]]), [-1])
    with pytest.raises(ValueError, match="intervals must be >= 1"):
        M.flips_to_wrong_by_interval(correct, np.array([[1]]), [0])


# --- against brute force on random histories -----------------------------------------------


def random_history(seed, U=60, P=7, max_presentations=3):
    rng = np.random.default_rng(seed)
    correct = rng.random((U + 1, P)) < 0.7
    loss = rng.random((U + 1, P))
    presented = np.full((P, max_presentations), -1)
    for p in range(P - 1):  # the last sample is never presented
        n = rng.integers(1, max_presentations + 1)
        presented[p, :n] = np.sort(rng.choice(np.arange(1, U + 1), size=n, replace=False))
    return correct, loss, presented


def brute_anchors(presented, U):
    for p, row in enumerate(presented):
        us = [u for u in row if u >= 0]
        for j, u in enumerate(us):
            following = us[j + 1] if j + 1 < len(us) else U + 1
            yield p, u, min(following - 1, U) - u


@pytest.mark.parametrize("seed", range(5))
def test_update_metrics_match_brute_force(seed):
    correct, loss, presented = random_history(seed)
    U = correct.shape[0] - 1
    lags = [0, 1, 2, 5, 17, 59, 60, 61]
    anchors = list(brute_anchors(presented, U))
    retention, pairs = M.retention_by_updates(correct, presented, lags)
    change, change_pairs = M.loss_change_after_updates(loss, presented, lags)
    for i, k in enumerate(lags):
        kept = [correct[u + k, p] for p, u, h in anchors if correct[u, p] and k <= h]
        assert pairs[i] == len(kept)
        assert retention[i] == pytest.approx(np.mean(kept)) if kept else np.isnan(retention[i])
        deltas = [loss[u + k, p] - loss[u, p] for p, u, h in anchors if k <= h]
        assert change_pairs[i] == len(deltas)
        assert change[i] == pytest.approx(np.mean(deltas)) if deltas else np.isnan(change[i])
    erasure, _ = M.erasure_after_updates(correct, presented, lags)
    np.testing.assert_allclose(erasure, 1 - retention)

    times = M.time_to_forget(correct, presented)
    expected = []
    for p, u, h in anchors:
        if correct[u, p]:
            wrong = [k for k in range(1, h + 1) if not correct[u + k, p]]
            expected.append((p, u, wrong[0], False) if wrong else (p, u, h, True))
    assert list(zip(times.sample, times.update, times.time, times.censored)) == expected



@pytest.mark.parametrize("seed", range(3))
def test_survival_without_censoring_is_the_fraction_correct_throughout(seed):
    # One presentation each, in the first half: every anchor observes every lag up to 30, so no
    # anchor is censored before k and Kaplan-Meier is the plain fraction correct at all of u+1..u+k,
    # at most the fraction correct at u+k alone (retention).
    rng = np.random.default_rng(seed)
    correct = rng.random((61, 8)) < 0.85
    presented = rng.integers(1, 31, size=(8, 1))
    lags = np.array([1, 2, 5, 30])
    times = M.time_to_forget(correct, presented)
    learned = [(p, u) for p, u in zip(range(8), presented[:, 0]) if correct[u, p]]
    expected = [np.mean([correct[u + 1 : u + k + 1, p].all() for p, u in learned]) for k in lags]
    survival = M.survival_after_updates(times, lags)
    np.testing.assert_allclose(survival, expected)
    assert np.all(survival <= M.retention_by_updates(correct, presented, lags)[0] + 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_coarser_evaluation_never_sees_more_flips_to_wrong(seed):
    correct, _, presented = random_history(seed, U=200, max_presentations=1)
    rows = np.arange(201)
    per_update = M.flips_to_wrong(correct, rows, presented)
    for s in (2, 10, 100):
        coarse = M.flips_to_wrong(correct[rows[::s]], rows[::s], presented)
        seen = np.isfinite(coarse)
        assert np.all(coarse[seen] <= per_update[seen])
    mean, _ = M.flips_to_wrong_by_interval(correct, presented, [1, 10, 100])
    assert mean[0] >= mean[1] >= mean[2]
    assert mean[0] > mean[2]  # a random history forgets often between evaluations 100 updates apart


# --- gradient interference -----------------------------------------------------------------


def test_predicted_loss_change_is_minus_lr_times_the_inner_product():
    G = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    np.testing.assert_allclose(M.predicted_loss_change(G, np.array([3.0, 4.0]), lr=0.1), [-0.3, -0.8, 0.1])
    batch = M.predicted_loss_change(G, np.array([[3.0, 4.0], [1.0, 0.0]]), lr=0.1)
    np.testing.assert_allclose(batch, [[-0.3, -0.8, 0.1], [-0.1, 0.0, -0.1]])


def test_first_order_agreement():
    predicted = np.array([-1.0, 0.5, 2.0, -0.25])
    perfect = M.first_order_agreement(predicted, 2 * predicted)
    assert perfect["correlation"] == pytest.approx(1.0) and perfect["slope"] == pytest.approx(2.0)
    assert perfect["n"] == 4
    opposite = M.first_order_agreement(predicted, -0.5 * predicted)
    assert opposite["correlation"] == pytest.approx(-1.0) and opposite["slope"] == pytest.approx(-0.5)
    # least squares through the origin, by hand: sum(p m) / sum(p^2) = (1*1 + 2*3) / (1 + 4)
    fit = M.first_order_agreement(np.array([1.0, 2.0, nan]), np.array([1.0, 3.0, 5.0]))
    assert fit["slope"] == pytest.approx(7 / 5) and fit["n"] == 2 and fit["correlation"] == pytest.approx(1.0)
    flat = M.first_order_agreement(np.zeros(3), np.array([1.0, 2.0, 3.0]))
    assert np.isnan(flat["correlation"]) and np.isnan(flat["slope"])
    empty = M.first_order_agreement(np.array([]), np.array([]))
    assert empty["n"] == 0 and np.isnan(empty["correlation"])


def test_cosine_traces():
    updates = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -2.0], [0.0, 0.0], [3.0, 3.0]])
    np.testing.assert_allclose(M.consecutive_update_cosines(updates), [nan, 0.0, -1.0, nan, nan])
    task_gradients = np.array([[1.0, 0.0], [0.0, 1.0]])
    update_task = np.array([0, 1, 1, 1, 1])
    c = M.cosine_to_earlier_tasks(updates, task_gradients, update_task)
    expected = np.array([[nan, nan], [0.0, nan], [0.0, nan], [nan, nan], [np.sqrt(0.5), nan]])
    np.testing.assert_allclose(c, expected)
    # task gradients taken at each update's weights: (U, T, n)
    per_update = np.broadcast_to(task_gradients, (5, 2, 2)).copy()
    per_update[4, 0] = [-1.0, 0.0]
    c = M.cosine_to_earlier_tasks(updates, per_update, np.full(5, 2))
    assert c[4, 0] == pytest.approx(-np.sqrt(0.5)) and c[4, 1] == pytest.approx(np.sqrt(0.5))
    assert c[1, 1] == pytest.approx(1.0)
    # every task, earlier or not: what the update probe stores
    every = M.cosine_to_tasks(updates, task_gradients)
    np.testing.assert_allclose(every[:, 1], [0.0, 1.0, -1.0, nan, np.sqrt(0.5)])
    np.testing.assert_allclose(M.cosine_to_tasks(updates, np.broadcast_to(task_gradients, (5, 2, 2))), every)


def test_task_mean_gradients_and_interference_matrix():
    G = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    task = np.array([0, 0, 1, 1, 1])  # the last sample has a zero gradient: no cosine; task 2 has no sample
    means = M.task_mean_gradients(G, task, 3)
    np.testing.assert_allclose(means[:2], [[1.0, 0.0], [-1 / 3, 1 / 3]])
    assert np.isnan(means[2]).all()
    I, pairs = M.interference_matrix(G, task, 3)
    # I[0, 1]: cos(e1, e2) = 0 and cos(e1, -e1) = -1, for each of the two task-0 samples
    expected = np.array([[1.0, -0.5, nan], [-0.5, 0.0, nan], [nan, nan, nan]])
    np.testing.assert_allclose(I, expected)
    np.testing.assert_array_equal(pairs, [[2, 4, 0], [4, 2, 0], [0, 0, 0]])


def test_toneva_forgetting_events_count_at_presentations_with_the_weights_before_each():
    """Toneva et al. record a sample's correctness in the forward pass of the update that presents it
    (row u - 1) and count correct -> wrong between consecutive presentations; the flips between every
    pair of evaluation points are a different, larger count."""
    # rows 0..6 (after 0..6 updates); four probe samples
    correct = np.array([
        [0, 0, 0, 0],
        [1, 1, 0, 0],   # sample 0 correct before its presentation at update 2
        [1, 1, 0, 0],   # sample 1 correct before its presentation at update 3
        [0, 0, 0, 0],   # sample 0 wrong before update 4
        [0, 0, 0, 0],   # sample 3 wrong before its presentation at update 5
        [1, 1, 0, 1],   # sample 0 correct before update 6
        [1, 0, 0, 1],
    ], dtype=bool)
    presented = np.array([[2, 4, 6], [1, 3, -1], [-1, -1, -1], [5, -1, -1]])
    acc = M.presentation_correctness(correct, presented)
    np.testing.assert_array_equal(acc[:2], [[1, 0, 1], [0, 1, np.nan]])
    assert np.isnan(acc[2]).all() and acc[3, 0] == 0
    events = M.toneva_forgetting_events(correct, presented)
    np.testing.assert_array_equal(events[[0, 1, 3]], [1, 0, 0])
    assert np.isnan(events[2])
    assert M.mean_toneva_forgetting_events(correct, presented, 1) == pytest.approx(1 / 3)
    assert M.toneva_unforgettable_fraction(correct, presented, 1) == pytest.approx(1 / 3)  # sample 1 only
    # sample 1 flips between evaluation points after its last presentation, but has no Toneva event
    flips = M.flips_to_wrong(correct, np.arange(7), presented)
    assert flips[1] == 2 and np.nansum(flips) > np.nansum(events)
    # only a history evaluated after every update has the row before each presentation
    assert np.isnan(M.mean_toneva_forgetting_events(correct, presented, 10))
    assert np.isnan(M.toneva_unforgettable_fraction(correct, presented, 2))
    nothing = np.full((4, 3), -1)
    assert np.isnan(M.mean_toneva_forgetting_events(correct, nothing, 1))
    assert np.isnan(M.toneva_unforgettable_fraction(correct, nothing, 1))
