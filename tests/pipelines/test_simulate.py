"""``run_night`` and the closed-loop simulator."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines import nightly
from deepcuts.pipelines.ab_analysis import niche_item_ids
from deepcuts.pipelines.nightly import STEP_NAMES, Step, StepMissingError, resolve, run_night
from deepcuts.pipelines.simulate_summary import arm_shares, by_variant_metrics, truth_metrics
from deepcuts.pipelines.simulate_worlds import (
    VISIT_MINUTE,
    ReplayWorld,
    SimWorld,
    draw_visit_minutes,
    feedback_events,
    visit_hour_probabilities,
)
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import load_settings
from tests.tiny_world import tiny_world_settings

D1 = date(2026, 3, 1)


def test_registry_matches_the_architecture_document() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    for step in nightly.STEPS:
        assert f"`{step.module}.{step.function}(" in doc, step


def test_resolve_missing_module_or_function_is_an_error() -> None:
    with pytest.raises(StepMissingError, match=r"no module .*no_such_step_module"):
        resolve(Step("x", "deepcuts.pipelines.no_such_step_module", "run"))
    with pytest.raises(StepMissingError, match="has no function 'no_such_function'"):
        resolve(Step("x", "deepcuts.pipelines.ab_analysis", "no_such_function"))
    assert resolve(Step("x", "deepcuts.pipelines.ab_analysis", "ab_analysis")).__name__ == "ab_analysis"


def test_run_night_skips_on_request_and_runs_the_rest(lake_home: Path) -> None:
    settings = load_settings(home=str(lake_home))
    out = run_night(settings, D1, skip=[s for s in STEP_NAMES if s != "ab_analysis"])
    assert out["results"]["ab_analysis"]["verdict"] == "keep running"
    assert set(out["skipped"]) == set(STEP_NAMES) - {"ab_analysis"}
    assert Lake(lake_home).exists(Dataset.AB_RESULTS, D1, "verdict.json")
    with pytest.raises(ValueError, match="unknown steps"):
        run_night(settings, D1, skip=["nope"])


def test_run_night_stops_at_a_missing_step(lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renamed step function must fail the night, not vanish from it (simulations included)."""
    settings = load_settings(home=str(lake_home))
    registry = (*nightly.STEPS, Step("ghost", "deepcuts.pipelines.ab_analysis", "renamed_away"))
    monkeypatch.setattr(nightly, "STEPS", registry)
    monkeypatch.setattr(nightly, "STEP_NAMES", (*STEP_NAMES, "ghost"))
    others = [s for s in STEP_NAMES if s != "ab_analysis"]
    with pytest.raises(StepMissingError, match="ghost"):
        run_night(settings, D1, skip=others)
    assert not Lake(lake_home).exists(Dataset.AB_RESULTS, D1, "verdict.json")  # it failed before any step
    assert run_night(settings, D1, skip=[*others, "ghost"])["skipped"]["ghost"] == "skipped on request"


# ------------------------------------------------------------------------------------ simulator parts
SERVED = date(2026, 3, 2)
HOURS = {"morning": 6, "afternoon": 12, "evening": 18, "night": 23}


def _shown() -> pd.DataFrame:
    """Two visits (user 1 evening, control; user 2 night, treatment) of two positions each."""
    return pd.DataFrame(
        {
            C.USER_ID: [1, 1, 2, 2],
            C.DAYPART: ["evening", "evening", "night", "night"],
            C.RANK: [1, 2, 1, 2],
            C.ITEM_ID: [10, 11, 12, 13],
            C.ARM: ["svd", "svd", "graph", "graph"],
            C.VARIANT: ["control", "control", "treatment", "treatment"],
            C.IS_LONG_TAIL: [False, True, True, True],
            C.SEGMENT: ["casual", "casual", "power", "power"],
            C.PROPENSITY: [1.0, 1.0, 0.4, 0.4],
            C.LIST_VERSION: ["2026-03-01.v1"] * 4,
        }
    )


def test_feedback_events_follow_the_contract(lake_home: Path) -> None:
    clicked = np.array([True, False, False, True])
    ratings = np.array([4.0, np.nan, np.nan, np.nan])
    events = feedback_events(_shown(), clicked, ratings, SERVED, HOURS, np.random.default_rng(0))
    counts = events[C.EVENT_TYPE].value_counts().to_dict()
    assert counts == {"impression": 4, "click": 2, "rating": 1}
    assert events[C.EVENT_ID].is_unique
    assert "sim:2026-03-02:1:evening:1:click" in set(events[C.EVENT_ID])
    rating = events[events[C.EVENT_TYPE] == "rating"].iloc[0]
    assert rating[C.RATING] == 4.0 and rating[C.ITEM_ID] == 10 and rating[C.POSITION] == 1
    ts = pd.to_datetime(events[C.EVENT_TS], utc=True)
    assert (ts.dt.date == SERVED).all()
    night = events[events[C.DAYPART] == "night"]
    assert (pd.to_datetime(night[C.EVENT_TS], utc=True).dt.hour == 23).all()
    assert set(events.loc[events[C.USER_ID] == 2, C.PROPENSITY]) == {0.4}
    # the landing dataset enforces FEEDBACK_SCHEMA on write
    Lake(lake_home).write_table(Dataset.LANDING_FEEDBACK, SERVED, events)
    # same inputs, same bytes of ids and times
    again = feedback_events(_shown(), clicked, ratings, SERVED, HOURS, np.random.default_rng(0))
    pd.testing.assert_frame_equal(events, again)


def test_visit_hours_follow_the_profile_inside_each_daypart() -> None:
    from deepcuts.formulas import daypart_hours

    profile = tuple(3.0 if h == 23 else 1.0 for h in range(24))
    p = visit_hour_probabilities(profile, daypart_hours((6, 12, 18, 23)))
    # night runs 23:00-06:00 within the served day: 23 h (weight 3) and 0..5 h (weight 1 each)
    assert set(np.flatnonzero(p["night"])) == {23, 0, 1, 2, 3, 4, 5}
    assert p["night"][23] == pytest.approx(3 / 9) and p["night"][0] == pytest.approx(1 / 9)
    assert set(np.flatnonzero(p["evening"])) == {18, 19, 20, 21, 22}
    assert p["morning"][6:12] == pytest.approx([1 / 6] * 6)
    for probs in p.values():
        assert probs.sum() == pytest.approx(1.0)

    n = 90_000
    dayparts = np.array(["night"] * n + ["evening"] * 10, dtype=object)
    minutes = draw_visit_minutes(dayparts, p, np.random.default_rng(3))
    hours = minutes // 60
    assert set(hours[n:]) <= {18, 19, 20, 21, 22}
    # 90k draws: 4 standard errors of a share of 1/3 are 0.0063
    assert np.mean(hours[:n] == 23) == pytest.approx(3 / 9, abs=0.0063)
    assert np.mean(hours[:n] == 2) == pytest.approx(1 / 9, abs=0.0042)
    assert (minutes % 60 < 45).all()  # clicks and ratings (<= 8.3 min later) stay in the hour
    same = draw_visit_minutes(dayparts, p, np.random.default_rng(3))
    np.testing.assert_array_equal(minutes, same)
    with pytest.raises(ValueError, match="brunch"):
        draw_visit_minutes(np.array(["brunch"], dtype=object), p, np.random.default_rng(0))


def test_visit_profile_settings_are_checked() -> None:
    from pydantic import ValidationError

    from deepcuts.settings import WorldSettings

    assert WorldSettings().visit_timing == "hourly" and len(WorldSettings().visit_hour_profile) == 24
    with pytest.raises(ValidationError, match="24 weights"):
        WorldSettings(visit_hour_profile=(1.0,) * 23)
    with pytest.raises(ValidationError, match="24 weights"):
        WorldSettings(visit_hour_profile=(-1.0,) + (1.0,) * 23)
    quiet_nights = tuple(0.0 if h >= 23 or h < 6 else 1.0 for h in range(24))
    with pytest.raises(ValidationError, match=r"hours \[23, 0, 1, 2, 3, 4, 5\]"):
        WorldSettings(visit_hour_profile=quiet_nights)


def test_feedback_events_start_at_the_worlds_visit_minute() -> None:
    shown = _shown().assign(**{VISIT_MINUTE: [18 * 60 + 7] * 2 + [2 * 60 + 44] * 2})
    clicked = np.array([True, False, False, True])
    events = feedback_events(shown, clicked, np.full(4, np.nan), SERVED, HOURS, np.random.default_rng(0))
    ts = pd.to_datetime(events[C.EVENT_TS], utc=True)
    impressions = events[C.EVENT_TYPE] == "impression"
    first = ts[impressions].groupby(events.loc[impressions, C.USER_ID]).min()
    assert first[1] == pd.Timestamp("2026-03-02T18:07", tz="UTC")
    assert first[2] == pd.Timestamp("2026-03-02T02:44", tz="UTC")  # a night visit after midnight
    # the click at position 2 follows 40 s after the impression, in the same hour
    click = events[events[C.EVENT_TYPE] == "click"].set_index(C.USER_ID)[C.EVENT_TS]
    assert pd.Timestamp(click[2]) == pd.Timestamp("2026-03-02T02:44:40", tz="UTC")
    # the same events as the daypart-start timing apart from the times (ids, arms, propensities)
    old = feedback_events(_shown(), clicked, np.full(4, np.nan), SERVED, HOURS, np.random.default_rng(0))
    cols = [c for c in events.columns if c != C.EVENT_TS]
    key = [C.EVENT_ID]
    pd.testing.assert_frame_equal(
        events[cols].sort_values(key, ignore_index=True), old[cols].sort_values(key, ignore_index=True)
    )


def test_by_variant_metrics_and_arm_shares_hand_computed() -> None:
    genres = pd.DataFrame(
        {C.ITEM_ID: [10, 11, 12, 13], C.GENRES: [["Drama"], ["Drama", "Anime"], ["Western"], []]}
    )
    clicked = np.array([True, False, False, True])
    ratings = np.array([4.0, np.nan, np.nan, np.nan])
    # niche genres Western (+ Anime): items 11 and 12; control shows 11 (not clicked), treatment 12
    niche = niche_item_ids(genres, ("Anime", "Western"))
    out = by_variant_metrics(_shown(), clicked, ratings, genres, niche)
    assert out["control"] == {
        "impressions": 2,
        "clicks": 1,
        "ctr": 0.5,
        "lists": 1,
        "ratings": 1,
        "mean_rating": 4.0,
        "long_tail_share": 0.5,
        "genres_per_list": 2.0,
        "exposed_users": 1,
        "niche_impressions": 1,
        "niche_clicks": 0,
    }
    assert out["treatment"]["genres_per_list"] == 1.0 and out["treatment"]["mean_rating"] is None
    # Drama counted niche: control's clicked item 10 becomes a niche click
    out = by_variant_metrics(_shown(), clicked, ratings, genres, niche_item_ids(genres, ("Drama",)))
    assert out["control"]["niche_impressions"] == 2 and out["control"]["niche_clicks"] == 1
    assert out["treatment"]["niche_impressions"] == 0 and out["treatment"]["niche_clicks"] == 0
    visits = pd.DataFrame(
        {
            C.USER_ID: [1, 2, 3, 4],
            C.DAYPART: ["night"] * 4,
            C.SEGMENT: ["power", "power", "power", "new"],
            C.ARM: ["graph", "graph", "svd", "svd"],
        }
    )
    assert arm_shares(visits) == {
        "new/night": {"svd": 1.0},
        "power/night": {"graph": pytest.approx(2 / 3), "svd": pytest.approx(1 / 3)},
    }


class _ItemWorld(SimWorld):
    """A world with known click probabilities: P(click on item i) = i / 100 at every position."""

    name = "item-world"
    has_truth = True

    @property
    def first_night(self) -> date:
        return D1

    def visits(self, day_index: int, served_day: date, rng: np.random.Generator) -> pd.DataFrame:
        return pd.DataFrame({C.USER_ID: [1, 2], C.DAYPART: ["evening", "evening"]})

    def respond(self, shown, day_index, served_day, rng):  # type: ignore[no-untyped-def]
        return np.zeros(len(shown), bool), np.full(len(shown), np.nan)

    def visit_weight(self, pairs: pd.DataFrame, day_index: int) -> np.ndarray:
        return np.ones(len(pairs))

    def expected_reward(self, lists: pd.DataFrame, day_index: int) -> pd.Series:
        p = lists[C.ITEM_ID].to_numpy() / 100.0
        frame = lists[[C.USER_ID, C.DAYPART, C.ARM]].assign(_m=np.log1p(-p))
        return -np.expm1(frame.groupby([C.USER_ID, C.DAYPART, C.ARM])["_m"].sum())


def test_truth_metrics_best_arm_share_and_regret() -> None:
    # arm "a" shows item 50 (reward 0.5), arm "b" shows items 10 and 20 (1 - 0.9 * 0.8 = 0.28)
    lists = pd.DataFrame(
        {
            C.USER_ID: [1, 1, 1, 2, 2, 2],
            C.ARM: ["a", "b", "b", "a", "b", "b"],
            C.RANK: [1, 1, 2, 1, 1, 2],
            C.ITEM_ID: [50, 10, 20, 50, 10, 20],
        }
    )
    visits = pd.DataFrame(
        {
            C.USER_ID: [1, 2],
            C.DAYPART: ["evening", "evening"],
            C.SEGMENT: ["casual", "casual"],
            C.ARM: ["a", "b"],
        }
    )
    population = visits[[C.USER_ID, C.DAYPART, C.SEGMENT]]
    out = truth_metrics(_ItemWorld(), visits, lists, population, 1)
    assert out.best_arm == {"casual/evening": "a"}
    assert out.best_arm_share == {"casual/evening": 0.5}
    assert out.expected_reward["casual/evening"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.28)}
    # pseudo-regret: one visit served by "b" in a context whose best arm is "a"
    assert out.regret == pytest.approx(0.5 - 0.28)


def test_replay_world_clicks_are_future_high_ratings() -> None:
    ts = pd.to_datetime(
        ["2026-03-02 19:00", "2026-03-02 20:00", "2026-03-05 10:00", "2026-03-20 10:00", "2026-03-02 07:00"],
        utc=True,
    )
    ratings = pd.DataFrame(
        {
            C.USER_ID: [1, 1, 1, 1, 2],
            C.ITEM_ID: [10, 11, 12, 13, 20],
            C.RATING: [5.0, 2.0, 4.0, 5.0, 3.0],
            C.TS: ts,
        }
    )
    settings = load_settings()
    from deepcuts.models.policy.context import daypart_of

    world = ReplayWorld(ratings, D1, 7, 4.0, lambda t: daypart_of(t, settings.bandit))
    visits = world.visits(1, SERVED, np.random.default_rng(0))
    assert visits.to_dict("list") == {C.USER_ID: [1, 2], C.DAYPART: ["evening", "morning"]}
    shown = pd.DataFrame({C.USER_ID: [1, 1, 1, 1, 1], C.ITEM_ID: [10, 11, 12, 13, 99]})
    clicked, rated = world.respond(shown, 1, SERVED, np.random.default_rng(0))
    # item 10 rated 5 today: click; 11 rated 2: no; 12 rated 4 within 7 days: click; 13 too late; 99 never
    assert clicked.tolist() == [True, False, True, False, False]
    assert rated[0] == 5.0 and rated[2] == 4.0 and np.isnan(rated[1])


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_two_night_synthetic_simulation_end_to_end(tmp_path: Path) -> None:
    """The real steps, a tiny world, two nights: feedback lands, is ingested and analysed next night."""
    pytest.importorskip("deepcuts.pipelines.ingest", reason="the ingest step is not in this code base yet")
    from deepcuts.pipelines.simulate import live_lists, simulate

    home = tmp_path / "lake"
    settings = tiny_world_settings(
        home, world={"daily_signup_rate": 0.1}, simulator={"skip_steps": ["report"]}
    )
    out = tmp_path / "sim.json"
    record = simulate(settings, "synthetic", 2, out=out)
    saved = json.loads(out.read_text())
    assert saved["world"] == "synthetic" and saved["days"] == 2 and saved["seed"] == 5
    assert [n["night"] for n in saved["nights"]] == [1, 2]
    assert out.with_suffix(".png").exists()
    required = {
        "impressions", "clicks", "ctr", "arm_share", "best_arm_share", "cumulative_regret",
        "long_tail_share", "genres_per_list", "mean_rating", "ab", "niche_clicks", "niche_impressions",
    }  # fmt: skip
    for night in saved["nights"]:
        assert required <= set(night)
        assert set(night["impressions"]) == {"control", "treatment"}
        assert set(night["ab"]) == {
            "verdict",
            "p_value",
            "lift",
            "ci_low",
            "ci_high",
            "srm_p_value",
            "scoreboard",
        }
        assert set(night["niche_clicks"]) == {"control", "treatment"}
        assert night["niche_clicks"]["treatment"] <= night["clicks"]["treatment"]
        assert night["skipped_steps"] == {"report": "skipped on request"}
        for shares in night["arm_share"].values():
            assert sum(shares.values()) == pytest.approx(1.0)
    first, second = saved["nights"]
    assert first["cumulative_regret"] <= second["cumulative_regret"] + 1e-9
    # night 1's served-day feedback went through ingest on night 2 and into the A/B analysis
    lake = Lake(home)
    landed = lake.read_df(Dataset.LANDING_FEEDBACK, date.fromisoformat(first["served_day"]))
    assert len(landed) == first["events"] > 0
    ingested = lake.read_df(Dataset.FEEDBACK_EVENTS, date.fromisoformat(second["run_date"]))
    assert 0 < len(ingested) <= len(landed)
    assert second["ab"]["srm_p_value"] is not None
    assert record["summary"]["ctr_control"] is not None
    board = saved["summary"]["scoreboard"]
    assert set(board) == {
        "ctr_lift",
        "long_tail_share",
        "genres_per_list",
        "mean_rating",
        "niche_click_ratio",
    }
    assert all({"control", "treatment", "target", "met"} <= set(entry) for entry in board.values())
    assert {"ci_low", "ci_high"} <= set(board["ctr_lift"]) & set(board["niche_click_ratio"])
    assert board == second["ab"]["scoreboard"]  # the last night's, as ab_analysis computed it
    # the serving DB's live version is what the simulated app served last
    assert live_lists(settings) == (date.fromisoformat(second["live_run_date"]), second["list_version"])
    # the policy's probability of each context's true best arm is recorded with the realised share
    assert set(second["best_arm_probability"]) == set(second["best_arm"])
    assert all(0.0 < p < 1.0 for p in second["best_arm_probability"].values())
    # sign-ups who joined on night 2's run date (their onboarding ratings are in that day's source
    # delta) are ingested that night and get lists for the next day; night 1 knew none of them
    joined = set(
        lake.read_df(Dataset.INTERACTIONS, date.fromisoformat(second["run_date"])).query(f"{C.USER_ID} > 60")[
            C.USER_ID
        ]
    )
    assert joined, "the world's sign-ups should have joined on the first served day"
    assigned = {
        night["run_date"]: set(
            lake.read_df(Dataset.ASSIGNMENTS, date.fromisoformat(night["run_date"]))[C.USER_ID]
        )
        for night in saved["nights"]
    }
    assert joined <= assigned[second["run_date"]] and not joined & assigned[first["run_date"]]


def test_planted_arm_multiplies_click_probabilities(tmp_path: Path) -> None:
    from deepcuts.pipelines.simulate_worlds import SyntheticWorld, planted_arms
    from deepcuts.pipelines.world import generate_world
    from deepcuts.settings import WorldSettings

    generate_world(tmp_path, WorldSettings(users=20, items=40, history_days=10, ratings_per_user=5.0))
    settings = load_settings(home=str(tmp_path))
    planted = planted_arms(settings)
    assert len(planted) == 12 and set(planted.values()) <= set(settings.bandit.arms)
    assert planted == planted_arms(settings)  # derived from the seed
    shown = pd.DataFrame(
        {
            C.USER_ID: [1, 1],
            C.ITEM_ID: [3, 3],
            C.RANK: [1, 1],
            C.DAYPART: ["evening", "evening"],
            C.SEGMENT: ["casual", "casual"],
            C.ARM: [planted["casual/evening"], "other"],
        }
    )
    base = SyntheticWorld(tmp_path, 0.5).click_probability(shown, 1)
    lifted = SyntheticWorld(tmp_path, 0.5, planted, 0.5).click_probability(shown, 1)
    assert base[0] == base[1]
    assert lifted[0] == pytest.approx(min(1.5 * base[0], 1.0)) and lifted[1] == base[1]


def test_live_lists_is_none_before_any_publish(lake_home: Path) -> None:
    from deepcuts.pipelines.simulate import live_lists

    assert live_lists(load_settings(home=str(lake_home))) is None


def test_cli_rejects_inconsistent_world_options(tmp_path: Path) -> None:
    from deepcuts.cli import main

    with pytest.raises(SystemExit, match="needs --path"):
        main(["simulate", "--world", "movielens", "--home", str(tmp_path), "--out", str(tmp_path / "s.json")])
    with pytest.raises(SystemExit, match="for --world movielens"):
        main(["simulate", "--world", "synthetic", "--path", "x", "--home", str(tmp_path)])
    replay = ["simulate", "--world", "movielens", "--path", "x", "--home", str(tmp_path)]
    with pytest.raises(SystemExit, match="are for --world synthetic"):
        main([*replay, "--planted-lift", "1"])


def test_cli_bandit_validation_options_reach_the_settings(tmp_path: Path) -> None:
    import argparse

    from deepcuts.cli.simulate import register, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "simulate",
            "--home",
            str(tmp_path),
            "--users",
            "6000",
            "--signup-rate",
            "0.04",
            "--planted-lift",
            "1",
        ]
    )
    settings = settings_from_args(args)
    assert settings.world.users == 6000 and settings.world.daily_signup_rate == 0.04
    assert settings.simulator.planted_arm_lift == 1.0 and settings.source.dataset == "synthetic"
    defaults = settings_from_args(parser.parse_args(["simulate", "--home", str(tmp_path)]))
    assert defaults.simulator.planted_arm_lift == 0.0 and defaults.world.daily_signup_rate == 0.005


@pytest.mark.slow
def test_worker_processes_change_nothing(tmp_path: Path) -> None:
    """Per-arm and per-shard calls in worker processes (like mapped tasks) give the same night."""
    from deepcuts.pipelines.simulate import simulate

    records = {}
    for workers in (1, 2):
        settings = tiny_world_settings(
            tmp_path / f"lake-{workers}",
            simulator={"skip_steps": ["report", "evaluate"], "workers": workers, "plot": False},
        )
        records[workers] = simulate(settings, "synthetic", 2)
        lake = Lake(settings.home)
        records[workers]["candidates"] = lake.read_df(Dataset.CANDIDATES, records[workers]["first_night"])
    for a, b in zip(records[1]["nights"], records[2]["nights"], strict=True):
        for key in ("impressions", "clicks", "arm_share", "long_tail_share", "events"):
            assert a[key] == b[key], key
    pd.testing.assert_frame_equal(records[1]["candidates"], records[2]["candidates"])
