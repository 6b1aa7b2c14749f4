"""A/B test statistics with users as the unit: delta-method CTR, lift, mSPRT and the SRM check.

Everything here is pure math on per-user totals (numpy arrays); the nightly step
``deepcuts.pipelines.ab_analysis`` does the I/O.

Notation (one variant): user ``i`` of ``N`` saw ``n_i`` impressions and made ``c_i`` clicks.

* CTR is the ratio of sums ``R = sum(c) / sum(n)`` (every impression weighs the same, as in the
  product metric), but its variance is computed with users as the independent unit, because the
  impressions of one user are correlated. Delta method (Deng et al. 2018, "Applying the Delta Method in
  Metric Analytics"), with ``n_bar = mean(n)``::

      Var(R) ~= sum_i (c_i - R n_i)^2 / ((N - 1) N n_bar^2)

  which equals ``(s_c^2 - 2 R s_cn + R^2 s_n^2) / (N n_bar^2)`` with sample (co)variances.
* Difference ``D = R_t - R_c`` with ``Var(D) = Var(R_t) + Var(R_c)`` (independent groups).
* Relative lift ``L = R_t / R_c - 1`` with the delta method
  ``Var(L) ~= Var(R_t) / R_c^2 + R_t^2 Var(R_c) / R_c^4``.
* A per-user mean (e.g. niche clicks per exposed user) is the same ratio of sums with one "impression"
  per user, ``m = sum(x) / N``; the delta variance then reduces to the usual ``s_x^2 / N``. The ratio of
  two such means, treatment over control, is ``1 + L`` with the lift's CI shifted by one.
* Always-valid p-value: mixture sequential probability ratio test (mSPRT, Johari, Koomen, Pekelis and
  Walsh 2017, "Peeking at A/B Tests"), normal mixture ``theta ~ N(0, tau^2)`` on the difference. With the
  estimate ``D_n`` and its variance ``V_n`` after the ``n``-th look::

      Lambda_n = sqrt(V_n / (V_n + tau^2)) * exp(tau^2 D_n^2 / (2 V_n (V_n + tau^2)))
      p_n      = min(p_{n-1}, 1 / Lambda_n),   p_0 = 1

  (their two-sample formula with ``V_n = 2 sigma^2 / n``). ``P(exists n: p_n <= alpha) <= alpha`` under
  H0, so the test may be looked at every night without inflating false positives.
* Sample ratio mismatch: Pearson chi-square goodness of fit of the user counts per variant against the
  designed shares, ``chi2 = sum_v (O_v - E_v)^2 / E_v`` with ``k - 1`` degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# scipy.special, not scipy.stats: the three distribution functions below are the special functions
# scipy.stats itself evaluates (norm.ppf = ndtri, norm.sf(x) = ndtr(-x), chi2.sf = chdtrc), and
# importing scipy.stats costs ~0.6 CPU-s in every task that imports this module (ab_analysis, monitor
# and report, each its own process; docs/benchmarks.md).
from scipy import special


def normal_quantile(q: float) -> float:
    """``scipy.stats.norm.ppf(q)`` for ``0 < q < 1``, bit for bit."""
    return float(special.ndtri(q))


def normal_sf(x: float) -> float:
    """``scipy.stats.norm.sf(x)``, bit for bit (NaN for NaN, 0 at +inf)."""
    return float(special.ndtr(-x))


def chi2_sf(x: float, df: int) -> float:
    """``scipy.stats.chi2.sf(x, df)``, bit for bit: NaN for ``df <= 0`` or NaN ``x``, 1 for ``x <= 0``."""
    if df <= 0 or math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    return float(special.chdtrc(df, x))


@dataclass(frozen=True)
class RatioEstimate:
    """CTR of one variant with its user-level (delta-method) variance."""

    n_users: int
    impressions: float
    clicks: float
    ctr: float
    variance: float

    @property
    def se(self) -> float:
        return math.sqrt(self.variance) if self.variance >= 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "se": self.se}


def user_ctr(clicks: npt.ArrayLike, impressions: npt.ArrayLike) -> RatioEstimate:
    """CTR ``sum(c) / sum(n)`` and its delta-method variance over users (see the module docstring).

    ``clicks`` and ``impressions`` are per-user totals of the same length. Users with no impression are
    ignored (they carry no information about the ratio). With fewer than two users, or no impression
    at all, the variance is NaN (and the CTR too when there is no impression).
    """
    c = np.asarray(clicks, dtype=np.float64)
    n = np.asarray(impressions, dtype=np.float64)
    if c.shape != n.shape or c.ndim != 1:
        raise ValueError(f"clicks {c.shape} and impressions {n.shape} must be 1-d arrays of equal length")
    if (c < 0).any() or (n < 0).any():
        raise ValueError("clicks and impressions must be non-negative counts")
    keep = n > 0
    c, n = c[keep], n[keep]
    users = int(n.size)
    total_n, total_c = float(n.sum()), float(c.sum())
    if users == 0:
        return RatioEstimate(0, 0.0, total_c, math.nan, math.nan)
    ratio = total_c / total_n
    if users < 2:
        return RatioEstimate(users, total_n, total_c, ratio, math.nan)
    n_bar = total_n / users
    resid = c - ratio * n
    variance = float(resid @ resid) / ((users - 1) * users * n_bar**2)
    return RatioEstimate(users, total_n, total_c, ratio, variance)


def per_user_mean(values: npt.ArrayLike) -> RatioEstimate:
    """Mean of a per-user count over the given (exposed) users, as a :class:`RatioEstimate`.

    ``user_ctr(values, 1 per user)``: the ratio of sums with one unit per user, so the delta variance is
    ``s^2 / N`` (sample variance over users). ``impressions`` of the result is the number of users.
    """
    x = np.asarray(values, dtype=np.float64)
    return user_ctr(x, np.ones_like(x))


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control: absolute difference and relative lift, each with a two-sided CI."""

    diff: float
    diff_se: float
    diff_ci_low: float
    diff_ci_high: float
    lift: float
    lift_se: float
    lift_ci_low: float
    lift_ci_high: float
    #: Fixed-horizon two-sided z-test p-value of the difference (for reference only: not valid under
    #: repeated looks; decisions use the mSPRT p-value).
    z_p_value: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compare(control: RatioEstimate, treatment: RatioEstimate, alpha: float = 0.05) -> Comparison:
    """Difference ``R_t - R_c`` and lift ``R_t / R_c - 1`` with ``1 - alpha`` normal CIs (delta method)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z = normal_quantile(1 - alpha / 2)
    rc, rt = control.ctr, treatment.ctr
    diff = rt - rc
    diff_var = treatment.variance + control.variance
    diff_se = math.sqrt(diff_var) if diff_var >= 0 else math.nan
    if math.isfinite(rc) and rc > 0:
        lift = rt / rc - 1.0
        lift_var = treatment.variance / rc**2 + rt**2 * control.variance / rc**4
        lift_se = math.sqrt(lift_var) if lift_var >= 0 else math.nan
    else:
        lift = lift_se = math.nan
    z_p = 2 * normal_sf(abs(diff) / diff_se) if math.isfinite(diff_se) and diff_se > 0 else math.nan
    return Comparison(
        diff=diff,
        diff_se=diff_se,
        diff_ci_low=diff - z * diff_se,
        diff_ci_high=diff + z * diff_se,
        lift=lift,
        lift_se=lift_se,
        lift_ci_low=lift - z * lift_se,
        lift_ci_high=lift + z * lift_se,
        z_p_value=z_p,
    )


def ratio_with_ci(
    control: RatioEstimate, treatment: RatioEstimate, alpha: float = 0.05
) -> tuple[float, float, float]:
    """``R_t / R_c`` and its ``1 - alpha`` delta-method CI: ``1 + L`` with the CI of the lift ``L``.

    NaN when the control ratio is zero or unknown (a ratio to nothing is not measurable).
    """
    cmp_ = compare(control, treatment, alpha)
    return 1.0 + cmp_.lift, 1.0 + cmp_.lift_ci_low, 1.0 + cmp_.lift_ci_high


def msprt_log_lambda(diff: float, variance: float, tau2: float) -> float:
    """``log Lambda`` of the normal-mixture mSPRT for H0: difference = 0 (formula in the module doc).

    Returns 0 (no evidence) when the variance is not a positive finite number, e.g. before both
    variants have two users.
    """
    if tau2 <= 0:
        raise ValueError(f"the mixing variance tau2 must be > 0, got {tau2}")
    if not (math.isfinite(diff) and math.isfinite(variance)) or variance <= 0:
        return 0.0
    return 0.5 * math.log(variance / (variance + tau2)) + tau2 * diff**2 / (
        2.0 * variance * (variance + tau2)
    )


def msprt_p_value(diff: float, variance: float, tau2: float, previous_p: float = 1.0) -> float:
    """Always-valid p-value after one more look: ``min(previous_p, 1 / Lambda)``, in [0, 1]."""
    if not 0 <= previous_p <= 1:
        raise ValueError(f"previous_p must be in [0, 1], got {previous_p}")
    log_lambda = msprt_log_lambda(diff, variance, tau2)
    p_now = 1.0 if log_lambda <= 0 else math.exp(-log_lambda)
    return min(previous_p, p_now)


@dataclass(frozen=True)
class SRMResult:
    """Sample ratio mismatch check: chi-square of observed against designed user counts."""

    chi2: float
    p_value: float
    observed: dict[str, int]
    expected: dict[str, float]
    mismatch: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm_test(observed: Mapping[str, int], shares: Mapping[str, float], alpha: float = 0.001) -> SRMResult:
    """Pearson chi-square test that ``observed`` user counts follow the designed ``shares``.

    ``shares`` must cover the same variants as ``observed`` (missing observed counts are zero) and sum
    to 1. ``mismatch`` is ``p_value < alpha``. With no users at all the test is silent (p = 1).
    """
    total_share = sum(shares.values())
    if not math.isclose(total_share, 1.0, abs_tol=1e-9) or any(s <= 0 for s in shares.values()):
        raise ValueError(f"variant shares must be positive and sum to 1, got {dict(shares)}")
    unknown = set(observed) - set(shares)
    if unknown:
        raise ValueError(f"observed variants {sorted(unknown)} have no designed share in {sorted(shares)}")
    names = sorted(shares)
    obs = np.array([observed.get(v, 0) for v in names], dtype=np.float64)
    total = float(obs.sum())
    expected = {v: total * shares[v] for v in names}
    if total == 0:
        return SRMResult(0.0, 1.0, {v: 0 for v in names}, expected, False)
    exp = np.array([expected[v] for v in names])
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p = chi2_sf(chi2, len(names) - 1)
    return SRMResult(chi2, p, {v: int(o) for v, o in zip(names, obs, strict=True)}, expected, p < alpha)
