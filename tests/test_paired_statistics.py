"""The study's statistics (analysis/paired_statistics.py) on data with known answers."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis import paired_statistics as st


def test_holm_on_a_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    adjusted = st.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_keeps_order_and_ignores_nans():
    np.testing.assert_allclose(st.holm([0.5, 0.6]), [1.0, 1.0])
    adjusted = st.holm([0.02, math.nan, 0.01])  # m = 2, not 3
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.02])
    assert st.holm([0.001]).tolist() == [0.001]  # one test: no correction


def test_holm_is_never_below_the_raw_p_and_rejects_less_than_uncorrected():
    p = np.random.default_rng(0).uniform(0, 0.2, size=12)
    adjusted = st.holm(p)
    assert np.all(adjusted >= p)
    assert np.sum(adjusted < 0.05) <= np.sum(p < 0.05)


def test_cohens_dz_is_the_mean_over_the_sd_of_the_differences():
    assert st.cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2, sd 1
    assert st.cohens_dz(np.array([-1.0, 1.0, 3.0])) == pytest.approx(0.5)  # mean 1, sd 2
    assert math.isnan(st.cohens_dz(np.array([0.3, 0.3, 0.3])))
    assert math.isnan(st.cohens_dz(np.array([1.0])))


def test_mean_ci_is_the_t_interval_and_the_paired_t_test_is_scipys():
    a = np.array([0.71, 0.65, 0.80, 0.77, 0.69])
    b = np.array([0.60, 0.66, 0.70, 0.61, 0.64])
    d = a - b
    mean, low, high = st.mean_ci(d)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (mean, low, high) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    t, p = st.paired_t_test(d)
    reference = stats.ttest_rel(a, b)
    assert (t, p) == pytest.approx((reference.statistic, reference.pvalue))


def test_tost_accepts_equal_and_rejects_shifted_samples():
    rng = np.random.default_rng(1)
    equal = rng.normal(0.0, 0.01, size=20)
    shifted = rng.normal(0.1, 0.01, size=20)
    assert st.tost_p(equal, margin=0.05) < 0.001
    assert st.tost_p(shifted, margin=0.05) > 0.99
    # too noisy to tell: neither equivalent nor (below) different
    noisy = rng.normal(0.0, 0.3, size=5)
    assert st.tost_p(noisy, margin=0.05) > 0.05


def test_tost_agrees_with_the_ninety_percent_interval_inside_the_margin():
    rng = np.random.default_rng(2)
    for _ in range(50):
        d = rng.normal(rng.uniform(-0.08, 0.08), 0.05, size=10)
        _, low, high = st.mean_ci(d, level=0.90)
        inside = -0.05 < low and high < 0.05
        assert (st.tost_p(d, 0.05) < 0.05) == inside


def test_tost_without_spread_is_exact():
    assert st.tost_p(np.full(4, 0.01), 0.05) == 0.0
    assert st.tost_p(np.full(4, 0.2), 0.05) == 1.0


def test_wilcoxon_agrees_in_sign_with_the_t_test_on_a_clear_shift():
    d = np.array([0.05, 0.07, 0.02, 0.09, 0.04, 0.06, 0.03, 0.08])
    assert st.wilcoxon_p(d) < 0.01 and st.paired_t_test(d)[1] < 0.01
    assert math.isnan(st.wilcoxon_p(np.zeros(5)))


def test_paired_differences_pair_by_seed():
    d = st.paired_differences({0: 0.5, 1: 0.7, 2: 0.9, 5: 1.0}, {2: 0.4, 1: 0.5, 0: 0.5, 3: 0.1})
    np.testing.assert_allclose(d, [0.0, 0.2, 0.5])
    # the same accuracy summed in another order is no difference
    rounding = st.paired_differences({0: 0.1 + 0.2, 1: 0.3}, {0: 0.3, 1: 0.1 + 0.2})
    assert rounding.tolist() == [0.0, 0.0] and math.isnan(st.cohens_dz(rounding))


def test_compare_and_verdict():
    rng = np.random.default_rng(3)
    big = st.compare(rng.normal(0.2, 0.05, 20), margin=0.05)
    assert big.n == 20 and big.ci_low > 0.1 and big.p < 1e-6 and big.p_tost > 0.99
    assert st.verdict(st.holm([big.p])[0], big.p_tost, 0.05) == "differs"
    none = st.compare(rng.normal(0.0, 0.02, 20), margin=0.05)
    assert st.verdict(none.p, none.p_tost, 0.05) == "equivalent"
    assert st.verdict(0.01, 0.01, 0.05) == "differs, within margin"
    assert st.verdict(0.3, 0.3, 0.05) == "inconclusive"


def test_differences_equal_but_for_rounding_have_no_standard_unit():
    """0.15 - 0.1 and 0.1 - 0.05 differ in the 17th digit: an exact sd == 0 test let d_z reach ~1e15."""
    d = np.array([0.15 - 0.1, 0.1 - 0.05, 0.35 - 0.3, 0.05])
    assert np.std(d) > 0 and len(set(d.tolist())) > 1  # not bit-equal
    assert math.isnan(st.cohens_dz(d))
    assert all(math.isnan(v) for v in st.paired_t_test(d))
    assert st.mean_ci(d) == pytest.approx((0.05, 0.05, 0.05))
    assert st.tost_p(d, margin=0.1) == 0.0 and st.tost_p(d, margin=0.01) == 1.0
    # a real spread, however small against the mean, is still one
    spread = np.array([0.05, 0.05 + 1e-6, 0.05 - 1e-6])
    assert np.isfinite(st.cohens_dz(spread)) and abs(st.cohens_dz(spread)) > 1e3


def test_one_pair_gives_no_test_at_all():
    """n = 1: every statistic but the mean is undefined, Wilcoxon's p included (scipy says 1)."""
    result = st.compare(np.array([0.2]), margin=0.05)
    assert result.n == 1 and result.mean == pytest.approx(0.2)
    for name in ("ci_low", "ci_high", "d_z", "t", "p", "p_wilcoxon", "p_tost"):
        assert math.isnan(getattr(result, name)), name
    assert st.verdict(math.nan, result.p_tost, 0.05) == "inconclusive"


def two_way(effect_of_interaction: float, seeds: int = 6, rng_seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in range(seeds):
        block = rng.normal(0, 0.5)
        for i, learner in enumerate(("A", "B", "C")):
            for j, rate in enumerate((0.001, 0.002, 0.005)):
                y = block + 0.1 * i - 0.2 * j + effect_of_interaction * (i == 2) * (j == 2) + rng.normal(0, 0.05)
                rows.append({"learner": learner, "rate": rate, "seed": seed, "y": y})
    return pd.DataFrame(rows)


def test_the_interaction_test_is_the_balanced_two_way_anova_with_seed_blocks():
    """Balanced data with seed blocks: SS_interaction = s sum (m_ij - m_i. - m_.j + m..)^2 on (a-1)(b-1) df,
    residual df (ab - 1)(s - 1), the textbook decomposition; the least-squares F equals it."""
    data = two_way(0.3)
    m = data.groupby(["learner", "rate"])["y"].mean().unstack()
    n = 6
    ss_ab = n * float(((m - m.mean(axis=1).to_numpy()[:, None] - m.mean(axis=0).to_numpy()[None, :] + m.to_numpy().mean()) ** 2).sum().sum())
    blocks = data.groupby("seed")["y"].transform("mean")
    cells = data.groupby(["learner", "rate"])["y"].transform("mean")
    residual = data["y"] - cells - blocks + data["y"].mean()
    ss_e, df_e = float((residual**2).sum()), (9 - 1) * (n - 1)
    expected = (ss_ab / 4) / (ss_e / df_e)
    result = st.interaction_test(data, "y")
    assert (result.df_effect, result.df_residual, result.n) == (4, df_e, 54)
    assert result.F == pytest.approx(expected, rel=1e-9)
    assert result.p == pytest.approx(stats.f.sf(expected, 4, df_e), rel=1e-9) and result.p < 1e-6


def test_no_interaction_is_not_found_and_missing_outcomes_are_left_out():
    data = two_way(0.0, rng_seed=1)
    assert st.interaction_test(data, "y").p > 0.05
    data.loc[3, "y"] = np.nan
    assert st.interaction_test(data, "y").n == 53
    one_rate = data[data["rate"] == 0.001]
    assert math.isnan(st.interaction_test(one_rate, "y").F)  # one rate: no interaction to test
