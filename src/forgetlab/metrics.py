"""Forgetting metrics as pure functions of arrays. Definitions and sign conventions: docs/metrics.md.

Task level: ``R`` is the accuracy matrix of shape (T, T): R[i, j] is the test accuracy on task j
after training on tasks 0..i; ``r_init`` (T,) is the accuracy of the untrained network.
Signs: forgetting > 0 means accuracy was lost; BWT < 0 means accuracy was lost.

A NaN entry of R means "never evaluated". A per-task term that needs a NaN entry is left out of
the average; a metric with no defined term is NaN (so is every metric over earlier tasks at T = 1).

Sample level: the sample probe of docs/tracking.md, E evaluation points and P probe samples:
``correct`` (E, P) bool, ``samples_seen`` (E,), ``updates`` (E,), ``presented_at`` (P, K) with the
``samples_seen`` right after each presentation of a sample and -1 padding.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

# --- task level ------------------------------------------------------------------------------


def _mean_defined(terms: np.ndarray) -> float:
    """Mean over the finite terms; NaN when there is none."""
    terms = np.asarray(terms, dtype=float)
    defined = terms[np.isfinite(terms)]
    return float(defined.mean()) if defined.size else float("nan")


def _square(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"The accuracy matrix must be square (T, T), one row per trained task. Got shape {R.shape}.")
    return R


def average_accuracy(R: np.ndarray) -> float:
    """ACC = 1/T sum_j R[T-1, j]   (Lopez-Paz & Ranzato 2017, GEM).

    Accepts any (S, T) matrix, so a joint run (one stage) has an ACC too."""
    R = np.asarray(R, dtype=float)
    return _mean_defined(R[-1])


def backward_transfer(R: np.ndarray) -> float:
    """BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j])   (Lopez-Paz & Ranzato 2017, the paper's
    1/(T-1), not the 1/T of the GEM code). Negative = forgetting. NaN for T = 1."""
    R = _square(R)
    T = R.shape[0]
    j = np.arange(T - 1)
    return _mean_defined(R[T - 1, j] - R[j, j])


def forward_transfer(R: np.ndarray, r_init: np.ndarray) -> float:
    """FWT = 1/(T-1) sum_{j>=1} (R[j-1, j] - r_init[j])   (Lopez-Paz & Ranzato 2017). NaN for T = 1."""
    R = _square(R)
    r_init = np.asarray(r_init, dtype=float)
    j = np.arange(1, R.shape[0])
    return _mean_defined(R[j - 1, j] - r_init[j])


def forgetting_max(R: np.ndarray) -> float:
    """F_max = 1/(T-1) sum_{j<T-1} (max_{l<T-1} R[l, j] - R[T-1, j])   (Chaudhry et al. 2018, RWalk).

    As in the paper, the maximum runs over every earlier row l in 0..T-2, including rows before task j
    was trained, and over the evaluated (non-NaN) ones only. Positive = forgetting. NaN for T = 1.
    """
    R = _square(R)
    T = R.shape[0]
    earlier = R[: T - 1, : T - 1]
    with warnings.catch_warnings():  # an all-NaN column is an undefined term, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        best = np.nanmax(earlier, axis=0) if T > 1 else np.empty(0)
    return _mean_defined(best - R[T - 1, : T - 1])


def forgetting_after_training(R: np.ndarray) -> float:
    """F_after = 1/(T-1) sum_{j<T-1} (R[j, j] - R[T-1, j])   (accuracy right after training task j
    minus final accuracy, averaged over the tasks trained before the last one: Avalanche's
    ``StreamForgetting``, Lomonaco et al. 2021). Positive = forgetting.

    F_after = -BWT exactly: both average the same T-1 terms, which need the same two entries.
    NaN for T = 1."""
    R = _square(R)
    T = R.shape[0]
    j = np.arange(T - 1)
    return _mean_defined(R[j, j] - R[T - 1, j])


def normalized_backward_transfer(R: np.ndarray, chance: np.ndarray) -> float:
    """nBWT = sum_{j<T-1} (R[T-1, j] - R[j, j]) / sum_{j<T-1} (R[j, j] - c_j)
            = BWT / (mean_{j<T-1} R[j, j] - mean_{j<T-1} c_j),

    c_j the accuracy of guessing on task j (1 / its active output units): the share of what was
    learned above chance that was lost by the end (-1: every earlier task back at chance; 0: nothing
    lost; > 0: gained). NaN for T = 1 and when the earlier tasks were learned no better than chance
    (the denominator <= 0): the forgetting of nothing is undefined, not 0, so a learner cannot score
    well on it by not learning, as it can on BWT."""
    R = _square(R)
    T = R.shape[0]
    chance = np.asarray(chance, dtype=float)
    if chance.shape != (T,):
        raise ValueError(f"chance must have one entry per task, shape ({T},). Got {chance.shape}.")
    if T < 2:
        return float("nan")
    learned = np.diag(R)[:-1]
    gained = float(np.sum(learned - chance[:-1]))
    if not np.isfinite(gained) or gained <= 0:
        return float("nan")
    return float(np.sum(R[-1, :-1] - learned)) / gained


def learning_accuracy(R: np.ndarray) -> float:
    """LA = 1/T sum_j R[j, j]: accuracy on each task right after training it (Riemer et al. 2019)."""
    R = _square(R)
    return _mean_defined(np.diag(R))


def intransigence(R: np.ndarray, joint_accuracy: np.ndarray) -> float:
    """I = 1/T sum_j (A_joint[j] - R[j, j])   (Chaudhry et al. 2018, RWalk), with the reference
    A_joint[j] the final accuracy on task j of the joint run (all tasks trained together) of the same
    condition. Positive = the sequential learner learned task j less well than joint training does.

    RWalk's reference for task k is trained on tasks 0..k only; ours is trained on all T tasks (the
    joint baseline every study already runs), which differs from the paper for k < T-1."""
    R = _square(R)
    joint_accuracy = np.asarray(joint_accuracy, dtype=float)
    if joint_accuracy.shape != (R.shape[0],):
        raise ValueError(f"joint_accuracy must have one entry per task, shape ({R.shape[0]},). Got {joint_accuracy.shape}.")
    return _mean_defined(joint_accuracy - np.diag(R))


# --- sample level ----------------------------------------------------------------------------


def first_point_at_or_after(samples_seen: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the first evaluation point with samples_seen >= t, for each t; -1 where t < 0
    (never presented) or no such point exists."""
    samples_seen, t = np.asarray(samples_seen), np.asarray(t)
    idx = np.searchsorted(samples_seen, t, side="left")
    return np.where((t >= 0) & (idx < len(samples_seen)), idx, -1)


def first_presentation(presented_at: np.ndarray) -> np.ndarray:
    """samples_seen right after the first presentation of each probe sample; -1 if never presented."""
    presented_at = np.asarray(presented_at)
    if presented_at.shape[1] == 0:
        return np.full(presented_at.shape[0], -1, dtype=np.int64)
    return presented_at[:, 0].astype(np.int64)


def last_presentation(presented_at: np.ndarray) -> np.ndarray:
    """samples_seen right after the last presentation of each probe sample; -1 if never presented."""
    presented_at = np.asarray(presented_at)
    if presented_at.shape[1] == 0:
        return np.full(presented_at.shape[0], -1, dtype=np.int64)
    return presented_at.max(axis=1).astype(np.int64)


def _window(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray):
    """(E, P) mask of the evaluation points from the first one at or after the sample's first
    presentation onwards, and the (P,) mask of samples that were presented (and evaluated after)."""
    start = first_point_at_or_after(samples_seen, first_presentation(presented_at))
    E = np.asarray(correct).shape[0]
    in_window = (np.arange(E)[:, None] >= start[None, :]) & (start[None, :] >= 0)
    return in_window, start >= 0


def transition_counts(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray):
    """Flips to wrong (1 -> 0) and flips to correct (0 -> 1) per probe sample between consecutive
    evaluation points of its window, the window starting at the first evaluation point at or after its
    first presentation. Returns two (P,) float arrays, NaN for samples never presented. Changes between
    two evaluation points that cancel out are not seen. Toneva et al. (2019) count at the sample's own
    presentations instead (``toneva_forgetting_events``): between every pair of evaluation points the
    count is far larger, so it has a name of its own."""
    correct = np.asarray(correct, dtype=bool)
    in_window, presented = _window(correct, samples_seen, presented_at)
    both = in_window[:-1] & in_window[1:]
    forgot = (correct[:-1] & ~correct[1:] & both).sum(axis=0).astype(float)
    learned = (~correct[:-1] & correct[1:] & both).sum(axis=0).astype(float)
    forgot[~presented] = np.nan
    learned[~presented] = np.nan
    return forgot, learned


def flips_to_wrong(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> np.ndarray:
    """Number of 1 -> 0 changes per probe sample between consecutive evaluation points of its window;
    see ``transition_counts``."""
    return transition_counts(correct, samples_seen, presented_at)[0]


def mean_flips_to_wrong(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> float:
    """Mean number of flips to wrong (``flips_to_wrong``: 1 -> 0 between consecutive evaluation points)
    per presented probe sample; NaN when no probe sample was presented."""
    return _mean_defined(transition_counts(correct, samples_seen, presented_at)[0])


def mean_flips_to_correct(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> float:
    """Mean number of flips to correct (0 -> 1 between consecutive evaluation points, ``transition_counts``)
    per presented probe sample; NaN when no probe sample was presented."""
    return _mean_defined(transition_counts(correct, samples_seen, presented_at)[1])


def sample_fractions(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> dict[str, float]:
    """Fractions of the presented probe samples that are *unforgettable* (correct at some evaluation
    point of their window and never flipped to wrong there) and *never learned* (never correct in their
    window), counted at the evaluation points (Toneva et al. 2019 count at presentations:
    ``toneva_unforgettable_fraction``). NaN when no probe sample was presented (e.g. an empty probe)."""
    correct = np.asarray(correct, dtype=bool)
    in_window, presented = _window(correct, samples_seen, presented_at)
    if not presented.any():
        return {"unforgettable": float("nan"), "never_learned": float("nan")}
    ever_correct = (correct & in_window).any(axis=0)
    forgot = flips_to_wrong(correct, samples_seen, presented_at)
    return {
        "unforgettable": float(np.mean((ever_correct & (forgot == 0))[presented])),
        "never_learned": float(np.mean(~ever_correct[presented])),
    }


def unforgettable_fraction(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> float:
    """The fraction of presented probe samples that are unforgettable (``sample_fractions``)."""
    return sample_fractions(correct, samples_seen, presented_at)["unforgettable"]


def never_learned_fraction(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> float:
    """The fraction of presented probe samples never learned (``sample_fractions``)."""
    return sample_fractions(correct, samples_seen, presented_at)["never_learned"]


def retention_curve(
    correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray, bin_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """P(still correct n samples later | correct right after its own presentation), per bin of n.

    For probe sample p, t_p is ``samples_seen`` right after its *last* presentation (after which it is
    never trained on again) and a_p the first evaluation point at or after t_p: "right after its own
    presentation". Every later evaluation point e > a_p of a sample correct at a_p gives one pair
    with lag n = samples_seen[e] - t_p; the pair counts as retained if the sample is correct at e
    (whatever happened in between). Pairs fall into bins [bin_edges[b], bin_edges[b+1]).

    Returns (fraction retained per bin, NaN for an empty bin; number of pairs per bin).
    """
    correct = np.asarray(correct, dtype=bool)
    samples_seen = np.asarray(samples_seen)
    bin_edges = np.asarray(bin_edges, dtype=float)
    n_bins = len(bin_edges) - 1
    t = last_presentation(presented_at)
    anchor = first_point_at_or_after(samples_seen, t)
    E = correct.shape[0]
    P = correct.shape[1]
    ok = anchor >= 0
    correct_at_anchor = np.zeros(P, dtype=bool)
    correct_at_anchor[ok] = correct[anchor[ok], np.nonzero(ok)[0]]
    later = (np.arange(E)[:, None] > anchor[None, :]) & (ok & correct_at_anchor)[None, :]
    lag = samples_seen[:, None] - t[None, :]
    b = np.digitize(lag[later], bin_edges) - 1
    kept = (b >= 0) & (b < n_bins)
    pairs = np.bincount(b[kept], minlength=n_bins).astype(np.int64)
    retained = np.bincount(b[kept], weights=correct[later][kept], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(pairs > 0, retained / np.maximum(pairs, 1), np.nan)
    return fraction, pairs


def interval_accuracy_drops(
    correct: np.ndarray, samples_seen: np.ndarray, updates: np.ndarray, presented_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair of consecutive evaluation points (e-1, e): the earlier samples S_e = probe samples
    presented at or before samples_seen[e-1] and not presented in (samples_seen[e-1], samples_seen[e]];
    their accuracy drop d_e = mean_{p in S_e} (correct[e-1, p] - correct[e, p]) (NaN if S_e is empty);
    u_e = updates[e] - updates[e-1]; and |S_e|. Returns (d, u, |S|), each of shape (E-1,)."""
    correct = np.asarray(correct, dtype=bool)
    samples_seen, updates = np.asarray(samples_seen), np.asarray(updates)
    pa = np.asarray(presented_at)
    start, end = samples_seen[:-1], samples_seen[1:]
    valid = pa >= 0  # (P, K)
    before = (valid[None] & (pa[None] <= start[:, None, None])).any(axis=2)  # (E-1, P)
    during = (valid[None] & (pa[None] > start[:, None, None]) & (pa[None] <= end[:, None, None])).any(axis=2)
    earlier = before & ~during
    size = earlier.sum(axis=1)
    change = correct[:-1].astype(float) - correct[1:].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        drop = np.where(size > 0, (change * earlier).sum(axis=1) / np.maximum(size, 1), np.nan)
    return drop, np.diff(updates), size


def accuracy_drop_per_update(
    correct: np.ndarray, samples_seen: np.ndarray, updates: np.ndarray, presented_at: np.ndarray
) -> float:
    """D = sum_e d_e / sum_e u_e over the intervals with earlier samples and at least one update
    (``interval_accuracy_drops``): the mean drop in probe accuracy on already-presented samples caused
    by one later update. Positive = forgetting. NaN when no interval qualifies."""
    drop, u, size = interval_accuracy_drops(correct, samples_seen, updates, presented_at)
    use = (size > 0) & (u > 0)
    if not use.any():
        return float("nan")
    return float(drop[use].sum() / u[use].sum())


# --- update resolution -----------------------------------------------------------------------
#
# The update-resolution probe history (docs/metrics.md, "Update resolution"): U weight updates,
# P probe samples, evaluated before training and after every update.
#   correct           (U+1, P) bool   row u = after u updates; row 0 = before any training
#   loss              (U+1, P) float  the data loss (no L2 term) at the same rows
#   presented_update  (P, n) int      the updates at which each probe sample was presented, strictly
#                                     increasing, -1 padding at the end: update i (1..U) moves the
#                                     weights from row i-1 to row i, so row u_p is "right after its
#                                     own presentation".
# An *anchor* is one presentation (p, u). Its horizon is the number of later rows before p is trained
# again: h = min(u' - 1, U) - u with u' the next presentation of p (U + 1 when there is none). A lag k
# of an anchor is observed when 0 <= k <= h, so an update that trains p again never counts as
# forgetting p.


class Anchors(NamedTuple):
    """One entry per presentation: probe sample, update index, horizon (updates observed before the
    sample is trained again or the history ends)."""

    sample: np.ndarray
    update: np.ndarray
    horizon: np.ndarray


def presentation_anchors(presented_update: np.ndarray, n_updates: int) -> Anchors:
    """The anchors of a probe history with ``n_updates`` = U updates; validates ``presented_update``."""
    pu = np.asarray(presented_update, dtype=np.int64)
    if pu.ndim != 2:
        raise ValueError(f"presented_update must be 2-D (P, n), -1 padded. Got shape {pu.shape}.")
    valid = pu >= 0
    if np.any(pu < -1) or np.any(pu[valid] < 1) or np.any(pu[valid] > n_updates):
        raise ValueError(
            f"presented_update entries must be -1 (padding) or update indices in [1, {n_updates}]. "
            f"Got values in [{pu.min()}, {pu.max()}]."
        )
    if np.any(~valid[:, :-1] & valid[:, 1:]):
        raise ValueError("presented_update must keep its -1 padding at the end of each row.")
    if np.any(valid[:, 1:] & (pu[:, 1:] <= pu[:, :-1])):
        raise ValueError("presented_update must be strictly increasing along each row.")
    following = np.concatenate([pu[:, 1:], np.full((pu.shape[0], 1), -1, dtype=np.int64)], axis=1)
    following = np.where(following >= 0, following, n_updates + 1)
    sample, column = np.nonzero(valid)
    update = pu[sample, column]
    horizon = np.minimum(following[sample, column] - 1, n_updates) - update
    return Anchors(sample=sample, update=update, horizon=horizon)


def _history(correct: np.ndarray, presented_update: np.ndarray) -> tuple[np.ndarray, Anchors]:
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[1] != np.shape(presented_update)[0]:
        raise ValueError(
            f"correct must be (U+1, P) with P = len(presented_update) = {np.shape(presented_update)[0]}. "
            f"Got shape {correct.shape}."
        )
    return correct, presentation_anchors(presented_update, correct.shape[0] - 1)


def _lags(lags) -> np.ndarray:
    lags = np.atleast_1d(np.asarray(lags, dtype=np.int64))
    if np.any(lags < 0):
        raise ValueError(f"lags must be >= 0 updates. Got {lags[lags < 0].tolist()}.")
    return lags


def _lagged(values: np.ndarray, anchors: Anchors, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values at anchor + lag, observed) of shape (A, K); unobserved entries hold arbitrary values."""
    observed = lags[None, :] <= anchors.horizon[:, None]
    rows = np.minimum(anchors.update[:, None] + lags[None, :], values.shape[0] - 1)
    return values[rows, anchors.sample[:, None]], observed


def retention_by_updates(correct: np.ndarray, presented_update: np.ndarray, lags) -> tuple[np.ndarray, np.ndarray]:
    """P(correct k updates after its presentation | correct right after it), for each lag k.

    Over the anchors (p, u) with correct[u, p] and the lags they observe (k <= h):
        retention(k) = #{correct[u + k, p]} / #{pairs}
    whatever happened in between (a sample wrong at u + 1 and correct again at u + k is retained at k).
    Returns (retention (K,), pairs (K,) int); NaN where there is no pair (e.g. k beyond the history).
    retention(0) = 1 whenever defined."""
    correct, anchors = _history(correct, presented_update)
    lags = _lags(lags)
    learned = correct[anchors.update, anchors.sample]
    later, observed = _lagged(correct, anchors, lags)
    eligible = observed & learned[:, None]
    pairs = eligible.sum(axis=0)
    kept = (later & eligible).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, kept / np.maximum(pairs, 1), np.nan), pairs


def erasure_after_updates(
    correct: np.ndarray, presented_update: np.ndarray, ks=(1, 10, 100, 1000)
) -> tuple[np.ndarray, np.ndarray]:
    """erasure(k) = P(wrong k updates after its presentation | correct right after it)
    = 1 - retention_by_updates(k), over the same pairs.

    erasure(1) is the seed's one-update story: the chance that the very next update (on another
    sample) erases a just-learned sample. Returns (erasure (K,), pairs (K,) int); NaN with 0 pairs
    where no anchor observes lag k. Positive = forgetting."""
    retention, pairs = retention_by_updates(correct, presented_update, ks)
    return 1.0 - retention, pairs


def loss_change_after_updates(
    loss: np.ndarray, presented_update: np.ndarray, ks=(1, 10, 100, 1000)
) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss increase of the just-presented sample k updates later:
        dl(k) = mean over anchors (p, u) observing k of (loss[u + k, p] - loss[u, p]).

    Every anchor counts, correct right after its presentation or not (the loss needs no threshold).
    Returns (dl (K,), pairs (K,) int); NaN with 0 pairs where no anchor observes lag k.
    Positive = the sample's loss went up (forgetting)."""
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 2 or loss.shape[1] != np.shape(presented_update)[0]:
        raise ValueError(
            f"loss must be (U+1, P) with P = len(presented_update) = {np.shape(presented_update)[0]}. "
            f"Got shape {loss.shape}."
        )
    anchors = presentation_anchors(presented_update, loss.shape[0] - 1)
    ks = _lags(ks)
    later, observed = _lagged(loss, anchors, ks)
    change = later - loss[anchors.update, anchors.sample][:, None]
    pairs = observed.sum(axis=0)
    total = np.where(observed, change, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, total / np.maximum(pairs, 1), np.nan), pairs


def flips_to_wrong_by_interval(
    correct: np.ndarray, presented_update: np.ndarray, intervals=(1, 10, 100)
) -> tuple[np.ndarray, np.ndarray]:
    """Flips to wrong (``flips_to_wrong``) counted on the history evaluated every s updates, rows 0, s,
    2s, ... <= U, for each interval s: the mean number of 1 -> 0 changes per probe sample whose window
    holds a row (the window starts at the first row at or after its first presentation).

    The count depends on s: a forget-and-relearn inside s updates is not seen, so per sample
    events(s) <= events(1), and events(m s) <= events(s) for any integer m. Returns (mean events per
    sample (len(intervals),), samples counted (len(intervals),) int); NaN with 0 samples if none."""
    correct, _ = _history(correct, presented_update)
    means, counts = [], []
    for s in np.atleast_1d(intervals):
        if int(s) < 1:
            raise ValueError(f"evaluation intervals must be >= 1 update. Got {s}.")
        rows = np.arange(0, correct.shape[0], int(s))
        events = flips_to_wrong(correct[rows], rows, presented_update)
        counted = np.isfinite(events)
        counts.append(int(counted.sum()))
        means.append(float(events[counted].mean()) if counted.any() else float("nan"))
    return np.array(means), np.array(counts, dtype=np.int64)


def presentation_correctness(correct: np.ndarray, presented_update: np.ndarray) -> np.ndarray:
    """(P, n) whether each probe sample was correct at each of its presentations, as Toneva et al. (2019)
    record it: in the forward pass of the update that presents it, i.e. with the weights before that
    update, row u - 1 of a history evaluated after every update. 1.0 / 0.0, NaN where ``presented_update``
    pads (-1)."""
    correct, anchors = _history(correct, presented_update)
    presented = np.asarray(presented_update)
    out = np.full(presented.shape, np.nan)
    valid = presented >= 1
    p = np.broadcast_to(np.arange(presented.shape[0])[:, None], presented.shape)
    out[valid] = correct[presented[valid] - 1, p[valid]]
    return out


def toneva_forgetting_events(correct: np.ndarray, presented_update: np.ndarray) -> np.ndarray:
    """Forgetting events per probe sample as Toneva et al. (2019) define them: a presentation at which
    the sample is wrong after one at which it was correct (acc_{k+1} < acc_k over consecutive
    presentations, ``presentation_correctness``). (P,) float, NaN for a sample never presented."""
    acc = presentation_correctness(correct, presented_update)
    events = np.nansum((acc[:, :-1] == 1) & (acc[:, 1:] == 0), axis=1).astype(float)
    return np.where(np.isfinite(acc).any(axis=1), events, np.nan)


def mean_toneva_forgetting_events(correct: np.ndarray, presented_update: np.ndarray, every) -> float:
    """Mean Toneva forgetting events (``toneva_forgetting_events``) per presented probe sample of an
    update-resolution history; NaN unless it was evaluated after every update (``every`` = 1: the row
    before a presentation exists only then) or when no sample was presented."""
    if int(every) != 1:
        return float("nan")
    return _mean_defined(toneva_forgetting_events(correct, presented_update))


def toneva_unforgettable_fraction(correct: np.ndarray, presented_update: np.ndarray, every) -> float:
    """The fraction of presented probe samples that are *unforgettable* as Toneva et al. (2019) define
    it: correct at some presentation, and no forgetting event between presentations. NaN unless the
    history was evaluated after every update, or when no sample was presented."""
    if int(every) != 1:
        return float("nan")
    acc = presentation_correctness(correct, presented_update)
    presented = np.isfinite(acc).any(axis=1)
    if not presented.any():
        return float("nan")
    learned = (acc == 1).any(axis=1)
    events = toneva_forgetting_events(correct, presented_update)
    return float(np.mean((learned & (events == 0))[presented]))


class ForgetTimes(NamedTuple):
    """One entry per anchor correct right after its presentation: the probe sample, the update of
    the presentation, the time to forget in updates and whether it is censored (never seen wrong
    within the horizon; then ``time`` is the horizon, the number of updates it was observed)."""

    sample: np.ndarray
    update: np.ndarray
    time: np.ndarray
    censored: np.ndarray


def time_to_forget(correct: np.ndarray, presented_update: np.ndarray) -> ForgetTimes:
    """For each anchor (p, u) with correct[u, p]: tau = min{k in 1..h : not correct[u + k, p]},
    the number of updates until the sample is first wrong; censored at tau = h when it stays correct
    until it is trained again or the history ends (h may be 0: presented again at the next update)."""
    correct, anchors = _history(correct, presented_update)
    learned = correct[anchors.update, anchors.sample]
    sample, update, horizon = anchors.sample[learned], anchors.update[learned], anchors.horizon[learned]
    rows = correct.shape[0]
    # Every wrong entry as one sorted key p * rows + u: the next wrong row after each anchor is a search.
    wrong = np.flatnonzero(~correct.T.ravel())
    key = sample * rows + update
    nxt = np.searchsorted(wrong, key, side="right")
    found = nxt < len(wrong)
    first_wrong = np.where(found, wrong[np.minimum(nxt, len(wrong) - 1)], -1)
    same_sample = found & (first_wrong // rows == sample)
    time = np.where(same_sample, first_wrong - key, np.iinfo(np.int64).max)
    censored = time > horizon
    return ForgetTimes(sample=sample, update=update, time=np.where(censored, horizon, time), censored=censored)


def survival_after_updates(times: ForgetTimes, ks=(1, 10, 100, 1000)) -> np.ndarray:
    """Kaplan-Meier estimate of S(k) = P(still correct at every one of the k updates after its
    presentation), from ``time_to_forget`` (scipy.stats.ecdf on right-censored times). NaN where
    k exceeds the longest time observed when that time is censored (S is not identified there), and
    everywhere when there is no anchor."""
    ks = _lags(ks)
    time = np.asarray(times.time, dtype=float)
    censored = np.asarray(times.censored, dtype=bool)
    if time.size == 0:
        return np.full(ks.shape, np.nan)
    if censored.all():  # no event: the estimate is 1 up to the longest observation
        return np.where(ks <= time.max(), 1.0, np.nan)
    from scipy.stats import CensoredData, ecdf  # ~0.7 s to import; training never needs it

    sf = ecdf(CensoredData(uncensored=time[~censored], right=time[censored])).sf
    survival = sf.evaluate(ks.astype(float))
    last_censored = censored[time == time.max()].all()
    return np.where((ks > time.max()) & last_censored, np.nan, survival)


# --- gradient interference -------------------------------------------------------------------
#
# Gradients are flat vectors in the layout of ``Network.flatten`` (one entry per parameter, in the
# order of ``network.params``). g_i is the gradient the algorithm applied at update i
# (theta <- theta - lr g_i); grad_p the data-loss gradient of probe sample p at the weights before it.


def predicted_loss_change(probe_gradients: np.ndarray, update: np.ndarray, lr: float) -> np.ndarray:
    """First-order prediction dl_p = -lr <grad_p, g_i> of each probe sample's loss change.
    probe_gradients (P, n), update (n,) or (U, n) -> (P,) or (U, P)."""
    return -lr * (np.asarray(update) @ np.asarray(probe_gradients).T)


def first_order_agreement(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """How well the first-order prediction matches the measured loss change, over the finite pairs:

        correlation  Pearson r(predicted, measured)
        slope        least squares through the origin, sum(pred * meas) / sum(pred^2); 1 = calibrated,
                     < 1 = the prediction overshoots (curvature), no intercept because both are 0
                     for a zero step
        n            number of pairs

    NaN where undefined (fewer than 2 pairs, a constant input, all-zero predictions)."""
    predicted = np.asarray(predicted, dtype=float).ravel()
    measured = np.asarray(measured, dtype=float).ravel()
    if predicted.shape != measured.shape:
        raise ValueError(f"predicted and measured must have the same size. Got {predicted.size} and {measured.size}.")
    use = np.isfinite(predicted) & np.isfinite(measured)
    p, m = predicted[use], measured[use]
    n = int(use.sum())
    correlation = float("nan")
    if n >= 2 and np.ptp(p) > 0 and np.ptp(m) > 0:
        correlation = float(np.corrcoef(p, m)[0, 1])
    denominator = float(p @ p)
    slope = float(p @ m) / denominator if denominator > 0 else float("nan")
    return {"correlation": correlation, "slope": slope, "n": n}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a, b) along the last axis, broadcasting the others; NaN where either vector is zero."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (a * b).sum(axis=-1) / np.where(norms > 0, norms, 1.0), np.nan)


def consecutive_update_cosines(updates: np.ndarray) -> np.ndarray:
    """c_i = cos(g_i, g_{i-1}) for updates (U, n) -> (U,); c_0 = NaN (no previous update)."""
    updates = np.asarray(updates, dtype=float)
    out = np.full(updates.shape[0], np.nan)
    out[1:] = cosine(updates[1:], updates[:-1])
    return out


def task_mean_gradients(per_sample_gradients: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """m_t = mean of the per-sample gradients of the probe samples of task t: (P, n) -> (T, n);
    a row of NaN for a task with no probe sample."""
    G = np.asarray(per_sample_gradients, dtype=float)
    task = np.asarray(task)
    means = np.full((n_tasks, G.shape[1]), np.nan)
    for t in range(n_tasks):
        if np.any(task == t):
            means[t] = G[task == t].mean(axis=0)
    return means


def cosine_to_tasks(updates: np.ndarray, task_gradients: np.ndarray) -> np.ndarray:
    """c[i, t] = cos(g_i, m_t) for every task t. updates (U, n); task_gradients (T, n) fixed, or
    (U, T, n) taken at the weights of each update -> (U, T)."""
    updates = np.asarray(updates, dtype=float)
    task_gradients = np.asarray(task_gradients, dtype=float)
    if task_gradients.ndim == 2:  # one matmul: broadcasting would build a (U, T, n) product
        norms = np.outer(np.linalg.norm(updates, axis=1), np.linalg.norm(task_gradients, axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norms > 0, (updates @ task_gradients.T) / np.where(norms > 0, norms, 1.0), np.nan)
    return cosine(updates[:, None, :], task_gradients)


def cosine_to_earlier_tasks(updates: np.ndarray, task_gradients: np.ndarray, update_task: np.ndarray) -> np.ndarray:
    """c[i, t] = cos(g_i, m_t) (``cosine_to_tasks``) for the tasks t < update_task[i] trained before
    the update's task, NaN for the others. update_task (U,) -> (U, T)."""
    c = cosine_to_tasks(updates, task_gradients)
    earlier = np.arange(c.shape[1])[None, :] < np.asarray(update_task)[:, None]
    return np.where(earlier, c, np.nan)


def interference_matrix(
    per_sample_gradients: np.ndarray, task: np.ndarray, n_tasks: int
) -> tuple[np.ndarray, np.ndarray]:
    """I[a, b] = mean of cos(grad_p, grad_q) over probe samples p of task a and q of task b, p != q;
    negative = a step that lowers the loss of one task raises the other's, to first order.
    Samples with a zero gradient are left out (their cosine is undefined). Returns (I (T, T),
    pairs (T, T) int); NaN where a block has no pair."""
    G = np.asarray(per_sample_gradients, dtype=float)
    task = np.asarray(task)
    norms = np.linalg.norm(G, axis=1)
    use = norms > 0
    unit = G[use] / norms[use, None]
    one_hot = (task[use][:, None] == np.arange(n_tasks)[None, :]).astype(float)  # (P', T)
    C = unit @ unit.T
    np.fill_diagonal(C, 0.0)  # p != q
    sums = one_hot.T @ C @ one_hot
    sizes = one_hot.sum(axis=0)
    pairs = np.outer(sizes, sizes) - np.diag(sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, sums / np.maximum(pairs, 1), np.nan), pairs.astype(np.int64)
