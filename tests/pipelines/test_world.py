"""Synthetic world: determinism, shape, the planted structure (hidden gems, contexts) and the truth API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deepcuts.cli import main as cli_main
from deepcuts.contracts import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, C
from deepcuts.pipelines.loaders import load_dataset
from deepcuts.pipelines.world import (
    GENRE_NAMES,
    NICHE_GENRES,
    TruthModel,
    WorldModel,
    WorldNotFoundError,
    generate_world,
)
from deepcuts.pipelines.world.generate import POWER_MIN_RATINGS, _top_k_rows
from deepcuts.settings import WorldSettings

SMALL = WorldSettings(users=120, items=80, history_days=20, ratings_per_user=12, seed=11, users_per_block=50)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-size world (2000 users x 1500 items; about 2 s)."""
    out = tmp_path_factory.mktemp("world")
    generate_world(out, WorldSettings())
    return out


@pytest.fixture(scope="module")
def truth(world: Path) -> TruthModel:
    return TruthModel.load(world)


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", SMALL)
    generate_world(tmp_path / "b", SMALL)
    generate_world(tmp_path / "c", SMALL.model_copy(update={"seed": 12}))
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert set(a) == {
        "world.json",
        "items.parquet",
        "interactions.parquet",
        "truth/items.parquet",
        "truth/users.parquet",
        "truth/user_factors.npy",
        "truth/item_factors.npy",
        "truth/model.json",
    }
    assert a["interactions.parquet"] != c["interactions.parquet"]
    # no temporary files left behind
    assert not list((tmp_path / "a").rglob(".tmp-*"))


def test_regenerating_in_place_gives_the_same_bytes(tmp_path: Path) -> None:
    generate_world(tmp_path, SMALL)
    first = _digest(tmp_path)
    generate_world(tmp_path, SMALL)
    assert _digest(tmp_path) == first


# ------------------------------------------------------------------------------------------- shape
def test_shape_and_contracts(world: Path) -> None:
    meta = json.loads((world / "world.json").read_text())
    data = load_dataset("synthetic", world)
    items, everything = data.items, data.interactions
    # the history ends before start_date; the sign-ups' onboarding ratings come after it
    inter = everything[everything[C.TS] < pd.Timestamp(meta["start_date"], tz="UTC")]
    assert len(items) == 1500 and inter[C.USER_ID].nunique() == 2000
    assert meta["interactions"] == len(inter)
    assert len(everything) == len(inter) + meta["signups"]["onboarding_ratings"]
    assert list(items.columns) == ITEMS_SCHEMA.names and list(inter.columns) == INTERACTIONS_SCHEMA.names
    assert str(inter[C.TS].dtype) == "datetime64[us, UTC]" and inter[C.RATING].dtype == np.float32
    # ~20 genres with Anime and the other niche genres; every item has 1-3 known genres
    assert len(meta["genres"]) == 20 and set(NICHE_GENRES) <= set(meta["genres"])
    assert items[C.GENRES].map(len).between(1, 3).all()
    assert set().union(*items[C.GENRES]) == set(GENRE_NAMES)
    assert items[C.TITLE].is_unique
    assert (items[C.YEAR] == items[C.TITLE].str.extract(r"\((\d{4})\)$")[0].astype(int)).all()
    # mean ratings per user close to the target; ratings on the integer 1-5 scale; each pair once
    assert abs(len(inter) / 2000 - 40) < 4
    assert set(np.unique(inter[C.RATING])) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.3 < inter[C.RATING].mean() < 3.9  # MovieLens-like mean (ML-100k: 3.53)
    assert not inter.duplicated([C.USER_ID, C.ITEM_ID]).any()
    # history: the 180 days before start_date; the first run date is its last day
    assert meta["first_run_date"] == "2025-12-31"
    assert inter[C.TS].min() >= pd.Timestamp("2025-07-05", tz="UTC")
    assert inter[C.TS].max() < pd.Timestamp("2026-01-01", tz="UTC")
    assert (data.rating_min, data.rating_max) == (1.0, 5.0)


def test_signups_join_with_onboarding_ratings_and_visit_from_the_next_day(tmp_path: Path) -> None:
    generate_world(tmp_path / "with", SMALL.model_copy(update={"daily_signup_rate": 0.1, "signup_days": 10}))
    generate_world(tmp_path / "without", SMALL.model_copy(update={"daily_signup_rate": 0.0}))
    meta = json.loads((tmp_path / "with" / "world.json").read_text())
    start = pd.Timestamp(meta["start_date"], tz="UTC")
    inter = load_dataset("synthetic", tmp_path / "with").interactions
    # sign-ups never change the history: same rows as the world without them
    history = inter[inter[C.TS] < start].reset_index(drop=True)
    pd.testing.assert_frame_equal(history, load_dataset("synthetic", tmp_path / "without").interactions)
    onboarding = inter[inter[C.TS] >= start]
    n = meta["signups"]["users"]
    assert 60 < n < 180  # Poisson(120 x 0.1 = 12) a day for 10 days
    assert len(onboarding) == meta["signups"]["onboarding_ratings"]
    assert set(onboarding[C.USER_ID]) == set(range(121, 121 + n))  # ids after the history's users
    by_user = onboarding.groupby(C.USER_ID)[C.TS]
    assert by_user.size().between(1, 4).all()
    join = by_user.min().dt.floor("D")
    assert (by_user.max().dt.floor("D") == join).all()  # all onboarding ratings on the join day
    assert join.is_monotonic_increasing and join.max() < start + pd.Timedelta(days=10)
    truth = TruthModel.load(tmp_path / "with")
    assert truth.n_users == 120 + n and (truth.segment_of(join.index.to_numpy()) == "new").all()
    # day index counts from the first run date (start - 1): no visit on the join day, visits after it
    days = (join - pd.Timestamp(meta["first_run_date"], tz="UTC")).dt.days
    idx = join.index.to_numpy() - 1
    for k in np.unique(days):
        joined = idx[days.to_numpy() == k]
        assert (truth.visit_probability(int(k), "evening")[joined] == 0).all()
        assert (truth.visit_probability(int(k) + 1, "evening")[joined] > 0).all()
    assert (truth.visit_probability(1, "evening")[:120] > 0).all()
    assert np.isfinite(truth.expected_rating(join.index.to_numpy(), np.ones(n, dtype=np.int64))).all()


def test_half_star_scale(tmp_path: Path) -> None:
    generate_world(tmp_path, SMALL.model_copy(update={"rating_step": 0.5}))
    data = load_dataset("synthetic", tmp_path)
    values = set(np.unique(data.interactions[C.RATING]))
    assert values <= set(np.arange(1.0, 5.01, 0.5)) and values - {1.0, 2.0, 3.0, 4.0, 5.0}


def test_segments_match_their_activity(world: Path, truth: TruthModel) -> None:
    inter = load_dataset("synthetic", world).interactions
    inter = inter[inter[C.USER_ID] <= 2000]  # the history's users (sign-ups: test_signups)
    per_user = inter.groupby(C.USER_ID).size()
    seg = pd.Series(truth.segment_of(per_user.index.to_numpy()), index=per_user.index)
    assert per_user[seg == "new"].max() <= 4
    assert per_user[seg == "power"].min() >= POWER_MIN_RATINGS
    assert per_user[seg == "casual"].between(5, 99).all()
    # power users were active in the last 30 days of the history (the pipeline's power rule)
    last = inter.groupby(C.USER_ID)[C.TS].max()
    assert (last[seg == "power"] >= pd.Timestamp("2025-12-01", tz="UTC")).mean() > 0.95
    shares = seg.value_counts(normalize=True)
    assert abs(shares["new"] - 0.15) < 0.03 and abs(shares["power"] - 0.20) < 0.03


def test_power_law_popularity_and_hidden_gems(truth: TruthModel) -> None:
    items = pd.DataFrame(truth.items)
    counts = items["history_ratings"].sort_values(ascending=False).to_numpy()
    head_80 = int(np.searchsorted(np.cumsum(counts) / counts.sum(), 0.8)) + 1
    assert head_80 / len(counts) < 0.4  # a short head (ML-100k: 32% of items hold 80% of ratings)
    gems = items[items["hidden_gem"]]
    assert len(gems) > 50
    # the planted definition: top-20% quality, less exposed half of the catalog, outside the head
    assert (gems["quality"] >= items["quality"].quantile(0.8) - 1e-12).all()
    assert (gems["exposure_rank"] > len(items) / 2).all() and not gems["is_head"].any()
    # gems are good (the world's population would rate them well) yet rarely rated
    assert gems["population_mean_rating"].mean() > items["population_mean_rating"].quantile(0.75)
    assert gems["history_ratings"].median() < items.loc[items["is_head"], "history_ratings"].median() / 5
    # quality and exposure are only loosely related
    assert abs(np.corrcoef(items["quality"], np.log(items["exposure"]))[0, 1]) < 0.5
    assert set(truth.hidden_gems()) == set(gems[C.ITEM_ID])


# --------------------------------------------------------------------------------------- truth API
def test_expected_rating_formula_by_hand() -> None:
    model = WorldModel(rating_noise_sd=0.75)
    # symmetric scale 1..5 around m = 3: the mean of the rounded, clipped rating is exactly 3
    assert model.expected_rating(np.array([3.0]))[0] == pytest.approx(3.0, abs=1e-12)
    assert model.expected_rating(np.array([-50.0, 50.0])).tolist() == pytest.approx([1.0, 5.0])
    # m = 4.5 without clipping would be 4.5; the cap at 5 pulls it down (P(r=5) ~ Phi(0) ~ 1/2)
    assert 4.0 < model.expected_rating(np.array([4.5]))[0] < 4.5
    assert model.round_to_scale(np.array([2.49, 2.5, 5.7, 0.2])).tolist() == [2.0, 3.0, 5.0, 1.0]
    halves = WorldModel(rating_step=0.5)
    assert halves.round_to_scale(np.array([2.49, 2.74, 2.76, 0.2])).tolist() == [2.5, 2.5, 3.0, 1.0]


def test_expected_rating_is_the_mean_of_sampled_ratings(truth: TruthModel) -> None:
    users = np.repeat(np.arange(1, 11), 5)
    items = np.tile(np.array([1, 50, 400, 900, 1500]), 10)
    expected = truth.expected_rating(users, items)
    rng = np.random.default_rng(0)
    draws = np.stack([truth.sample_ratings(users, items, rng) for _ in range(4000)])
    assert set(np.unique(draws)) <= {1, 2, 3, 4, 5}
    # standard error <= 2 / sqrt(4000) ~ 0.03
    np.testing.assert_allclose(draws.mean(axis=0), expected, atol=0.1)


def test_click_probability_position_bias_and_determinism(truth: TruthModel, world: Path) -> None:
    users = np.array([5, 5, 5, 9])
    items = np.array([10, 10, 10, 700])
    pos = np.array([1, 2, 10, 3])
    p = truth.click_probability(users, items, pos, "evening", 3)
    eta = truth.model.position_eta
    assert p[1] / p[0] == pytest.approx(2.0**-eta) and p[2] / p[0] == pytest.approx(10.0**-eta)
    assert ((p > 0) & (p < 1)).all()
    # day noise is seeded by the day: a fresh load reproduces it, another day changes it
    again = TruthModel.load(world).click_probability(users, items, pos, "evening", 3)
    np.testing.assert_array_equal(p, again)
    assert not np.allclose(p, truth.click_probability(users, items, pos, "evening", 4))
    with pytest.raises(ValueError, match="1-based"):
        truth.click_probability(users, items, np.array([0, 1, 2, 3]), "evening", 3)
    with pytest.raises(ValueError, match="unknown daypart"):
        truth.click_probability(users, items, pos, "brunch", 3)


def _mean_click(truth: TruthModel, segment: str, daypart: str, items: np.ndarray) -> float:
    all_users = np.arange(1, truth.n_users + 1)
    users = all_users[truth.segment_of(all_users) == segment][:150]
    u, i = np.meshgrid(users, items)
    probs = [
        truth.click_probability(u.ravel(), i.ravel(), np.ones(u.size), daypart, day).mean()
        for day in range(3)
    ]
    return float(np.mean(probs))


def test_contexts_prefer_different_items(truth: TruthModel) -> None:
    """New users in the morning click popular hits; power users in the evening click deep cuts."""
    hits = np.asarray(truth.items[C.ITEM_ID])[np.asarray(truth.items["exposure_rank"]) <= 30]
    gems = truth.hidden_gems()[:30]
    assert _mean_click(truth, "new", "morning", hits) > 1.2 * _mean_click(truth, "new", "morning", gems)
    assert _mean_click(truth, "power", "evening", gems) > 3 * _mean_click(truth, "power", "evening", hits)


def test_active_users(truth: TruthModel) -> None:
    # the visit probability is 1 - exp(-s_u h_ud w_t), weekends boosted (day 3 = 2026-01-03, a Saturday)
    s = truth.users["sessions_per_day"][0]
    h = truth.users["p_evening"][0]
    assert truth.date_of(3).weekday() == 5
    assert truth.visit_probability(2, "evening")[0] == pytest.approx(1 - np.exp(-s * h))
    assert truth.visit_probability(3, "evening")[0] == pytest.approx(1 - np.exp(-s * h * 1.2))
    a = truth.active_users(1, "evening", np.random.default_rng(5))
    b = truth.active_users(1, "evening", np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a) > 0) and a.min() >= 1 and a.max() <= truth.n_users
    morning = truth.active_users(1, "morning", np.random.default_rng(6))
    power_share = lambda ids: np.mean(truth.segment_of(ids) == "power")  # noqa: E731
    assert power_share(a) > power_share(morning)


def test_unknown_ids_and_missing_world(truth: TruthModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"user ids must be in 1\.\.{truth.n_users}"):
        truth.expected_rating([0], [1])
    with pytest.raises(ValueError, match=r"item ids must be in 1\.\.1500"):
        truth.expected_rating([1], [1501])
    with pytest.raises(WorldNotFoundError, match="deepcuts generate"):
        TruthModel.load(tmp_path)


# -------------------------------------------------------------------------------------------- CLI
def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    args = ["generate", "--out", str(out), "--users", "40", "--items", "30", "--days", "7", "--seed", "5"]
    assert cli_main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["users"] == 40 and printed["items"] == 30 and printed["seed"] == 5
    assert printed["history_days"] == 7
    inter = load_dataset("synthetic", out).interactions
    assert inter.loc[inter[C.TS] < pd.Timestamp(printed["start_date"], tz="UTC"), C.USER_ID].nunique() == 40


# -------------------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(
    keys=arrays(
        np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.floats(-5, 5, width=32)
    ),
    data=st.data(),
)
def test_top_k_rows_is_a_sample_without_replacement(keys: np.ndarray, data: st.DataObject) -> None:
    k = np.array(data.draw(st.lists(st.integers(1, keys.shape[1]), min_size=len(keys), max_size=len(keys))))
    picks = _top_k_rows(keys, k)
    for r, chosen in enumerate(picks):
        assert len(chosen) == k[r] == len(set(chosen.tolist()))
        vals = keys[r, chosen]
        assert np.all(np.diff(vals) <= 0)  # decreasing keys
        assert vals.min() >= np.sort(keys[r])[::-1][k[r] - 1]  # they are the k largest


@settings(max_examples=60, deadline=None)
@given(m=arrays(np.float64, 8, elements=st.floats(-10, 15)), step=st.sampled_from([0.5, 1.0]))
def test_ratings_stay_on_the_scale(m: np.ndarray, step: float) -> None:
    model = WorldModel(rating_step=step)
    r = model.round_to_scale(m)
    assert np.isin(r, model.levels).all()
    e = model.expected_rating(m)
    assert ((e >= 1.0 - 1e-9) & (e <= 5.0 + 1e-9)).all()
    assert np.all(np.diff(model.expected_rating(np.sort(m))) >= -1e-9)  # monotone in m
