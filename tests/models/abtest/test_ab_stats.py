"""A/B statistics on hand-computed cases, known-answer simulations and property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcuts.models.abtest.ab_stats import (
    RatioEstimate,
    chi2_sf,
    compare,
    msprt_log_lambda,
    msprt_p_value,
    normal_quantile,
    normal_sf,
    srm_test,
    user_ctr,
)


def test_user_ctr_hand_computed() -> None:
    # clicks (1, 0, 2), impressions (2, 2, 4): R = 3/8; residuals c - R n = (0.25, -0.75, 0.5),
    # squares sum 0.875; n_bar = 8/3; Var = 0.875 / (2 * 3 * 64/9) = 0.0205078125
    est = user_ctr([1, 0, 2], [2, 2, 4])
    assert est.n_users == 3
    assert est.ctr == pytest.approx(0.375)
    assert est.variance == pytest.approx(0.875 / (2 * 3 * 64 / 9))
    # the moment form of the delta method gives the same number
    c, n = np.array([1.0, 0, 2]), np.array([2.0, 2, 4])
    cov = np.cov(c, n)
    moment = (cov[0, 0] - 2 * 0.375 * cov[0, 1] + 0.375**2 * cov[1, 1]) / (3 * (8 / 3) ** 2)
    assert est.variance == pytest.approx(moment)


def test_user_ctr_edge_cases() -> None:
    empty = user_ctr([], [])
    assert empty.n_users == 0 and math.isnan(empty.ctr)
    one = user_ctr([1], [4])
    assert one.ctr == 0.25 and math.isnan(one.variance)
    # users without impressions carry no information and are dropped
    assert user_ctr([0, 1, 0], [0, 2, 2]).n_users == 2
    with pytest.raises(ValueError, match="non-negative"):
        user_ctr([-1, 0], [1, 1])
    with pytest.raises(ValueError, match="equal length"):
        user_ctr([1, 0], [1])


def test_delta_variance_matches_the_spread_of_replicates() -> None:
    # clustered clicks (a per-user CTR drawn from a Beta): the delta-method variance tracks the true
    # spread of R over replicates, while the naive binomial variance p(1-p)/sum(n) underestimates it.
    rng = np.random.default_rng(3)
    ratios, deltas, naive = [], [], []
    for _ in range(300):
        n = rng.poisson(8, 500) + 1
        p = rng.beta(0.5, 4.5, 500)
        c = rng.binomial(n, p)
        est = user_ctr(c, n)
        ratios.append(est.ctr)
        deltas.append(est.variance)
        naive.append(est.ctr * (1 - est.ctr) / n.sum())
    true_var = float(np.var(ratios, ddof=1))
    assert np.mean(deltas) == pytest.approx(true_var, rel=0.2)
    assert np.mean(naive) < 0.7 * true_var


def test_compare_hand_computed() -> None:
    control = RatioEstimate(1000, 10_000, 1000, 0.10, 1e-6)
    treatment = RatioEstimate(1000, 10_000, 1200, 0.12, 4e-6)
    out = compare(control, treatment, alpha=0.05)
    z = 1.959963984540054
    assert out.diff == pytest.approx(0.02)
    assert out.diff_se == pytest.approx(math.sqrt(5e-6))
    assert out.diff_ci_low == pytest.approx(0.02 - z * math.sqrt(5e-6))
    # lift variance: 4e-6 / 0.01 + 0.0144 * 1e-6 / 1e-4 = 5.44e-4
    assert out.lift == pytest.approx(0.2)
    assert out.lift_se == pytest.approx(math.sqrt(5.44e-4))
    assert out.lift_ci_high == pytest.approx(0.2 + z * math.sqrt(5.44e-4))
    assert 0 < out.z_p_value < 1e-15


def test_compare_without_control_clicks_has_no_lift() -> None:
    out = compare(RatioEstimate(10, 100, 0, 0.0, 0.0), RatioEstimate(10, 100, 5, 0.05, 1e-4))
    assert math.isnan(out.lift) and out.diff == pytest.approx(0.05)


def test_msprt_hand_computed() -> None:
    # V = tau2 = 1e-4: log L = 0.5 ln(1/2) + tau2 D^2 / (2 V (V + tau2)) = -0.34657 + D^2 / 4e-4
    assert msprt_log_lambda(0.01, 1e-4, 1e-4) == pytest.approx(0.5 * math.log(0.5) + 0.25)
    assert msprt_p_value(0.01, 1e-4, 1e-4) == 1.0  # Lambda < 1: no evidence
    assert msprt_p_value(0.03, 1e-4, 1e-4) == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2.25)))
    # the running minimum never goes back up
    assert msprt_p_value(0.0, 1e-4, 1e-4, previous_p=0.2) == 0.2
    # no variance yet: no evidence
    assert msprt_log_lambda(0.5, math.nan, 1e-4) == 0.0
    with pytest.raises(ValueError, match="tau2"):
        msprt_log_lambda(0.1, 1e-4, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    diff=st.floats(-1, 1),
    variance=st.floats(1e-12, 1.0),
    tau2=st.floats(1e-8, 1.0),
    previous=st.floats(0, 1),
)
def test_msprt_p_value_is_a_running_minimum_in_unit_interval(
    diff: float, variance: float, tau2: float, previous: float
) -> None:
    p = msprt_p_value(diff, variance, tau2, previous_p=previous)
    assert 0.0 <= p <= previous


@settings(max_examples=100, deadline=None)
@given(diff=st.floats(1e-4, 0.1), variance=st.floats(1e-8, 1e-3))
def test_msprt_evidence_grows_with_the_effect(diff: float, variance: float) -> None:
    assert msprt_log_lambda(2 * diff, variance, 1e-4) >= msprt_log_lambda(diff, variance, 1e-4)


def test_msprt_aa_false_positive_rate_with_daily_looks() -> None:
    # 200 seeded A/A experiments, 14 daily looks each on cumulative data: always-valid p stays > alpha
    # in at least 95% of them (a fixed-horizon z-test looked at daily would exceed 5%).
    rng = np.random.default_rng(11)
    rejections = 0
    for _ in range(200):
        p = 1.0
        users_c = np.zeros((2, 300))
        users_n = np.zeros((2, 300))
        for _night in range(14):
            n = rng.poisson(3, (2, 300))
            c = rng.binomial(n, 0.1)
            users_c += c
            users_n += n
            ctl, trt = user_ctr(users_c[0], users_n[0]), user_ctr(users_c[1], users_n[1])
            p = msprt_p_value(trt.ctr - ctl.ctr, trt.variance + ctl.variance, 1e-4, p)
        rejections += p <= 0.05
    assert rejections / 200 <= 0.05


def test_srm_silent_on_50_50_and_fires_on_48_52() -> None:
    shares = {"control": 0.5, "treatment": 0.5}
    balanced = srm_test({"control": 10_000, "treatment": 10_000}, shares)
    assert balanced.p_value == pytest.approx(1.0) and not balanced.mismatch
    # 9600 vs 10400: chi2 = 2 * 400^2 / 10000 = 32
    skewed = srm_test({"control": 9_600, "treatment": 10_400}, shares, alpha=0.001)
    assert skewed.chi2 == pytest.approx(32.0)
    assert skewed.mismatch and skewed.p_value < 1e-7


def test_srm_uneven_design_and_errors() -> None:
    # 30/70 design, counts exactly on design: silent
    out = srm_test({"control": 300, "treatment": 700}, {"control": 0.3, "treatment": 0.7})
    assert out.chi2 == pytest.approx(0.0) and not out.mismatch
    assert not srm_test({}, {"control": 0.5, "treatment": 0.5}).mismatch
    with pytest.raises(ValueError, match="sum to 1"):
        srm_test({"control": 1}, {"control": 0.5, "treatment": 0.4})
    with pytest.raises(ValueError, match="no designed share"):
        srm_test({"other": 3}, {"control": 0.5, "treatment": 0.5})


def test_srm_false_alarm_rate_on_random_50_50_splits() -> None:
    rng = np.random.default_rng(5)
    shares = {"control": 0.5, "treatment": 0.5}
    alarms = 0
    for _ in range(500):
        t = int(rng.binomial(20_000, 0.5))
        alarms += srm_test({"control": 20_000 - t, "treatment": t}, shares, alpha=0.001).mismatch
    assert alarms <= 3  # expected 0.5


def test_per_user_mean_and_ratio_hand_computed() -> None:
    from deepcuts.models.abtest.ab_stats import per_user_mean, ratio_with_ci

    # control (0, 0, 1): mean 1/3, sample variance 1/3 -> Var(mean) = 1/9; treatment (2, 1, 0): 1, 1/3
    control, treatment = per_user_mean([0, 0, 1]), per_user_mean([2, 1, 0])
    assert control.ctr == pytest.approx(1 / 3) and control.variance == pytest.approx(1 / 9)
    assert treatment.ctr == pytest.approx(1.0) and treatment.variance == pytest.approx(1 / 3)
    assert control.n_users == 3 and control.impressions == 3  # every user counts, zeros included
    ratio, low, high = ratio_with_ci(control, treatment, alpha=0.05)
    # Var(ratio) = Vt / mc^2 + mt^2 Vc / mc^4 = (1/3) * 9 + (1/9) * 81 = 12
    half = 1.959963984540054 * math.sqrt(12)  # z_0.975
    assert ratio == pytest.approx(3.0) and (low, high) == pytest.approx((3.0 - half, 3.0 + half))
    # no niche click in control: the ratio is not measurable rather than infinite
    assert all(math.isnan(x) for x in ratio_with_ci(per_user_mean([0, 0]), per_user_mean([1, 2])))


# ------------------------------------------------------------------ scipy.special in place of scipy.stats
@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1 - 1e-12))
def test_normal_quantile_is_scipy_stats_bit_for_bit(q: float) -> None:
    from scipy import stats

    assert normal_quantile(q) == float(stats.norm.ppf(q))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, math.inf, 1e-300, 40.0])))
def test_normal_sf_is_scipy_stats_bit_for_bit(x: float) -> None:
    from scipy import stats

    assert normal_sf(x) == float(stats.norm.sf(x))
    assert math.isnan(normal_sf(math.nan)) and math.isnan(float(stats.norm.sf(math.nan)))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.floats(min_value=0.0, max_value=1e6), st.sampled_from([0.0, 1e-300, math.inf])),
    st.integers(min_value=0, max_value=8),
)
def test_chi2_sf_is_scipy_stats_bit_for_bit(x: float, df: int) -> None:
    from scipy import stats

    expected = float(stats.chi2.sf(x, df))
    got = chi2_sf(x, df)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_ab_stats_does_not_import_scipy_stats() -> None:
    """scipy.stats costs ~0.6 CPU-s per task that imports this module (docs/benchmarks.md)."""
    import subprocess
    import sys

    code = "import sys, deepcuts.models.abtest.ab_stats; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
