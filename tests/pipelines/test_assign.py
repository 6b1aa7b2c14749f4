"""The assign step on a tiny lake: assignments, policy table and served lists."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deepcuts.contracts import C, Dataset, Variant
from deepcuts.experiment import ExperimentState, variant_of
from deepcuts.models.policy.bandit import sample_arms, uniform_hash
from deepcuts.models.policy.context import DAYPARTS
from deepcuts.pipelines.assign import (
    BASELINE_REASON,
    assign,
    build_served_lists,
    draw_assignments,
    served_from_arm_lists,
)
from deepcuts.pipelines.bandit_update import posterior_frame
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings, load_settings

D = date(2026, 3, 10)
N_USERS = 24
L = 3


@pytest.fixture
def settings(lake_home: object, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings in a tmp lake: lists of L items (the baseline has 5 candidates per user), independent
    contexts (no pooling) so the policy can be computed by hand."""
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    return load_settings(home=str(lake_home), rerank={"list_length": L}, bandit={"pooling": "none"})


def _write_world(settings: Settings, skip_arms: tuple[str, ...] = (), scored: bool = True) -> None:
    lake = Lake(settings.home)
    end = datetime(2026, 3, 10, 12, tzinfo=UTC)
    rows = []
    for u in range(1, N_USERS + 1):
        n = 2 if u % 3 == 0 else (120 if u % 3 == 1 else 20)  # new / power / casual
        rows += [(u, 100 + (u + k) % 30, 4.0, end - timedelta(hours=k)) for k in range(n)]
    inter = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, C.TS])
    lake.write_table(Dataset.INTERACTIONS, D, inter)
    items = pd.DataFrame(
        {C.ITEM_ID: np.arange(100, 160), C.TITLE: "t", C.GENRES: [["Drama"]] * 60, C.YEAR: 2000}
    )
    lake.write_table(Dataset.ITEMS, D, items)
    users = np.arange(1, N_USERS + 1)
    for i, arm in enumerate(settings.bandit.arms):
        if arm in skip_arms:
            continue
        frame = pd.DataFrame(
            {
                C.USER_ID: np.repeat(users, L),
                C.ITEM_ID: 130 + (np.repeat(users, L) + np.tile(np.arange(L), N_USERS) + i) % 30,
                C.RANK: np.tile(np.arange(1, L + 1), N_USERS),
                C.SCORE: np.float32(1.0),
                C.ARM: arm,
                C.RUN_DATE: D,
                C.NOVELTY: np.float32(5.0),
                C.IS_LONG_TAIL: True,
                C.QUALITY: np.float32(4.2),
                C.REASON: f"reranked-{arm}",
            }
        )
        for shard in range(2):
            part = frame[frame[C.USER_ID] % 2 == shard]
            lake.write_table(Dataset.RERANKED, D, part, part=f"{arm}/shard-{shard:04d}")
    # baseline candidates: 5 per user, rank 1..5; the served control list keeps the first L
    cand = pd.DataFrame(
        {
            C.USER_ID: np.repeat(users, 5),
            C.ITEM_ID: 100 + (np.repeat(users, 5) + np.tile(np.arange(5), N_USERS)) % 30,
            C.RANK: np.tile(np.arange(1, 6), N_USERS),
            C.SCORE: np.tile(np.linspace(1, 0.5, 5), N_USERS).astype(np.float32),
            C.ARM: "svd",
            C.RUN_DATE: D,
        }
    )
    lake.write_table(Dataset.CANDIDATES, D, cand, part="svd/shard-0000")
    if scored:
        sc = cand.assign(
            **{
                C.RELEVANCE: np.float32(1),
                C.NOVELTY: np.float32(3.0),
                C.IS_LONG_TAIL: False,
                C.POPULARITY_PERCENTILE: np.float32(0.5),
                C.QUALITY: np.float32(4.0),
                C.UNEXPECTEDNESS_GENRE: np.float32(0.5),
                C.UNEXPECTEDNESS_EMBEDDING: None,
                C.UNEXPECTEDNESS: np.float32(0.5),
                C.SERENDIPITY: np.float32(0.5),
                C.IS_NICHE: False,
            }
        )
        lake.write_table(Dataset.SCORED, D, sc, part="svd/shard-0000")
    # a posterior where graph is clearly best for casual users
    post = posterior_frame(np.ones((12, 6)), np.ones((12, 6)), tuple(settings.bandit.arms), D)
    best = (post[C.SEGMENT] == "casual") & (post[C.ARM] == "graph")
    post.loc[best, C.ALPHA] = 60.0
    lake.write_table(Dataset.BANDIT_POSTERIOR, D, post)
    lake.mark_all_complete()  # as the steps that write them do when they finish


def test_assign_writes_consistent_tables(settings: Settings) -> None:
    _write_world(settings)
    out = assign(settings, D)
    lake = Lake(settings.home)
    asg = lake.read_df(Dataset.ASSIGNMENTS, D)
    policy = lake.read_df(Dataset.BANDIT_POLICY, D)
    served = lake.read_df(Dataset.SERVED_LISTS, D)
    assert out["users"] == N_USERS and len(asg) == N_USERS * len(DAYPARTS)
    assert out["segments"] == {"casual": 8, "new": 8, "power": 8}
    # policy: every context sums to one and respects the floor
    sums = policy.groupby([C.SEGMENT, C.DAYPART])[C.SELECTION_PROBABILITY].sum()
    assert np.allclose(sums, 1.0) and len(sums) == 12
    assert policy[C.SELECTION_PROBABILITY].min() >= settings.bandit.exploration_floor - 1e-12
    casual_graph = policy[(policy[C.SEGMENT] == "casual") & (policy[C.ARM] == "graph")]
    # P(Beta(60, 1) beats five uniforms) = E[Y^5] = 60 / 65; floor 0.02 over 6 arms: 0.02 + 0.88 * 60 / 65
    assert casual_graph[C.SELECTION_PROBABILITY].to_numpy() == pytest.approx(0.02 + 0.88 * 60 / 65, abs=1e-3)
    # variants follow the hash split; control = baseline with propensity 1
    expected = variant_of(
        asg[C.USER_ID], settings.ab.experiment, settings.ab.salt, settings.ab.treatment_share
    )
    assert (asg[C.VARIANT].to_numpy() == expected).all()
    control = asg[asg[C.VARIANT] == Variant.CONTROL.value]
    assert (control[C.ARM] == settings.ab.baseline_arm).all() and (control[C.PROPENSITY] == 1.0).all()
    # treatment propensity = the policy's probability of the drawn arm in the user's context
    treat = asg[asg[C.VARIANT] == Variant.TREATMENT.value]
    assert len(treat) > 0
    joined = treat.merge(policy, on=[C.SEGMENT, C.DAYPART, C.ARM], how="left")
    assert np.allclose(joined[C.PROPENSITY], joined[C.SELECTION_PROBABILITY])
    # served lists: L rows per (user, daypart); treatment rows from the chosen arm's re-ranked list
    assert out["assignments_without_list"] == 0
    assert len(served) == len(asg) * L
    t_served = served[served[C.VARIANT] == Variant.TREATMENT.value]
    assert (t_served[C.REASON] == "reranked-" + t_served[C.ARM]).all()
    c_served = served[served[C.VARIANT] == Variant.CONTROL.value]
    assert (c_served[C.REASON] == BASELINE_REASON).all() and c_served[C.RANK].max() == L
    assert (c_served[C.NOVELTY] == 3.0).all() and not c_served[C.IS_LONG_TAIL].any()
    first = served.iloc[0]
    assert first[C.USER_ID] == 1 and first[C.DAYPART] == DAYPARTS[0] and first[C.RANK] == 1


def test_pooling_moves_the_policy_and_keeps_propensities_exact(lake_home: object) -> None:
    bandit = {"pooling": "segment", "pooling_rule": "fixed", "pooling_strength": 50.0}
    s = load_settings(home=str(lake_home), rerank={"list_length": L}, bandit=bandit)
    _write_world(s)
    assign(s, D)
    lake = Lake(s.home)
    policy = lake.read_df(Dataset.BANDIT_POLICY, D)
    # each casual context borrows min(50, 3 * 59) = 50 pseudo-trials at the other contexts' graph mean
    # (s = 177, f = 0: m = 178 / 179) -> alpha = 60 + 50 * 178 / 179
    row = policy[(policy[C.SEGMENT] == "casual") & (policy[C.ARM] == "graph")].iloc[0]
    assert row[C.ALPHA] == pytest.approx(60 + 50 * 178 / 179)
    asg = lake.read_df(Dataset.ASSIGNMENTS, D)
    treat = asg[asg[C.VARIANT] == Variant.TREATMENT.value].merge(policy, on=[C.SEGMENT, C.DAYPART, C.ARM])
    assert np.allclose(treat[C.PROPENSITY], treat[C.SELECTION_PROBABILITY])


def test_assign_is_idempotent(settings: Settings) -> None:
    _write_world(settings)
    lake = Lake(settings.home)
    assign(settings, D)
    names = ("part-0.parquet",)
    datasets = (Dataset.ASSIGNMENTS, Dataset.BANDIT_POLICY, Dataset.SERVED_LISTS)
    before = {ds: lake.read_bytes(ds, D, names[0]) for ds in datasets}
    assign(settings, D)
    for ds in datasets:
        assert lake.read_bytes(ds, D, names[0]) == before[ds], ds


def test_missing_arm_is_dropped_and_baseline_falls_back_to_item_stats(settings: Settings) -> None:
    _write_world(settings, skip_arms=("lightfm",), scored=False)
    out = assign(settings, D)
    assert out["arms_dropped"] == ["lightfm"] and "lightfm" not in out["arms"]
    lake = Lake(settings.home)
    policy = lake.read_df(Dataset.BANDIT_POLICY, D)
    assert set(policy[C.ARM]) == set(settings.bandit.arms) - {"lightfm"}
    served = lake.read_df(Dataset.SERVED_LISTS, D)
    c_served = served[served[C.VARIANT] == Variant.CONTROL.value]
    assert len(c_served) > 0 and np.isfinite(c_served[C.NOVELTY]).all()


def test_draws_follow_selection_probabilities(lake_home: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    s = load_settings(home=str(lake_home))
    n = 20_000
    segments = pd.DataFrame({C.USER_ID: np.arange(n, dtype=np.int64), C.SEGMENT: "power"})
    probs = np.tile([0.1, 0.2, 0.3, 0.4], (12, 1))
    arms = ["svd", "graph", "item_cf", "long_tail"]
    asg = draw_assignments(s, D, segments, probs, arms, ExperimentState.from_settings(s.ab))
    treat = asg[asg[C.VARIANT] == Variant.TREATMENT.value]
    share = treat[C.ARM].value_counts(normalize=True).reindex(arms).to_numpy()
    assert share == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.01)
    assert treat[C.PROPENSITY].to_numpy() == pytest.approx(probs[0][[arms.index(a) for a in treat[C.ARM]]])
    # reproducible, and another run date draws differently
    again = draw_assignments(s, D, segments, probs, arms, ExperimentState.from_settings(s.ab))
    assert again.equals(asg)
    other = draw_assignments(
        s, D + timedelta(days=1), segments, probs, arms, ExperimentState.from_settings(s.ab)
    )
    assert not (other[C.ARM].to_numpy() == asg[C.ARM].to_numpy()).all()
    # the documented draw: u = splitmix64(seed, 4 * user + daypart) through the cumulative probabilities
    assert sample_arms(probs, [0], uniform_hash([0], 1))[0] in range(4)


def test_assign_serves_the_experiment_in_force_from_the_registry(settings: Settings) -> None:
    from deepcuts.experiment import Action, Entry, Status
    from deepcuts.pipelines.experiment_registry import write_lake_copy

    _write_world(settings)
    lake = Lake(settings.home)
    ramp = ExperimentState("exp-r", "salt-r", 0.25, "svd")
    shipped = ExperimentState("exp-r", "salt-r", 0.25, "svd", Status.SHIPPED, Variant.TREATMENT.value)
    write_lake_copy(lake, [Entry(1, Action.RAMP, ramp, D, "2026-03-09T10:00:00+00:00", "ops")])
    out = assign(settings, D)
    asg = lake.read_df(Dataset.ASSIGNMENTS, D)
    assert out["experiment"] == "exp-r" and out["treatment_share"] == 0.25
    assert (asg[C.EXPERIMENT] == "exp-r").all()
    assert (asg[C.VARIANT].to_numpy() == variant_of(asg[C.USER_ID], "exp-r", "salt-r", 0.25)).all()
    # shipped from D on: everyone gets treatment, an arm the bandit picked
    entries = [
        Entry(1, Action.RAMP, ramp, D - timedelta(days=1), "2026-03-08T10:00:00+00:00", "ops"),
        Entry(2, Action.SHIP, shipped, D, "2026-03-09T11:00:00+00:00", "ops"),
    ]
    write_lake_copy(lake, entries)
    out = assign(settings, D)
    asg = lake.read_df(Dataset.ASSIGNMENTS, D)
    assert out["experiment_status"] == "shipped" and out["treatment_share"] is None
    assert (asg[C.VARIANT] == Variant.TREATMENT.value).all()
    assert set(asg[C.ARM]) <= set(settings.bandit.arms) and out["treatment_assignments"] == len(asg)


def _served_by_merge(
    assignments: pd.DataFrame, lists: dict[str, pd.DataFrame], run_date: date
) -> tuple[pd.DataFrame, int]:
    """The served lists as an inner join on (user, arm) per variant, then a stable sort by (user,
    daypart, rank): the definition :func:`build_served_lists` must keep (its implementation before
    issue 18 gathered the same rows by position)."""
    keys = [C.USER_ID, C.DAYPART, C.ARM, C.VARIANT]
    parts = [
        assignments.loc[assignments[C.VARIANT] == variant, keys].merge(
            frame, on=[C.USER_ID, C.ARM], sort=False
        )
        for variant, frame in lists.items()
    ]
    out = pd.concat(parts, ignore_index=True)
    out[C.RUN_DATE] = run_date
    day = out[C.DAYPART].map({d: i for i, d in enumerate(DAYPARTS)})
    out = out.assign(_day=day).sort_values([C.USER_ID, "_day", C.RANK], kind="stable").drop(columns="_day")
    have = out[[C.USER_ID, C.DAYPART]].drop_duplicates()
    return out.reset_index(drop=True), len(assignments) - len(have)


@pytest.mark.parametrize("seed", range(6))
def test_served_lists_are_the_join_of_assignments_and_lists(seed: int) -> None:
    """Random assignments (shuffled, some arms or users without a list, users only in the lists, tied
    ranks kept in list order) against random lists of both variants, Arrow-backed strings as the lake
    reads them: the positional gather gives exactly the rows, order and missing count of the join."""
    rng = np.random.default_rng(seed)
    arms = ["item_cf", "svd", "graph", "popularity"]
    variants = [Variant.CONTROL.value, Variant.TREATMENT.value]
    users = np.sort(rng.choice(10_000, size=40, replace=False)).astype(np.int64)
    assignments = pd.DataFrame(
        {
            C.USER_ID: np.repeat(users, len(DAYPARTS)),
            C.DAYPART: np.tile(np.asarray(DAYPARTS, dtype=object), users.size),
            C.ARM: rng.choice(arms, size=users.size * len(DAYPARTS)),
            C.VARIANT: np.repeat(rng.choice(variants, size=users.size), len(DAYPARTS)),
        }
    ).sample(frac=1.0, random_state=seed, ignore_index=True)
    string = pd.ArrowDtype(pa.string()) if seed % 2 else "string[pyarrow]"
    lists = {}
    for variant in variants:
        n = 600
        frame = pd.DataFrame(
            {
                C.USER_ID: rng.choice(np.concatenate([users, users + 10_000]), size=n),
                C.ITEM_ID: rng.integers(0, 500, size=n),
                C.RANK: rng.integers(1, 6, size=n).astype(np.int32),  # repeats: ties keep list order
                C.SCORE: rng.random(n).astype(np.float32),
                C.ARM: pd.array(rng.choice([*arms[:3], "retired"], size=n), dtype=string),
                C.NOVELTY: rng.random(n).astype(np.float32),
                C.IS_LONG_TAIL: rng.random(n) < 0.4,
                C.REASON: pd.array(rng.choice(["relevance", "novelty", "baseline"], size=n), dtype=string),
            }
        )
        lists[variant] = frame
    run_date = date(2026, 1, 2)

    got, missing = build_served_lists(
        assignments, lists[Variant.CONTROL.value], lists[Variant.TREATMENT.value], run_date
    )
    want, want_missing = _served_by_merge(assignments, lists, run_date)

    assert missing == want_missing > 0
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got.astype(str), want.astype(str))
    assert got[C.SCORE].dtype == np.float32 and got[C.RANK].dtype == np.int32


def test_served_from_arm_lists_matches_the_night_build(settings: Settings) -> None:
    """The intraday path (the night's arm lists, split by variant) serves what assign served."""
    _write_world(settings)
    assign(settings, D)
    lake = Lake(settings.home)
    assignments = lake.read_df(Dataset.ASSIGNMENTS, D)
    served, missing = served_from_arm_lists(assignments, lake.read_df(Dataset.ARM_LISTS, D), D)
    night = lake.read_df(Dataset.SERVED_LISTS, D)
    assert missing == 0
    assert len(served) == len(night) > 0
    cols = list(night.columns)
    pd.testing.assert_frame_equal(
        served[cols].astype(str).reset_index(drop=True), night.astype(str).reset_index(drop=True)
    )
