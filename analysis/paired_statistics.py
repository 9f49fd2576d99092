"""Paired comparisons over seeds, as pure functions: effect size with its t-interval, paired t-test
with Wilcoxon's signed-rank test as a check, Holm's correction, an equivalence test (TOST), and the
F-test of an interaction of two factors. docs/credit_assignment.md#statistics says how the study uses them.

A comparison pairs a treatment and a reference by seed (same initial weights and sample order):
d_s = y_treatment(s) - y_reference(s), s = 1..n.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


# Differences smaller than this are rounding in how an outcome was summed (accuracy outcomes move in
# steps of 1/n_test), not a difference: they are set to 0 so that no test sees a spread of 1e-17.
ROUNDING = 1e-12
# Differences whose sd is below this share of their largest size are equal but for rounding in how
# they were summed (0.1 - 0.05 and 0.15 - 0.1 differ in the 17th digit): no standard unit exists, and
# an exact sd == 0 would turn that rounding into d_z ~ 1e15.
RELATIVE_SPREAD = 1e-9


def without_spread(d: np.ndarray) -> bool:
    """Whether the differences ``d`` (n >= 1) are all equal up to rounding: sd <= RELATIVE_SPREAD * max |d|
    (all exact zeros included)."""
    d = np.asarray(d, dtype=float)
    return bool(np.std(d) <= RELATIVE_SPREAD * np.max(np.abs(d)))


def paired_differences(treatment: dict, reference: dict) -> np.ndarray:
    """d_s = treatment[s] - reference[s] over the seeds both have with finite values, in seed order;
    ``treatment`` and ``reference`` map seed -> outcome. |d_s| < ``ROUNDING`` counts as 0."""
    seeds = sorted(set(treatment) & set(reference))
    d = np.array([float(treatment[s]) - float(reference[s]) for s in seeds], dtype=float)
    d = d[np.isfinite(d)]
    return np.where(np.abs(d) < ROUNDING, 0.0, d)


def mean_ci(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval mean ± t_{(1+level)/2, n-1} s/sqrt(n), s with ddof = 1;
    NaN bounds for n < 2, the mean itself for differences without spread (``without_spread``)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(d))
    if n < 2:
        return mean, math.nan, math.nan
    if without_spread(d):
        return mean, mean, mean
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * np.std(d, ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def cohens_dz(d: np.ndarray) -> float:
    """Cohen's d_z = mean(d) / sd(d) (ddof = 1), the standardised mean of paired differences; NaN for
    n < 2 or differences without spread (``without_spread``: every seed moved by the same amount, up to
    rounding, and no standard unit exists)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or without_spread(d):
        return math.nan
    return float(np.mean(d)) / float(np.std(d, ddof=1))


def paired_t_test(d: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of H0: E[d] = 0, one-sample t-test on the differences; NaN for n < 2 or
    differences without spread."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or without_spread(d):
        return math.nan, math.nan
    result = stats.ttest_1samp(d, 0.0)
    return float(result.statistic), float(result.pvalue)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided p of Wilcoxon's signed-rank test of H0: d symmetric about 0 (zeros dropped, as
    Wilcoxon did); NaN when no difference is nonzero, or for n < 2, as every other statistic of one
    pair (scipy answers p = 1 for a single difference: no test, not "no difference")."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or not np.any(d != 0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about ties and small n; the p-value stands
        return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


def tost_p(d: np.ndarray, margin: float) -> float:
    """p of the two one-sided t-tests (Schuirmann 1987) of H0: |E[d]| >= margin against H1:
    -margin < E[d] < margin; the larger of the two one-sided p-values. Equivalence within the margin
    is shown at level alpha when p < alpha, which is when the 1 - 2 alpha t-interval lies inside
    (-margin, margin). NaN for n < 2; for differences without spread the exact answer (0 inside, 1
    outside)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan
    if without_spread(d):
        return 0.0 if abs(float(np.mean(d))) < margin else 1.0
    above_lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    below_upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(above_lower, below_upper))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), controlling the family-wise error rate: with the
    m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted p_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j)). Reject H_(i) at level alpha when its adjusted p < alpha. NaNs stay NaN and do not count
    in m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class PairedComparison:
    n: int
    mean: float  # mean paired difference, treatment - reference
    ci_low: float
    ci_high: float
    d_z: float
    t: float
    p: float  # paired t-test, two-sided
    p_wilcoxon: float
    p_tost: float  # equivalence within +-margin


def compare(d: np.ndarray, margin: float, level: float = 0.95) -> PairedComparison:
    """Every statistic of one comparison from its paired differences."""
    mean, low, high = mean_ci(d, level)
    t, p = paired_t_test(d)
    return PairedComparison(
        n=len(d), mean=mean, ci_low=low, ci_high=high, d_z=cohens_dz(d), t=t, p=p,
        p_wilcoxon=wilcoxon_p(d), p_tost=tost_p(d, margin),
    )


def verdict(p_holm: float, p_tost: float, alpha: float) -> str:
    """"differs" when the Holm-adjusted t-test rejects no difference, "equivalent" when TOST shows the
    difference within the margin, both when both hold (a real but small difference), "inconclusive"
    when neither: too few seeds or too much spread to say."""
    differs = np.isfinite(p_holm) and p_holm < alpha
    equivalent = np.isfinite(p_tost) and p_tost < alpha
    if differs and equivalent:
        return "differs, within margin"
    if differs:
        return "differs"
    if equivalent:
        return "equivalent"
    return "inconclusive"


@dataclass(frozen=True)
class Interaction:
    F: float
    df_effect: int
    df_residual: int
    p: float
    n: int  # observations used


def interaction_test(frame, outcome: str, a: str = "learner", b: str = "rate", block: str = "seed") -> Interaction:
    """F-test of the a x b interaction on ``outcome`` in a long table (one row per run), with ``block``
    (the seed, shared by every cell of a replicate) as a fixed effect: the nested least-squares models

        reduced:  y ~ block + a + b          full:  y ~ block + a + b + a:b

    F = ((RSS_reduced - RSS_full) / (p_full - p_reduced)) / (RSS_full / (n - p_full)), p-values from
    F(p_full - p_reduced, n - p_full), p the ranks of the design matrices (categorical factors as
    treatment-coded dummies; unbalanced or missing cells allowed). Rows with a non-finite outcome are
    left out. NaN when there is no interaction to test or no residual degree of freedom."""
    import pandas as pd

    data = frame[[a, b, block, outcome]].copy()
    data = data[np.isfinite(data[outcome].astype(float))]
    dummies = {name: pd.get_dummies(data[name].astype(str), prefix=name, drop_first=True, dtype=float)
               for name in (a, b, block)}
    products = pd.concat([dummies[a][ca] * dummies[b][cb] for ca in dummies[a] for cb in dummies[b]], axis=1) \
        if len(dummies[a].columns) and len(dummies[b].columns) else pd.DataFrame(index=data.index)
    intercept = pd.DataFrame({"intercept": 1.0}, index=data.index)
    reduced = pd.concat([intercept, dummies[block], dummies[a], dummies[b]], axis=1).to_numpy()
    full = np.hstack([reduced, products.to_numpy()])
    y = data[outcome].to_numpy(dtype=float)

    def fit(X):
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        residual = y - X @ coef
        return float(residual @ residual), int(np.linalg.matrix_rank(X))

    (rss_reduced, p_reduced), (rss_full, p_full) = fit(reduced), fit(full)
    df_effect, df_residual = p_full - p_reduced, len(y) - p_full
    if df_effect < 1 or df_residual < 1 or rss_full <= 0:
        return Interaction(math.nan, df_effect, df_residual, math.nan, len(y))
    F = ((rss_reduced - rss_full) / df_effect) / (rss_full / df_residual)
    return Interaction(float(F), df_effect, df_residual, float(stats.f.sf(F, df_effect, df_residual)), len(y))


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
