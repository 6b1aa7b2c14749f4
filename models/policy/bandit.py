"""Beta-Bernoulli Thompson sampling over the arms, per context: posterior arithmetic and selection odds.

Notation: contexts ``c`` (segment x daypart, :data:`deepcuts.models.policy.context.CONTEXTS`), arms ``k``; the
posterior of the click-through rate of arm ``k`` in context ``c`` is ``Beta(alpha[c, k], beta[c, k])``.

Daily update with discounting toward the prior ``Beta(a0, b0)`` (``d`` = ``discount``, ``s``/``f`` =
the day's successes/failures):

    alpha' = a0 + d**days * (alpha - a0) + s
    beta'  = b0 + d**days * (beta  - b0) + f

so the evidence of ``t`` days ago weighs ``d**t`` (effective memory ``1 / (1 - d)`` days) and a posterior
never forgets the prior.

Thompson probability of arm ``i`` (the chance that it has the largest Beta draw):

    P(i wins) = ∫ f_i(x) Π_{j≠i} F_j(x) dx = ∫_0^1 Π_{j≠i} F_j(Q_i(u)) du

with ``f``/``F``/``Q`` the Beta pdf/cdf/quantile function. The second form (substituting ``u = F_i(x)``)
has a bounded, non-decreasing integrand on [0, 1], so the midpoint rule with ``n`` points errs by at
most ``1/n`` per arm whatever the shapes of the posteriors (no pdf singularity, no peak to miss).
The exploration floor ``e`` then mixes with the uniform distribution over the ``K`` arms:

    p_k = e + (1 - K e) * P(k wins)    (so p_k >= e and Σ_k p_k = 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


# ----------------------------------------------------------------------------- posterior arithmetic
def discount_toward_prior(
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    prior_alpha: float,
    prior_beta: float,
    discount: float,
    days: int = 1,
) -> tuple[FloatArray, FloatArray]:
    """Shrink a posterior toward the prior: ``a0 + d**days * (alpha - a0)`` (same for beta)."""
    if not 0 < discount <= 1:
        raise ValueError(f"discount must be in (0, 1], got {discount}")
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    factor = discount**days
    a = prior_alpha + factor * (np.asarray(alpha, dtype=np.float64) - prior_alpha)
    b = prior_beta + factor * (np.asarray(beta, dtype=np.float64) - prior_beta)
    return a, b


def update_posterior(
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    trials: npt.ArrayLike,
    successes: npt.ArrayLike,
    prior_alpha: float,
    prior_beta: float,
    discount: float,
    days: int = 1,
) -> tuple[FloatArray, FloatArray]:
    """One nightly update: discount the old posterior ``days`` times, then add the day's evidence.

    ``alpha' = a0 + d**days (alpha - a0) + s``, ``beta' = b0 + d**days (beta - b0) + (t - s)``.
    ``successes`` may be fractional (late-click corrections, see docs/bandit.md) but must lie in
    ``[0, trials]`` once the failures they convert are accounted for by the caller.
    """
    t = np.asarray(trials, dtype=np.float64)
    s = np.asarray(successes, dtype=np.float64)
    if np.any(t < 0) or np.any(s < 0):
        raise ValueError("trials and successes must be non-negative")
    a, b = discount_toward_prior(alpha, beta, prior_alpha, prior_beta, discount, days)
    return a + s, b + (t - s)


def posterior_mean(alpha: npt.ArrayLike, beta: npt.ArrayLike) -> FloatArray:
    """``alpha / (alpha + beta)``."""
    a = np.asarray(alpha, dtype=np.float64)
    return a / (a + np.asarray(beta, dtype=np.float64))


# ----------------------------------------------------------------------------- selection probabilities
def _check_params(alpha: FloatArray, beta: FloatArray) -> None:
    if alpha.shape != beta.shape or alpha.ndim != 2:
        raise ValueError(
            f"alpha and beta must be 2-d (contexts x arms) of one shape: {alpha.shape}, {beta.shape}"
        )
    if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(beta))):
        raise ValueError("alpha and beta must be finite")
    if np.any(alpha <= 0) or np.any(beta <= 0):
        raise ValueError("alpha and beta must be > 0")


def thompson_probabilities(alpha: npt.ArrayLike, beta: npt.ArrayLike, points: int = 2000) -> FloatArray:
    """Exact P(arm is the argmax of independent Beta draws), per row (context) of ``alpha``/``beta``.

    Midpoint rule on ``∫_0^1 Π_{j≠i} F_j(Q_i(u)) du`` (module docstring) with ``points`` nodes: the
    error is at most ``1/points`` per arm before the rows are renormalised to sum to 1. Parameters
    below ~0.1 put so much mass at 0 and 1 that float64 quantiles round onto the endpoints (the
    settings forbid such priors; posteriors never fall below their prior).
    """
    # imported here: scipy.special costs ~0.3 CPU-s to import, and of the tasks importing this module
    # only the bandit update computes these probabilities (assign, intraday and ope never do)
    from scipy import special

    a = np.atleast_2d(np.asarray(alpha, dtype=np.float64))
    b = np.atleast_2d(np.asarray(beta, dtype=np.float64))
    _check_params(a, b)
    n_ctx, n_arms = a.shape
    if n_arms == 1:
        return np.ones_like(a)
    u = (np.arange(points, dtype=np.float64) + 0.5) / points
    out = np.empty_like(a)
    for c in range(n_ctx):
        # x[i, m] = Q_i(u_m): the m-th quantile of arm i
        x = special.betaincinv(a[c][:, None], b[c][:, None], u[None, :])
        # cdf[j, i, m] = F_j(Q_i(u_m)); the product over j != i uses log-sums to stay stable
        cdf = special.betainc(a[c][:, None, None], b[c][:, None, None], x[None, :, :])
        with np.errstate(divide="ignore"):
            log_cdf = np.log(cdf)
        diag = np.arange(n_arms)
        log_cdf[diag, diag, :] = 0.0  # exclude j == i
        out[c] = np.exp(log_cdf.sum(axis=0)).mean(axis=1)
    return out / out.sum(axis=1, keepdims=True)


def thompson_probabilities_mc(
    alpha: npt.ArrayLike, beta: npt.ArrayLike, draws: int, rng: np.random.Generator
) -> FloatArray:
    """Monte Carlo estimate of the same probabilities: share of ``draws`` in which each arm's draw is max.

    Standard error ``sqrt(p (1 - p) / draws)`` <= ``0.5 / sqrt(draws)`` (40k draws: +-0.005 at 95%).
    """
    a = np.atleast_2d(np.asarray(alpha, dtype=np.float64))
    b = np.atleast_2d(np.asarray(beta, dtype=np.float64))
    _check_params(a, b)
    out = np.empty_like(a)
    for c in range(a.shape[0]):
        samples = rng.beta(a[c], b[c], size=(draws, a.shape[1]))
        out[c] = np.bincount(samples.argmax(axis=1), minlength=a.shape[1]) / draws
    return out


def apply_floor(probabilities: npt.ArrayLike, floor: float) -> FloatArray:
    """Mix with uniform so every arm keeps at least ``floor``: ``p' = e + (1 - K e) p``."""
    p = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    n_arms = p.shape[1]
    if floor < 0 or floor * n_arms > 1:
        raise ValueError(f"exploration floor {floor} x {n_arms} arms must lie in [0, 1]")
    return floor + (1.0 - n_arms * floor) * p


@dataclass(frozen=True)
class BanditConfig:
    """The knobs the math needs (built from :class:`deepcuts.settings.BanditSettings`)."""

    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    discount: float = 0.98
    exploration_floor: float = 0.02
    method: str = "exact"
    points: int = 2000
    mc_draws: int = 40_000
    pooling: str = "none"
    pooling_strength: float = 50.0
    pooling_rule: str = "fixed"

    @classmethod
    def from_settings(cls, cfg: object) -> BanditConfig:
        return cls(
            prior_alpha=cfg.prior_alpha,  # type: ignore[attr-defined]
            prior_beta=cfg.prior_beta,  # type: ignore[attr-defined]
            discount=cfg.discount,  # type: ignore[attr-defined]
            exploration_floor=cfg.exploration_floor,  # type: ignore[attr-defined]
            method=cfg.selection_method,  # type: ignore[attr-defined]
            points=cfg.integration_points,  # type: ignore[attr-defined]
            mc_draws=cfg.mc_draws,  # type: ignore[attr-defined]
            pooling=cfg.pooling,  # type: ignore[attr-defined]
            pooling_strength=cfg.pooling_strength,  # type: ignore[attr-defined]
            pooling_rule=cfg.pooling_rule,  # type: ignore[attr-defined]
        )


POOLING_RULES: tuple[str, ...] = ("fixed", "empirical_bayes")


def group_concentration(
    alpha: npt.ArrayLike, beta: npt.ArrayLike, prior_alpha: float, prior_beta: float
) -> float:
    """Method-of-moments concentration ``kappa`` of the contexts of one group (rows), pooled over arms.

    Model: in context ``c`` arm ``k`` has CTR ``p_ck ~ Beta`` with mean ``m_k`` and concentration
    ``kappa`` (variance ``tau2_k = m_k (1 - m_k) / (kappa + 1)``), and the evidence ``s_ck`` successes in
    ``n_ck`` trials (``alpha - a0``, ``alpha + beta - a0 - b0``) is binomial given ``p_ck``. Per arm,
    with ``N = sum_c n_ck``, ``m = sum_c s_ck / N``, ``p_ck = s_ck / n_ck`` and ``C`` contexts with
    evidence, the weighted spread

        Q_k = sum_c n_ck (p_ck - m_k)**2,
        E[Q_k] = (C - 1) m_k (1 - m_k) + tau2_k (N - sum_c n_ck**2 / N)

    (the DerSimonian-Laird moment identity for proportions). Summing over arms and solving for a
    common relative heterogeneity gives

        kappa = V / T - 1,   T = max(0, sum_k [Q_k - (C - 1) m_k (1 - m_k)]) / sum_k D_k,
        V = sum_k D_k m_k (1 - m_k) / sum_k D_k,   D_k = N - sum_c n_ck**2 / N

    clipped to ``[0, inf]``: ``inf`` when the contexts look alike (no spread beyond binomial noise, or no
    evidence yet), small when they disagree. The discounted evidence is used as if it were counts.
    """
    a = np.atleast_2d(np.asarray(alpha, dtype=np.float64))
    b = np.atleast_2d(np.asarray(beta, dtype=np.float64))
    s = np.maximum(a - prior_alpha, 0.0)
    n = s + np.maximum(b - prior_beta, 0.0)
    total = n.sum(axis=0)
    seen = total > 0
    if a.shape[0] < 2 or not seen.any():
        return float("inf")
    s, n, total = s[:, seen], n[:, seen], total[seen]
    m = s.sum(axis=0) / total
    p = np.divide(s, n, out=np.broadcast_to(m, n.shape).copy(), where=n > 0)
    q = (n * (p - m) ** 2).sum(axis=0)
    contexts = (n > 0).sum(axis=0)
    within = m * (1.0 - m)
    d = total - (n**2).sum(axis=0) / total
    if d.sum() <= 0:  # all evidence in one context: nothing to compare
        return float("inf")
    excess = float((q - (contexts - 1) * within).sum())
    if excess <= 0:
        return float("inf")
    tau2 = excess / float(d.sum())
    v = float((d * within).sum() / d.sum())
    return max(v / tau2 - 1.0, 0.0)


def pool_parameters(
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    groups: npt.ArrayLike | None,
    prior_alpha: float,
    prior_beta: float,
    strength: float,
    rule: str = "fixed",
) -> tuple[FloatArray, FloatArray]:
    """Borrow strength from the other contexts of a group (shrinkage toward the group's mean).

    For context ``c`` in group ``g`` and arm ``k``, with ``s``/``f`` the evidence (``alpha - a0``,
    ``beta - b0``) summed over the *other* contexts of ``g`` (leave-one-out, so a context never counts
    its own evidence twice) and ``n = s + f``:

        m = (a0 + s) / (a0 + b0 + n),   w = min(W_g, n)
        alpha_eff = alpha + w m,        beta_eff = beta + w (1 - m)

    i.e. up to ``W_g`` pseudo-trials at the group's mean, never more than the group has seen.
    ``rule = "fixed"``: ``W_g = strength``. ``rule = "empirical_bayes"``: ``W_g = min(strength, kappa_g)``
    with ``kappa_g`` the group's concentration estimated from its own evidence
    (:func:`group_concentration`): contexts that agree borrow up to ``strength``, contexts whose arms
    rank differently borrow little, so pooling cannot lock a context onto its neighbours' best arm.
    ``groups`` = None or ``strength`` = 0 returns the inputs unchanged.
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if groups is None or strength <= 0:
        _check_rule(rule)
        return a.copy(), b.copy()
    caps = pooling_weights(a, b, groups, prior_alpha, prior_beta, strength, rule)
    return shrink_toward_groups(a, b, groups, prior_alpha, prior_beta, caps)


def shrink_toward_groups(
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    groups: npt.ArrayLike,
    prior_alpha: float,
    prior_beta: float,
    caps: dict[int, float],
) -> tuple[FloatArray, FloatArray]:
    """The shrinkage of :func:`pool_parameters` with the caps ``W_g`` given (:func:`pooling_weights`)."""
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    g = _group_ids(groups, a)
    s_own = np.maximum(a - prior_alpha, 0.0)
    f_own = np.maximum(b - prior_beta, 0.0)
    a_eff, b_eff = a.copy(), b.copy()
    for group, weight in caps.items():
        rows = g == group
        s = s_own[rows].sum(axis=0, keepdims=True) - s_own[rows]
        f = f_own[rows].sum(axis=0, keepdims=True) - f_own[rows]
        n = s + f
        m = (prior_alpha + s) / (prior_alpha + prior_beta + n)
        w = np.minimum(weight, n)
        a_eff[rows] += w * m
        b_eff[rows] += w * (1.0 - m)
    return a_eff, b_eff


def pooling_weights(
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    groups: npt.ArrayLike,
    prior_alpha: float,
    prior_beta: float,
    strength: float,
    rule: str = "fixed",
) -> dict[int, float]:
    """Group id -> the cap ``W_g`` on borrowed pseudo-trials (see :func:`pool_parameters`)."""
    _check_rule(rule)
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    g = _group_ids(groups, a)
    out: dict[int, float] = {}
    for group in np.unique(g):
        rows = g == group
        cap = float(strength)
        if rule == "empirical_bayes":
            cap = min(cap, group_concentration(a[rows], b[rows], prior_alpha, prior_beta))
        out[int(group)] = cap
    return out


def _group_ids(groups: npt.ArrayLike, alpha: FloatArray) -> npt.NDArray[np.int64]:
    g = np.asarray(groups, dtype=np.int64)
    if g.shape != (alpha.shape[0],):
        raise ValueError(f"groups must give one group per context row: {g.shape} vs {alpha.shape[0]} rows")
    return g


def _check_rule(rule: str) -> None:
    if rule not in POOLING_RULES:
        raise ValueError(f"unknown pooling rule {rule!r}; use one of {list(POOLING_RULES)}")


def pool_with(
    config: BanditConfig, alpha: npt.ArrayLike, beta: npt.ArrayLike, groups: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray, dict[int, float]]:
    """:func:`pool_parameters` with the prior, strength and rule of ``config``; also returns the caps
    ``W_g`` it used (empty without pooling), computed once."""
    a0, b0 = config.prior_alpha, config.prior_beta
    if groups is None or config.pooling_strength <= 0:
        a, b = pool_parameters(alpha, beta, None, a0, b0, config.pooling_strength, config.pooling_rule)
        return a, b, {}
    caps = pooling_weights(alpha, beta, groups, a0, b0, config.pooling_strength, config.pooling_rule)
    a_eff, b_eff = shrink_toward_groups(alpha, beta, groups, a0, b0, caps)
    return a_eff, b_eff, caps


def pool_snapshot_with(
    config: BanditConfig,
    snapshot_alpha: npt.ArrayLike,
    snapshot_beta: npt.ArrayLike,
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    groups: npt.ArrayLike | None,
) -> tuple[FloatArray, FloatArray, dict[int, float]]:
    """Pool a snapshot only, then add the evidence gathered since unpooled (the intraday refresh).

    ``alpha``/``beta`` is the snapshot plus the new evidence. The pseudo-trials each context borrows
    (``alpha_eff - alpha``) and the caps ``W_g`` are those :func:`pool_with` gives the snapshot, so the
    new evidence moves only its own context: a few hours of one context's evidence cannot pull its
    neighbours (nor re-estimate the empirical-Bayes caps from a part of a day, which keeps them at
    ``pooling_strength`` on the first day). With no new evidence this is ``pool_with`` of the snapshot.
    Returns ``(alpha_eff, beta_eff, caps)``.
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    a_snap = np.asarray(snapshot_alpha, dtype=np.float64)
    b_snap = np.asarray(snapshot_beta, dtype=np.float64)
    if a_snap.shape != a.shape or b_snap.shape != b.shape:
        raise ValueError(f"snapshot {a_snap.shape} and posterior {a.shape} must have the same shape")
    pooled_a, pooled_b, caps = pool_with(config, a_snap, b_snap, groups)
    return a + (pooled_a - a_snap), b + (pooled_b - b_snap), caps


def selection_probabilities(
    alpha: npt.ArrayLike,
    beta: npt.ArrayLike,
    config: BanditConfig,
    rng: np.random.Generator | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(Thompson probabilities, selection probabilities after the floor), each contexts x arms."""
    if config.method == "exact":
        raw = thompson_probabilities(alpha, beta, config.points)
    elif config.method == "monte_carlo":
        if rng is None:
            raise ValueError("monte_carlo selection probabilities need an explicit rng")
        raw = thompson_probabilities_mc(alpha, beta, config.mc_draws, rng)
    else:
        raise ValueError(f"unknown selection method {config.method!r}; use 'exact' or 'monte_carlo'")
    return raw, apply_floor(raw, config.exploration_floor)


# ----------------------------------------------------------------------------- sampling
def uniform_hash(keys: npt.ArrayLike, seed: int) -> FloatArray:
    """A uniform number in [0, 1) per non-negative integer key, from splitmix64(seed, key).

    Counter-based, so a user's draw depends only on (seed, key): adding users never shifts the
    draws of others, and the result is identical on every machine.
    """
    k = np.asarray(keys, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = k * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_arms(
    probabilities: npt.ArrayLike, rows: npt.ArrayLike, uniforms: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Arm index per draw by inverse CDF: the first ``k`` with ``cumsum(p[row])[k] > u``."""
    p = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    cum = np.cumsum(p, axis=1)
    cum[:, -1] = np.inf  # guard against rounding: u < 1 always lands on an arm
    r = np.asarray(rows, dtype=np.int64)
    u = np.asarray(uniforms, dtype=np.float64)
    return (cum[r] <= u[:, None]).sum(axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- closed-loop learning
def simulate_policy_learning(
    true_ctr: npt.ArrayLike,
    nights: int,
    impressions_per_context: int,
    config: BanditConfig,
    seed: int,
    groups: npt.ArrayLike | None = None,
) -> dict[str, FloatArray]:
    """Run the nightly loop on a Bernoulli world and report how fast traffic moves to the best arm.

    Night ``t``: serve ``impressions_per_context`` list impressions per context with arms drawn from the
    selection probabilities of the current posterior, draw clicks ``~ Bernoulli(true_ctr[c, arm])``, then
    update the posterior (discount + evidence). With ``groups`` (one group id per context row) and
    ``config.pooling_strength > 0`` the choice uses :func:`pool_parameters`. Returns arrays
    (nights x contexts) of
    ``best_arm_share`` (realised share of the night's traffic on the true best arm), ``best_arm_probability``
    (its selection probability that night) and ``cumulative_regret`` (expected clicks lost against
    always playing the best arm, summed over contexts and nights; shape ``(nights,)``).
    """
    ctr = np.atleast_2d(np.asarray(true_ctr, dtype=np.float64))
    if np.any((ctr < 0) | (ctr > 1)):
        raise ValueError("true_ctr must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    n_ctx = ctr.shape[0]
    best = ctr.argmax(axis=1)
    alpha = np.full_like(ctr, config.prior_alpha)
    beta = np.full_like(ctr, config.prior_beta)
    share = np.empty((nights, n_ctx))
    prob = np.empty((nights, n_ctx))
    regret = np.empty(nights)
    total = 0.0
    for night in range(nights):
        a_eff, b_eff, _ = pool_with(config, alpha, beta, groups)
        _, p = selection_probabilities(a_eff, b_eff, config, rng)
        counts = np.stack([rng.multinomial(impressions_per_context, p[c]) for c in range(n_ctx)])
        clicks = rng.binomial(counts, ctr)
        share[night] = counts[np.arange(n_ctx), best] / max(impressions_per_context, 1)
        prob[night] = p[np.arange(n_ctx), best]
        total += float((counts * (ctr.max(axis=1, keepdims=True) - ctr)).sum())
        regret[night] = total
        alpha, beta = update_posterior(
            alpha, beta, counts, clicks, config.prior_alpha, config.prior_beta, config.discount
        )
    return {"best_arm_share": share, "best_arm_probability": prob, "cumulative_regret": regret}
