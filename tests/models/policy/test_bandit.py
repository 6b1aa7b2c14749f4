"""Bandit math, contexts and the bandit_update step."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from scipy import special

from deepcuts.contracts import C, Dataset, Segment
from deepcuts.models.policy.bandit import (
    BanditConfig,
    apply_floor,
    discount_toward_prior,
    group_concentration,
    pool_parameters,
    pool_snapshot_with,
    pool_with,
    pooling_weights,
    sample_arms,
    selection_probabilities,
    simulate_policy_learning,
    thompson_probabilities,
    thompson_probabilities_mc,
    uniform_hash,
    update_posterior,
)
from deepcuts.models.policy.context import (
    CONTEXTS,
    context_index,
    daypart_of_hour,
    pooling_groups,
    user_segments,
)
from deepcuts.pipelines.bandit_update import bandit_update
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import BanditSettings, Settings, load_settings

D = date(2026, 3, 10)


# ------------------------------------------------------------------------------------------ posterior
def test_update_hand_computed() -> None:
    # prior Beta(1, 2), discount 0.5:
    # alpha = 1 + 0.5 * (5 - 1) + 3 = 6; beta = 2 + 0.5 * (10 - 2) + (4 - 3) = 7
    a, b = update_posterior([[5.0]], [[10.0]], [[4.0]], [[3.0]], 1.0, 2.0, 0.5)
    assert a[0, 0] == pytest.approx(6.0)
    assert b[0, 0] == pytest.approx(7.0)


def test_discount_over_a_gap_equals_repeated_discounts() -> None:
    a1, b1 = discount_toward_prior([[9.0]], [[21.0]], 1.0, 1.0, 0.9, days=3)
    a2, b2 = np.array([[9.0]]), np.array([[21.0]])
    for _ in range(3):
        a2, b2 = discount_toward_prior(a2, b2, 1.0, 1.0, 0.9)
    assert a1[0, 0] == pytest.approx(a2[0, 0]) == pytest.approx(1 + 0.729 * 8)
    assert b1[0, 0] == pytest.approx(b2[0, 0]) == pytest.approx(1 + 0.729 * 20)


def test_stationary_discount_is_plain_counting() -> None:
    a, b = update_posterior([[3.0]], [[4.0]], [[10.0]], [[2.0]], 1.0, 1.0, 1.0)
    assert (a[0, 0], b[0, 0]) == (5.0, 12.0)


# ------------------------------------------------------------------------------------------ selection
def _two_arm_closed_form(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X2 > X1) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2), integer a2 (Evan Miller's formula)."""
    total = 0.0
    for i in range(a2):
        total += math.exp(
            special.betaln(a1 + i, b1 + b2)
            - math.log(b2 + i)
            - special.betaln(1 + i, b2)
            - special.betaln(a1, b1)
        )
    return total


@pytest.mark.parametrize(
    ("a1", "b1", "a2", "b2"), [(1, 1, 1, 1), (2, 8, 3, 7), (30, 70, 45, 60), (5, 200, 9, 300)]
)
def test_two_arm_matches_closed_form(a1: int, b1: int, a2: int, b2: int) -> None:
    p = thompson_probabilities([[a1, a2]], [[b1, b2]])
    assert p[0, 1] == pytest.approx(_two_arm_closed_form(a1, b1, a2, b2), abs=1e-3)


def test_matches_monte_carlo_within_tolerance() -> None:
    alpha = np.array([[1.0, 1.0, 1.0], [30.0, 5.0, 2.0], [2000.0, 1500.0, 10.0], [0.5, 0.7, 3.0]])
    beta = np.array([[1.0, 1.0, 1.0], [70.0, 5.0, 8.0], [8000.0, 6500.0, 40.0], [0.5, 2.0, 9.0]])
    exact = thompson_probabilities(alpha, beta)
    mc = thompson_probabilities_mc(alpha, beta, 100_000, np.random.default_rng(5))
    assert np.abs(exact - mc).max() < 0.005
    assert exact[0] == pytest.approx([1 / 3] * 3, abs=1e-3)


@hsettings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.2, 500.0), st.floats(0.2, 500.0)), min_size=1, max_size=6),
    st.floats(0.0, 0.15),
)
def test_probabilities_sum_to_one_and_respect_floor(params: list[tuple[float, float]], floor: float) -> None:
    alpha = np.array([[a for a, _ in params]])
    beta = np.array([[b for _, b in params]])
    floor = min(floor, 1.0 / len(params))
    raw, p = selection_probabilities(alpha, beta, BanditConfig(exploration_floor=floor, points=400))
    assert raw.sum() == pytest.approx(1.0)
    assert p.sum() == pytest.approx(1.0)
    assert np.all(p >= floor - 1e-12)


def test_pooling_hand_computed() -> None:
    # prior 1, 1; two contexts in one group, one arm. Context 0 saw 8 clicks / 2 misses, context 1 nothing.
    alpha = np.array([[9.0], [1.0]])
    beta = np.array([[3.0], [1.0]])
    a, b = pool_parameters(alpha, beta, [0, 0], 1.0, 1.0, strength=5.0)
    # context 1 borrows from context 0: s=8, f=2, n=10, m=9/12, w=min(5, 10)=5 -> +3.75, +1.25
    assert (a[1, 0], b[1, 0]) == pytest.approx((1 + 5 * 9 / 12, 1 + 5 * 3 / 12))
    # context 0 borrows from context 1, which has no evidence: w = 0, unchanged
    assert (a[0, 0], b[0, 0]) == (9.0, 3.0)
    # separate groups never share; no groups = unchanged
    a2, b2 = pool_parameters(alpha, beta, [0, 1], 1.0, 1.0, strength=5.0)
    assert np.array_equal(a2, alpha) and np.array_equal(b2, beta)
    a3, _ = pool_parameters(alpha, beta, None, 1.0, 1.0, strength=5.0)
    assert np.array_equal(a3, alpha)
    assert pooling_groups("segment").tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert pooling_groups("none") is None


def test_snapshot_pooling_borrows_only_from_the_snapshot_hand_computed() -> None:
    # prior 1, 1; two contexts in one group, one arm, fixed cap 5. Snapshot: context 0 saw 8 clicks /
    # 2 misses, context 1 nothing. Since then context 0 saw 0 / 10 more, context 1 saw 3 / 1.
    config = BanditConfig(pooling_strength=5.0, pooling_rule="fixed")
    snap_a, snap_b = np.array([[9.0], [1.0]]), np.array([[3.0], [1.0]])
    alpha, beta = snap_a + np.array([[0.0], [3.0]]), snap_b + np.array([[10.0], [1.0]])
    a, b, caps = pool_snapshot_with(config, snap_a, snap_b, alpha, beta, [0, 0])
    # context 1 borrows what the snapshot lends (s=8, f=2: +3.75, +1.25), not the 8 / 12 context 0
    # holds now (live pooling: m = 9/22, +5 * 9/22); its own new evidence counts in full
    assert (a[1, 0], b[1, 0]) == pytest.approx((1 + 3 + 5 * 9 / 12, 1 + 1 + 5 * 3 / 12))
    live_a, _, _ = pool_with(config, alpha, beta, [0, 0])
    assert live_a[1, 0] == pytest.approx(1 + 3 + 5 * 9 / 22)
    # context 0 borrowed nothing from the snapshot (context 1 had no evidence) and so borrows nothing
    # from context 1's new evidence either (live pooling would lend it w = min(5, 4) = 4 trials)
    assert (a[0, 0], b[0, 0]) == (9.0, 13.0)
    assert caps == {0: 5.0}
    # no new evidence: exactly the snapshot's pooling
    a2, b2, _ = pool_snapshot_with(config, snap_a, snap_b, snap_a, snap_b, [0, 0])
    p_a, p_b, _ = pool_with(config, snap_a, snap_b, [0, 0])
    assert np.array_equal(a2, p_a) and np.array_equal(b2, p_b)
    with pytest.raises(ValueError, match="same shape"):
        pool_snapshot_with(config, snap_a[:1], snap_b[:1], alpha, beta, [0, 0])


def test_group_concentration_hand_computed() -> None:
    # prior 1, 1; one arm; context A 30 clicks in 50 lists (p = 0.6), context B 10 in 50 (p = 0.2).
    # N = 100, m = 0.4, Q = 50 * 0.2**2 * 2 = 4.0, E[Q | alike] = (2 - 1) * 0.24, D = 100 - 5000 / 100 = 50
    # tau2 = (4.0 - 0.24) / 50 = 0.0752, kappa = 0.24 / 0.0752 - 1
    alpha = np.array([[31.0], [11.0]])
    beta = np.array([[21.0], [41.0]])
    kappa = 0.24 / 0.0752 - 1
    assert group_concentration(alpha, beta, 1.0, 1.0) == pytest.approx(kappa)
    # contexts that agree (or have no evidence yet) have no measurable spread: infinite concentration
    assert group_concentration(np.array([[31.0], [31.0]]), np.array([[21.0], [21.0]]), 1.0, 1.0) == np.inf
    assert group_concentration(np.ones((2, 3)), np.ones((2, 3)), 1.0, 1.0) == np.inf
    # empirical Bayes caps the borrowed pseudo-trials at kappa: B borrows kappa trials at A's mean 31/52
    a, b = pool_parameters(alpha, beta, [0, 0], 1.0, 1.0, strength=50.0, rule="empirical_bayes")
    assert (a[1, 0], b[1, 0]) == pytest.approx((11 + kappa * 31 / 52, 41 + kappa * 21 / 52))
    assert pooling_weights(alpha, beta, [0, 0], 1.0, 1.0, 50.0, "empirical_bayes") == {
        0: pytest.approx(kappa)
    }
    # agreeing contexts borrow the full strength, as with the fixed rule
    same_a, same_b = np.array([[31.0], [31.0]]), np.array([[21.0], [21.0]])
    eb = pool_parameters(same_a, same_b, [0, 0], 1.0, 1.0, 50.0, "empirical_bayes")
    fixed = pool_parameters(same_a, same_b, [0, 0], 1.0, 1.0, 50.0, "fixed")
    assert np.allclose(eb, fixed)
    with pytest.raises(ValueError, match="pooling rule"):
        pool_parameters(alpha, beta, [0, 0], 1.0, 1.0, 50.0, "median")


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=8, max_size=8),
    st.floats(1.0, 200.0),
)
def test_empirical_bayes_never_borrows_more_than_fixed(
    counts: list[tuple[int, int]], strength: float
) -> None:
    s = np.array([c[0] for c in counts], dtype=float).reshape(4, 2)
    f = np.array([c[1] for c in counts], dtype=float).reshape(4, 2)
    alpha, beta = 1.0 + s, 1.0 + f
    groups = [0, 0, 1, 1]
    a_fixed, b_fixed = pool_parameters(alpha, beta, groups, 1.0, 1.0, strength, "fixed")
    a_eb, b_eb = pool_parameters(alpha, beta, groups, 1.0, 1.0, strength, "empirical_bayes")
    borrowed_fixed = a_fixed + b_fixed - alpha - beta
    borrowed_eb = a_eb + b_eb - alpha - beta
    assert np.all(borrowed_eb >= -1e-9) and np.all(borrowed_eb <= borrowed_fixed + 1e-9)
    for k in pooling_weights(alpha, beta, groups, 1.0, 1.0, strength, "empirical_bayes").values():
        assert 0.0 <= k <= strength


def test_floor_arithmetic() -> None:
    p = apply_floor([[1.0, 0.0, 0.0, 0.0]], 0.05)
    assert p[0].tolist() == pytest.approx([0.85, 0.05, 0.05, 0.05])
    with pytest.raises(ValueError, match="exploration floor"):
        apply_floor([[0.5, 0.5]], 0.6)


def test_sampling_follows_probabilities_and_is_keyed() -> None:
    p = np.array([[0.2, 0.5, 0.3]])
    u = uniform_hash(np.arange(200_000), seed=11)
    arms = sample_arms(p, np.zeros(u.size, np.int64), u)
    share = np.bincount(arms, minlength=3) / u.size
    assert share == pytest.approx([0.2, 0.5, 0.3], abs=0.005)
    # a key's draw does not depend on the other keys
    assert uniform_hash([5, 7], 11)[1] == uniform_hash([7], 11)[0]
    assert uniform_hash([7], 12)[0] != uniform_hash([7], 11)[0]


def test_policy_learning_reaches_the_best_arm() -> None:
    ctr = np.array([[0.04, 0.05, 0.08, 0.05, 0.03, 0.06], [0.10, 0.06, 0.05, 0.05, 0.04, 0.05]])
    # 1000 list impressions per context and night: seeds 0..7 all end with P(best) >= 0.78
    out = simulate_policy_learning(ctr, 14, 1000, BanditConfig(points=400), seed=3)
    assert out["best_arm_probability"][-1].min() >= 0.7
    assert out["best_arm_share"][-1].min() >= 0.7
    regret = out["cumulative_regret"]
    # sublinear: the second week adds less regret than the first
    assert regret[13] - regret[6] < regret[6]


def test_empirical_bayes_pooling_helps_when_contexts_agree_and_does_not_lock_them_when_they_differ() -> None:
    # four contexts of one segment, six arms (list CTR ~0.6), one arm at 0.85: the same arm in every
    # context, or a different one per context; 25 lists per context and night, 14 nights, 4 seeds
    base = np.array([0.65, 0.65, 0.60, 0.60, 0.63, 0.58])

    def night_14(best: list[int], rule: str | None) -> float:
        ctr = np.tile(base, (4, 1))
        ctr[np.arange(4), best] = 0.85
        config = BanditConfig(points=200, pooling_strength=100.0, pooling_rule=rule or "fixed")
        groups = None if rule is None else [0, 0, 0, 0]
        runs = [simulate_policy_learning(ctr, 14, 25, config, s, groups) for s in range(4)]
        return float(np.mean([r["best_arm_probability"][-1] for r in runs]))

    differ = {rule: night_14([2, 3, 4, 5], rule) for rule in (None, "fixed", "empirical_bayes")}
    same = {rule: night_14([0, 0, 0, 0], rule) for rule in (None, "empirical_bayes")}
    # a fixed strength holds each context's own best arm down with its neighbours' evidence
    assert differ["empirical_bayes"] >= 0.7
    assert differ["empirical_bayes"] > differ["fixed"] + 0.25
    assert differ["empirical_bayes"] >= differ[None] - 0.05
    # where the contexts agree, the cap does not bind: faster than independent contexts
    assert same["empirical_bayes"] >= 0.85
    assert same["empirical_bayes"] > same[None] + 0.02


# ------------------------------------------------------------------------------------------ contexts
def test_segments_from_history() -> None:
    cfg = BanditSettings(new_max_ratings=3, power_min_ratings=5, power_recency_days=10)
    end = datetime(2026, 3, 10, 12, tzinfo=UTC)
    rows = []
    rows += [(1, end - timedelta(days=1))] * 2  # 2 ratings -> new
    rows += [(2, end - timedelta(days=1))] * 6  # 6 recent -> power
    rows += [(3, end - timedelta(days=40))] * 6  # 6 but stale -> casual
    rows += [(4, end)] * 4  # 4 -> casual
    rows += [(5, end + timedelta(days=2))] * 4  # after the run date: ignored entirely
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.TS])
    seg = user_segments(frame, D, cfg)
    assert seg[C.USER_ID].tolist() == [1, 2, 3, 4]
    assert seg[C.SEGMENT].tolist() == [Segment.NEW, Segment.POWER, Segment.CASUAL, Segment.CASUAL]


def test_dayparts_wrap_midnight() -> None:
    cfg = BanditSettings()
    got = daypart_of_hour([0, 5, 6, 11, 12, 17, 18, 22, 23], cfg).tolist()
    assert got == [
        "night",
        "night",
        "morning",
        "morning",
        "afternoon",
        "afternoon",
        "evening",
        "evening",
        "night",
    ]
    assert context_index(["power", "bogus", None], ["night", "night", "night"]).tolist() == [11, -1, -1]


# ------------------------------------------------------------------------------------------ the step
def feedback_frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        C.EVENT_TS: datetime(2026, 3, 10, 9, tzinfo=UTC),
        C.ITEM_ID: 1,
        C.POSITION: 1,
        C.RATING: None,
        C.VARIANT: "treatment",
        C.SEGMENT: "casual",
        C.DAYPART: "morning",
        C.PROPENSITY: 0.5,
    }
    return pd.DataFrame([base | r for r in rows])


def _events(prefix: str, user: int, arm: str, version: str, clicks: int, **extra: object) -> list[dict]:
    rows = [
        {
            C.EVENT_ID: f"{prefix}-{user}-imp{k}",
            C.USER_ID: user,
            C.EVENT_TYPE: "impression",
            C.ARM: arm,
            C.LIST_VERSION: version,
            C.POSITION: k + 1,
            **extra,
        }
        for k in range(3)
    ]
    rows += [
        {
            C.EVENT_ID: f"{prefix}-{user}-clk{k}",
            C.USER_ID: user,
            C.EVENT_TYPE: "click",
            C.ARM: arm,
            C.LIST_VERSION: version,
            **extra,
        }
        for k in range(clicks)
    ]
    return rows


def _posterior(settings: Settings, day: date) -> pd.DataFrame:
    frame = Lake(settings.home).read_df(Dataset.BANDIT_POSTERIOR, day)
    return frame.set_index([C.SEGMENT, C.DAYPART, C.ARM])


def test_bandit_update_counts_list_impressions(settings: Settings) -> None:
    lake = Lake(settings.home)
    rows = (
        _events("a", 1, "svd", "v1", clicks=2)  # one trial, one success (two clicks on one list)
        + _events("a", 2, "svd", "v1", clicks=0)  # one failure
        + _events("a", 3, "graph", "v1", clicks=1, **{C.SEGMENT: "power"})
        + _events("a", 4, "graph", "v1", clicks=1, **{C.VARIANT: "control"})  # control: ignored
    )
    frame = feedback_frame(rows)
    frame = pd.concat([frame, frame.iloc[:4]], ignore_index=True)  # duplicated event ids
    lake.write_table(Dataset.FEEDBACK_EVENTS, D, frame)
    lake.mark_all_complete()  # as ingest does when it finishes
    out = bandit_update(settings, D)
    assert out["previous_snapshot"] is None
    assert out["trials"] == 3 and out["clicked_trials"] == 2 and out["duplicate_events"] == 4
    post = _posterior(settings, D)
    assert len(post) == len(CONTEXTS) * len(settings.bandit.arms)
    svd = post.loc[("casual", "morning", "svd")]
    # prior 1,1 discounted (no-op at the prior), then +1 success, +1 failure
    assert (svd[C.ALPHA], svd[C.BETA], svd[C.TRIALS], svd[C.SUCCESSES]) == (2.0, 2.0, 2.0, 1.0)
    assert tuple(post.loc[("power", "morning", "graph"), [C.ALPHA, C.BETA]]) == (2.0, 1.0)
    assert tuple(post.loc[("casual", "evening", "graph"), [C.ALPHA, C.BETA]]) == (1.0, 1.0)


def test_bandit_update_chains_discount_and_is_idempotent(settings: Settings) -> None:
    lake = Lake(settings.home)
    d0, d1 = D, D + timedelta(days=1)
    lake.write_table(Dataset.FEEDBACK_EVENTS, d0, feedback_frame(_events("a", 1, "svd", "v1", clicks=1)))
    lake.write_table(Dataset.FEEDBACK_EVENTS, d1, feedback_frame(_events("b", 1, "svd", "v2", clicks=0)))
    lake.mark_all_complete()  # as ingest does when it finishes
    bandit_update(settings, d0)
    bandit_update(settings, d1)
    path = lake.file_path(Dataset.BANDIT_POSTERIOR, d1, "part-0.parquet")
    first = lake.read_bytes(Dataset.BANDIT_POSTERIOR, d1, "part-0.parquet")
    bandit_update(settings, d1)
    assert lake.read_bytes(Dataset.BANDIT_POSTERIOR, d1, "part-0.parquet") == first, path
    svd = _posterior(settings, d1).loc[("casual", "morning", "svd")]
    d = settings.bandit.discount
    assert svd[C.ALPHA] == pytest.approx(1 + d * 1)
    assert svd[C.BETA] == pytest.approx(1 + d * 0 + 1)


def test_late_click_converts_the_failure(settings: Settings) -> None:
    lake = Lake(settings.home)
    d0, d1 = D, D + timedelta(days=1)
    lake.write_table(Dataset.FEEDBACK_EVENTS, d0, feedback_frame(_events("a", 1, "svd", "v1", clicks=0)))
    late_click = feedback_frame(
        [{C.EVENT_ID: "late-1", C.USER_ID: 1, C.EVENT_TYPE: "click", C.ARM: "svd", C.LIST_VERSION: "v1"}]
    )
    # the same click id delivered twice on the arriving day, and the old impressions replayed
    replay = feedback_frame(_events("a", 1, "svd", "v1", clicks=0))
    lake.write_table(
        Dataset.FEEDBACK_EVENTS, d1, pd.concat([late_click, late_click, replay], ignore_index=True)
    )
    lake.mark_all_complete()  # as ingest does when it finishes
    bandit_update(settings, d0)
    out = bandit_update(settings, d1)
    assert out["trials"] == 0 and out["late_click_corrections"] == 1
    svd = _posterior(settings, d1).loc[("casual", "morning", "svd")]
    d = settings.bandit.discount
    # day 0: Beta(1, 2); day 1: discount -> (1, 1 + d), then the failure becomes a success: +d, -d
    assert svd[C.ALPHA] == pytest.approx(1 + d)
    assert svd[C.BETA] == pytest.approx(1.0)


@hsettings(max_examples=10, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # day the impressions arrive
            st.one_of(st.none(), st.integers(0, 3)),  # day the click arrives (None: no click)
            st.sampled_from(["svd", "graph"]),
            st.booleans(),  # the click is delivered twice
        ),
        min_size=1,
        max_size=12,
    )
)
def test_arrival_pattern_never_changes_the_stationary_totals(keys: list[tuple]) -> None:
    """With discount 1, after all days: alpha - 1 = clicked lists, beta - 1 = unclicked lists, per arm,
    whatever the order in which impressions and (late, duplicated) clicks arrive."""
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        s = load_settings(home=home, bandit={"discount": 1.0})
        lake = Lake(home)
        per_day: dict[int, list[dict]] = {d: [] for d in range(4)}
        for k, (imp_day, click_day, arm, dup) in enumerate(keys):
            rows = _events(f"k{k}", k, arm, f"v{k}", clicks=0)
            per_day[imp_day] += rows
            if click_day is not None:
                click = {C.EVENT_ID: f"k{k}-click", C.USER_ID: k, C.EVENT_TYPE: "click", C.ARM: arm}
                click[C.LIST_VERSION] = f"v{k}"
                per_day[click_day] += [click] * (2 if dup else 1)
        for day in range(4):
            if per_day[day]:
                lake.write_table(
                    Dataset.FEEDBACK_EVENTS, D + timedelta(days=day), feedback_frame(per_day[day])
                )
            lake.mark_all_complete()
            bandit_update(s, D + timedelta(days=day))
        post = _posterior(s, D + timedelta(days=3))
        for arm in ("svd", "graph"):
            clicked = sum(1 for _, c, a, _ in keys if a == arm and c is not None)
            unclicked = sum(1 for _, c, a, _ in keys if a == arm and c is None)
            row = post.loc[("casual", "morning", arm)]
            assert row[C.ALPHA] - 1 == pytest.approx(clicked)
            assert row[C.BETA] - 1 == pytest.approx(unclicked)


def test_a_list_kept_for_two_days_is_two_trials_and_night_lists_do_not_split(settings: Settings) -> None:
    lake = Lake(settings.home)
    d0, d1 = D, D + timedelta(days=1)
    day0 = _events("a", 1, "svd", "v1", clicks=0)
    # the publish of d0 was held back: the app shows the same version v1 again on d1 (new event ids)
    day1 = _events("b", 1, "svd", "v1", clicks=1, **{C.EVENT_TS: datetime(2026, 3, 11, 9, tzinfo=UTC)})
    # a night list shown at 23:30 and clicked at 00:20 the next calendar day: one trial, clicked
    night = {C.DAYPART: "night", C.LIST_VERSION: "v1"}
    day1 += [
        {
            C.EVENT_ID: "n-imp",
            C.USER_ID: 2,
            C.EVENT_TYPE: "impression",
            C.ARM: "graph",
            **night,
            C.EVENT_TS: datetime(2026, 3, 10, 23, 30, tzinfo=UTC),
        },
        {
            C.EVENT_ID: "n-clk",
            C.USER_ID: 2,
            C.EVENT_TYPE: "click",
            C.ARM: "graph",
            **night,
            C.EVENT_TS: datetime(2026, 3, 11, 0, 20, tzinfo=UTC),
        },
    ]
    lake.write_table(Dataset.FEEDBACK_EVENTS, d0, feedback_frame(day0))
    lake.write_table(Dataset.FEEDBACK_EVENTS, d1, feedback_frame(day1))
    lake.mark_all_complete()  # as ingest does when it finishes
    bandit_update(settings, d0)
    out = bandit_update(settings, d1)
    assert out["trials"] == 2 and out["clicked_trials"] == 2 and out["late_click_corrections"] == 0
    post = _posterior(settings, d1)
    d = settings.bandit.discount
    svd = post.loc[("casual", "morning", "svd")]
    assert (svd[C.ALPHA], svd[C.BETA]) == pytest.approx((2.0, 1 + d))
    assert tuple(post.loc[("casual", "night", "graph"), [C.ALPHA, C.BETA]]) == pytest.approx((2.0, 1.0))
