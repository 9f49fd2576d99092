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
    """Forgetting events (1 -> 0) and learning events (0 -> 1) per probe sample between consecutive
    evaluation points of its window (Toneva et al. 2019), the window starting at the first evaluation
    point at or after its first presentation. Returns two (P,) float arrays, NaN for samples never
    presented. Changes between two evaluation points that cancel out are not seen."""
    correct = np.asarray(correct, dtype=bool)
    in_window, presented = _window(correct, samples_seen, presented_at)
    both = in_window[:-1] & in_window[1:]
    forgot = (correct[:-1] & ~correct[1:] & both).sum(axis=0).astype(float)
    learned = (~correct[:-1] & correct[1:] & both).sum(axis=0).astype(float)
    forgot[~presented] = np.nan
    learned[~presented] = np.nan
    return forgot, learned


def forgetting_events(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> np.ndarray:
    """Number of 1 -> 0 transitions per probe sample (Toneva et al. 2019); see ``transition_counts``."""
    return transition_counts(correct, samples_seen, presented_at)[0]


def sample_fractions(correct: np.ndarray, samples_seen: np.ndarray, presented_at: np.ndarray) -> dict[str, float]:
    """Fractions of the presented probe samples that are *unforgettable* (correct at some point of their
    window and never forgotten there) and *never learned* (never correct in their window)
    (Toneva et al. 2019). NaN when no probe sample was presented (e.g. an empty probe)."""
    correct = np.asarray(correct, dtype=bool)
    in_window, presented = _window(correct, samples_seen, presented_at)
    if not presented.any():
        return {"unforgettable": float("nan"), "never_learned": float("nan")}
    ever_correct = (correct & in_window).any(axis=0)
    forgot = forgetting_events(correct, samples_seen, presented_at)
    return {
        "unforgettable": float(np.mean((ever_correct & (forgot == 0))[presented])),
        "never_learned": float(np.mean(~ever_correct[presented])),
    }


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
