"""Off-policy evaluation of the CTR per list impression: IPS, SNIPS and doubly robust, with bootstrap CIs.

Logged trials ``i = 1..n``: context ``x_i``, logged arm ``a_i`` drawn with propensity ``p_i = mu(a_i|x_i)``,
reward ``r_i`` in {0, 1}. For a target policy ``pi`` (a contexts x arms matrix of probabilities) the
importance weight is ``w_i = pi(a_i|x_i) / p_i`` and, with a reward model ``q(x, a)``:

    IPS    V = (1/n) Σ_i w_i r_i                                  (unbiased when p_i > 0 wherever pi > 0)
    SNIPS  V = Σ_i w_i r_i / Σ_i w_i                              (self-normalised: small bias, less variance)
    DR     V = (1/n) Σ_i [ Σ_a pi(a|x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ]
                                                                  (unbiased if either p or q is right)
    ESS    = (Σ_i w_i)^2 / Σ_i w_i^2                              (Kish effective sample size)

Intervals: percentile bootstrap (2.5%, 97.5%) resampling *clusters* (users) with replacement, because one
user's four daypart lists are not independent. Each estimator is a ratio of per-cluster sums, so one
replicate is a weighted sum with multinomial cluster counts: the bootstrap is a matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")


@dataclass(frozen=True)
class LoggedTrials:
    """Logged bandit data, one entry per trial (list impression)."""

    context: npt.NDArray[np.int64]
    arm: npt.NDArray[np.int64]
    propensity: FloatArray
    reward: FloatArray
    cluster: npt.NDArray[np.int64]  # resampling unit (user id)

    def __post_init__(self) -> None:
        n = self.context.shape[0]
        for name in ("arm", "propensity", "reward", "cluster"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(
                    f"LoggedTrials.{name} has {getattr(self, name).shape[0]} entries, expected {n}"
                )
        if n and (np.any(self.propensity <= 0) or np.any(self.propensity > 1)):
            raise ValueError("logged propensities must lie in (0, 1]; a zero propensity cannot be reweighted")

    @property
    def n(self) -> int:
        return int(self.context.shape[0])


@dataclass(frozen=True)
class Estimate:
    policy: str
    estimator: str
    estimate: float
    ci_low: float
    ci_high: float
    n_trials: int
    ess: float
    thin_support: bool


def importance_weights(policy: FloatArray, trials: LoggedTrials) -> FloatArray:
    """``w_i = pi(a_i | x_i) / p_i``."""
    return policy[trials.context, trials.arm] / trials.propensity


def effective_sample_size(weights: FloatArray) -> float:
    """Kish: ``(Σ w)^2 / Σ w^2`` (0 when every weight is 0)."""
    sq = float(np.square(weights).sum())
    return float(weights.sum() ** 2 / sq) if sq > 0 else 0.0


def point_estimates(policy: FloatArray, trials: LoggedTrials, reward_model: FloatArray) -> dict[str, float]:
    """IPS, SNIPS and DR point estimates (formulas in the module docstring)."""
    if trials.n == 0:
        return dict.fromkeys(ESTIMATORS, float("nan"))
    w = importance_weights(policy, trials)
    r = trials.reward
    dm = (policy * reward_model).sum(axis=1)[trials.context]
    q = reward_model[trials.context, trials.arm]
    sw = float(w.sum())
    return {
        "ips": float((w * r).mean()),
        "snips": float((w * r).sum() / sw) if sw > 0 else float("nan"),
        "dr": float((dm + w * (r - q)).mean()),
    }


def _cluster_sums(
    policies: list[FloatArray], trials: LoggedTrials, reward_model: FloatArray
) -> tuple[FloatArray, int]:
    """Per-cluster sums: column 0 = trials, then per policy (Σ w r, Σ w, Σ dr-term)."""
    _, inverse = np.unique(trials.cluster, return_inverse=True)
    n_clusters = int(inverse.max()) + 1 if trials.n else 0
    columns = [np.bincount(inverse, minlength=n_clusters).astype(np.float64)]
    r = trials.reward
    for pi in policies:
        w = importance_weights(pi, trials)
        dm = (pi * reward_model).sum(axis=1)[trials.context]
        q = reward_model[trials.context, trials.arm]
        columns.append(np.bincount(inverse, w * r, minlength=n_clusters))
        columns.append(np.bincount(inverse, w, minlength=n_clusters))
        columns.append(np.bincount(inverse, dm + w * (r - q), minlength=n_clusters))
    return np.column_stack(columns), n_clusters


def evaluate_policies(
    policies: dict[str, FloatArray],
    trials: LoggedTrials,
    reward_model: FloatArray,
    n_boot: int,
    rng: np.random.Generator,
    min_ess: float,
    chunk: int = 50,
) -> list[Estimate]:
    """IPS/SNIPS/DR estimates with 95% cluster-bootstrap intervals for every named target policy.

    ``thin_support`` is set when the policy's effective sample size is below ``min_ess`` (or no trial
    was logged): the estimate rests on too few comparable impressions to be trusted.
    """
    names = list(policies)
    mats = [np.asarray(policies[name], dtype=np.float64) for name in names]
    for name, pi in zip(names, mats, strict=True):
        if pi.shape != reward_model.shape:
            raise ValueError(f"policy {name!r} has shape {pi.shape}, reward model {reward_model.shape}")
        if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError(f"policy {name!r} rows must be probability distributions")
    if trials.n == 0:
        nan = float("nan")
        return [Estimate(n, e, nan, nan, nan, 0, 0.0, True) for n in names for e in ESTIMATORS]

    sums, n_clusters = _cluster_sums(mats, trials, reward_model)
    boots = np.empty((n_boot, sums.shape[1]))
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        picks = rng.integers(0, n_clusters, size=(size, n_clusters))
        offsets = (np.arange(size) * n_clusters)[:, None]
        counts = np.bincount((picks + offsets).ravel(), minlength=size * n_clusters).reshape(size, n_clusters)
        boots[done : done + size] = counts.astype(np.float64) @ sums
        done += size

    out = []
    n_col = boots[:, 0]
    for p, (name, pi) in enumerate(zip(names, mats, strict=True)):
        point = point_estimates(pi, trials, reward_model)
        ess = effective_sample_size(importance_weights(pi, trials))
        s_wr, s_w, s_dr = boots[:, 1 + 3 * p], boots[:, 2 + 3 * p], boots[:, 3 + 3 * p]
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = {"ips": s_wr / n_col, "snips": s_wr / s_w, "dr": s_dr / n_col}
        for est in ESTIMATORS:
            reps = replicates[est][np.isfinite(replicates[est])]
            lo, hi = np.percentile(reps, [2.5, 97.5]) if reps.size else (np.nan, np.nan)
            out.append(
                Estimate(
                    policy=name,
                    estimator=est,
                    estimate=point[est],
                    ci_low=float(lo),
                    ci_high=float(hi),
                    n_trials=trials.n,
                    ess=ess,
                    thin_support=bool(ess < min_ess),
                )
            )
    return out


def true_policy_value(policy: FloatArray, context_probability: FloatArray, ctr: FloatArray) -> float:
    """``V(pi) = Σ_x P(x) Σ_a pi(a|x) ctr(x, a)`` (ground truth on a synthetic problem)."""
    return float((context_probability[:, None] * policy * ctr).sum())
