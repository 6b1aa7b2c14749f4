"""The ``ab_analysis`` step on a tiny lake with hand-computed answers."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcuts.contracts import FEEDBACK_SCHEMA, C, Dataset, EventType, Variant
from deepcuts.pipelines.ab_analysis import (
    SCOREBOARD_METRICS,
    STATE_PART,
    SUMMARY_PART,
    VERDICT_FILE,
    Verdict,
    ab_analysis,
    combine_totals,
    design_share,
    drop_moved_users,
    list_metrics,
    read_verdict,
    user_totals,
)
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings, load_settings

D1 = date(2026, 3, 1)
D2 = date(2026, 3, 2)
CTL, TRT = Variant.CONTROL.value, Variant.TREATMENT.value


def _settings(home: Path, **ab: object) -> Settings:
    return load_settings(home=str(home), ab={"min_users_per_variant": 2, **ab})


def _events(day: date, users: list[tuple[int, str, int, int, list[float]]]) -> pd.DataFrame:
    """Feedback rows: per (user, variant, impressions, clicks, ratings)."""
    rows = []
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    for uid, variant, imps, clicks, ratings in users:
        kinds = (
            [EventType.IMPRESSION.value] * imps
            + [EventType.CLICK.value] * clicks
            + [EventType.RATING.value] * len(ratings)
        )
        values = [None] * (imps + clicks) + ratings
        for k, (kind, rating) in enumerate(zip(kinds, values, strict=True)):
            rows.append(
                {
                    C.EVENT_ID: f"{day}-{uid}-{k}",
                    C.EVENT_TS: ts + timedelta(seconds=k),
                    C.USER_ID: uid,
                    C.ITEM_ID: 100 + k,
                    C.EVENT_TYPE: kind,
                    C.POSITION: k % 10 + 1,
                    C.RATING: rating,
                    C.ARM: "svd",
                    C.LIST_VERSION: "v1",
                    C.VARIANT: variant,
                    C.SEGMENT: "casual",
                    C.DAYPART: "evening",
                    C.PROPENSITY: 1.0,
                }
            )
    if not rows:
        return FEEDBACK_SCHEMA.empty_table().to_pandas()
    return pd.DataFrame(rows)


def _write_feedback(home: Path, day: date, users: list[tuple[int, str, int, int, list[float]]]) -> None:
    lake = Lake(home)
    lake.write_table(Dataset.FEEDBACK_EVENTS, day, _events(day, users))
    lake.mark_all_complete()  # as ingest does when it finishes


def test_user_totals_counts_events_and_flags_crossovers() -> None:
    fb = _events(D1, [(1, CTL, 4, 1, [4.0, 5.0]), (2, TRT, 2, 0, [])])
    # user 3 shows up in both variants: 2 treatment events vs 1 control event -> treatment
    extra = _events(D1, [(3, TRT, 2, 0, []), (3, CTL, 1, 0, [])])
    extra[C.EVENT_ID] = extra[C.EVENT_ID] + "x" + extra.index.astype(str)
    unlabelled = _events(D1, [(4, "", 3, 0, [])])
    out = user_totals(pd.concat([fb, extra, unlabelled], ignore_index=True))
    t = out.totals.set_index(C.USER_ID)
    assert list(t.index) == [1, 2, 3]
    assert t.loc[1, C.IMPRESSIONS] == 4 and t.loc[1, C.CLICKS] == 1
    assert t.loc[1, C.RATING_SUM] == 9.0 and t.loc[1, C.RATING_COUNT] == 2
    assert t.loc[3, C.VARIANT] == TRT and t.loc[3, C.IMPRESSIONS] == 3
    assert out.crossover_users == 1 and out.unlabelled_events == 3


def test_combine_totals_adds_and_keeps_first_variant() -> None:
    a = user_totals(_events(D1, [(1, CTL, 2, 1, []), (2, TRT, 1, 0, [3.0])])).totals
    b = user_totals(_events(D2, [(2, TRT, 3, 2, []), (5, CTL, 1, 1, [])])).totals
    both = combine_totals(a, b).set_index(C.USER_ID)
    assert both.loc[2, C.IMPRESSIONS] == 4 and both.loc[2, C.CLICKS] == 2
    assert both.loc[2, C.RATING_COUNT] == 1
    assert sorted(both.index) == [1, 2, 5]


def test_a_moved_user_keeps_the_first_arm_and_the_srm_expects_shares_at_first_exposure() -> None:
    first = user_totals(_events(D1, [(1, CTL, 2, 1, []), (2, TRT, 1, 0, []), (3, CTL, 4, 0, [])])).totals
    first = first.assign(**{C.TREATMENT_SHARE: 0.2})
    # a ramp to 50% moved user 1 to treatment; user 4 is new
    night = user_totals(_events(D2, [(1, TRT, 5, 5, []), (2, TRT, 1, 1, []), (4, TRT, 2, 0, [])])).totals
    kept, moved = drop_moved_users(first, night.assign(**{C.TREATMENT_SHARE: 0.5}))
    assert moved == 1 and kept[C.USER_ID].tolist() == [2, 4]
    totals = combine_totals(first, kept).set_index(C.USER_ID)
    assert totals.loc[1, C.VARIANT] == CTL and totals.loc[1, C.CLICKS] == 1  # the 5 clicks are not counted
    assert totals.loc[2, C.TREATMENT_SHARE] == 0.2 and totals.loc[4, C.TREATMENT_SHARE] == 0.5
    # expected treatment share: (0.2 + 0.2 + 0.2 + 0.5) / 4; a user with no recorded share counts 0.5
    assert design_share(totals.reset_index(), 0.5) == pytest.approx(1.1 / 4)
    legacy = totals.reset_index().assign(**{C.TREATMENT_SHARE: [0.2, float("nan"), 0.2, 0.5]})
    assert design_share(legacy, 0.5) == pytest.approx(1.4 / 4)


def test_step_hand_computed_ctr_and_cumulative_state(lake_home: Path) -> None:
    s = _settings(lake_home)
    # night 1: control users 1, 2 (CTR 2/8), treatment users 3, 4 (CTR 3/8)
    _write_feedback(
        lake_home,
        D1,
        [(1, CTL, 4, 1, [4.0]), (2, CTL, 4, 1, []), (3, TRT, 4, 2, [5.0]), (4, TRT, 4, 1, [])],
    )
    out1 = ab_analysis(s, D1)
    assert out1["users"] == {CTL: 2, TRT: 2}
    v1 = read_verdict(s, D1)
    assert v1["ctr"][CTL]["ctr"] == pytest.approx(0.25)
    assert v1["ctr"][TRT]["ctr"] == pytest.approx(0.375)
    assert v1["diff"] == pytest.approx(0.125)
    assert v1["lift"] == pytest.approx(0.5)
    # treatment delta variance: residuals (2 - 1.5, 1 - 1.5) -> 0.5 / (1 * 2 * 16) = 1/64; control 0
    assert v1["ctr"][TRT]["variance"] == pytest.approx(1 / 64)
    assert v1["ctr"][CTL]["variance"] == pytest.approx(0.0)
    assert v1["looks"] == 1
    assert v1["guardrails"]["mean_rating"] == {
        "control": 4.0,
        "treatment": 5.0,
        "margin": 0.1,
        "pass": True,
    }

    # night 2 adds to the running totals
    _write_feedback(lake_home, D2, [(1, CTL, 4, 0, []), (5, TRT, 2, 2, [])])
    ab_analysis(s, D2)
    v2 = read_verdict(s, D2)
    assert v2["looks"] == 2
    assert v2["ctr"][CTL]["ctr"] == pytest.approx(2 / 12)
    assert v2["ctr"][TRT]["ctr"] == pytest.approx(5 / 10)
    assert v2["p_value"] <= v1["p_value"]
    state = Lake(lake_home).read_df(Dataset.AB_RESULTS, D2, parts=[STATE_PART]).set_index(C.USER_ID)
    assert state.loc[1, C.IMPRESSIONS] == 8 and state.loc[5, C.CLICKS] == 2

    summary = Lake(lake_home).read_df(Dataset.AB_RESULTS, D2, parts=[SUMMARY_PART])
    night_ctr = summary[
        (summary[C.SCOPE] == "night") & (summary[C.METRIC] == "ctr") & (summary[C.VARIANT] == TRT)
    ][C.VALUE]
    assert night_ctr.item() == pytest.approx(1.0)
    # no ratings on night 2 in control: stored as null
    night_rating = summary[
        (summary[C.SCOPE] == "night") & (summary[C.METRIC] == "mean_rating") & (summary[C.VARIANT] == CTL)
    ][C.VALUE]
    assert math.isnan(night_rating.item())


def test_step_is_idempotent(lake_home: Path) -> None:
    s = _settings(lake_home)
    _write_feedback(lake_home, D1, [(1, CTL, 3, 1, []), (2, TRT, 3, 2, [4.5]), (3, TRT, 2, 0, [])])
    ab_analysis(s, D1)
    lake = Lake(lake_home)
    first = {
        p: lake.read_bytes(Dataset.AB_RESULTS, D1, p)
        for p in (VERDICT_FILE, SUMMARY_PART + ".parquet", STATE_PART + ".parquet")
    }
    ab_analysis(s, D1.isoformat())  # the DAG passes ISO text
    for name, payload in first.items():
        assert lake.read_bytes(Dataset.AB_RESULTS, D1, name) == payload


def _many_users(n: int, variant: str, start: int, ctr: float, rng: np.random.Generator) -> list:
    return [(start + i, variant, 10, int(rng.binomial(10, ctr)), []) for i in range(n)]


def test_verdicts_treatment_control_and_srm(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    strong_t = _many_users(300, CTL, 0, 0.05, rng) + _many_users(300, TRT, 1000, 0.30, rng)
    home = tmp_path / "t"
    _write_feedback(home, D1, strong_t)
    assert ab_analysis(_settings(home), D1)["verdict"] == Verdict.TREATMENT_WINS.value

    strong_c = _many_users(300, CTL, 0, 0.30, rng) + _many_users(300, TRT, 1000, 0.05, rng)
    home = tmp_path / "c"
    _write_feedback(home, D1, strong_c)
    assert ab_analysis(_settings(home), D1)["verdict"] == Verdict.CONTROL_WINS.value

    # 200 vs 400 users on a 50/50 design: chi2 = 2 * 100^2 / 300 = 66.7, SRM beats everything
    srm = _many_users(200, CTL, 0, 0.05, rng) + _many_users(400, TRT, 1000, 0.30, rng)
    home = tmp_path / "s"
    _write_feedback(home, D1, srm)
    out = ab_analysis(_settings(home), D1)
    assert out["verdict"] == Verdict.INVALID.value and out["srm_p_value"] < 1e-10

    home = tmp_path / "few"
    _write_feedback(home, D1, strong_t)
    out = ab_analysis(_settings(home, min_users_per_variant=1000), D1)
    assert out["verdict"] == Verdict.KEEP_RUNNING.value and out["p_value"] == 1.0


def test_guardrail_failure_blocks_a_treatment_win(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    users = _many_users(300, CTL, 0, 0.05, rng) + _many_users(300, TRT, 1000, 0.30, rng)
    # ratings: control 4.5, treatment 3.5 -> the mean-rating guardrail fails
    users = [(u, v, i, c, [4.5] if v == CTL else [3.5]) for u, v, i, c, _ in users]
    _write_feedback(tmp_path, D1, users)
    out = ab_analysis(_settings(tmp_path), D1)
    record = read_verdict(_settings(tmp_path), D1)
    assert out["verdict"] == Verdict.KEEP_RUNNING.value
    assert record["guardrails"]["mean_rating"]["pass"] is False
    assert "mean_rating" in record["message"]


def test_experiment_change_resets_the_sequential_state(lake_home: Path) -> None:
    _write_feedback(lake_home, D1, [(1, CTL, 4, 1, []), (2, TRT, 4, 2, [])])
    ab_analysis(_settings(lake_home), D1)
    _write_feedback(lake_home, D2, [(1, CTL, 4, 1, []), (2, TRT, 4, 2, [])])
    ab_analysis(_settings(lake_home, experiment="other"), D2)
    record = read_verdict(_settings(lake_home), D2)
    assert record["looks"] == 1 and record["ctr"][CTL]["impressions"] == 4


def test_night_without_feedback_keeps_running(lake_home: Path) -> None:
    out = ab_analysis(_settings(lake_home), D1)
    assert out["verdict"] == Verdict.KEEP_RUNNING.value
    assert out["night_events"] == 0 and out["lift"] is None


def test_list_metrics_hand_computed() -> None:
    items = pd.DataFrame(
        {C.ITEM_ID: [1, 2, 3, 4], C.GENRES: [["Anime", "Drama"], ["Drama"], ["Western"], []]}
    )
    lists = pd.DataFrame(
        {
            C.USER_ID: [1, 1, 2, 2, 3, 3],
            C.DAYPART: ["evening"] * 6,
            C.ITEM_ID: [1, 2, 1, 3, 2, 4],
            C.VARIANT: [CTL, CTL, TRT, TRT, TRT, TRT],
            C.IS_LONG_TAIL: [False, False, True, True, False, True],
        }
    )
    out = list_metrics(lists, items)
    assert out[CTL]["genres_per_list"] == 2.0  # Anime, Drama
    assert out[CTL]["long_tail_share"] == 0.0
    assert out[CTL]["coverage"] == 0.5
    # treatment lists: {Anime, Drama, Western} = 3 and {Drama} = 1 -> 2.0
    assert out[TRT]["genres_per_list"] == 2.0
    assert out[TRT]["long_tail_share"] == pytest.approx(0.75)
    assert out[TRT]["coverage"] == 1.0


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 6),
            st.sampled_from([CTL, TRT]),
            st.integers(0, 4),
            st.integers(0, 2),
            st.lists(st.sampled_from([1.0, 3.0, 5.0]), max_size=2),
        ),
        max_size=12,
        unique_by=lambda r: r[0],
    ),
    cut=st.integers(0, 12),
)
def test_running_totals_do_not_depend_on_how_nights_are_split(rows: list, cut: int) -> None:
    """Adding night by night gives the same per-user totals as one look at all events."""
    first, second = rows[:cut], rows[cut:]
    nightly = combine_totals(user_totals(_events(D1, first)).totals, user_totals(_events(D2, second)).totals)
    at_once = user_totals(pd.concat([_events(D1, first), _events(D2, second)], ignore_index=True)).totals
    pd.testing.assert_frame_equal(nightly.reset_index(drop=True), at_once.reset_index(drop=True))
    assert int(nightly[C.IMPRESSIONS].sum()) == sum(r[2] for r in rows)


# ----------------------------------------------------------------------------- niche discovery + scoreboard
def _catalog() -> pd.DataFrame:
    # niche genres below are ("Western",) + Anime (always niche): items 1 and 2; Documentary (5) is not
    return pd.DataFrame(
        {
            C.ITEM_ID: [1, 2, 3, 4, 5],
            C.TITLE: ["a", "b", "c", "d", "e"],
            C.GENRES: [["Anime"], ["western", "Drama"], ["Drama"], ["Comedy"], ["Documentary"]],
            C.YEAR: [2000] * 5,
        }
    )


def _typed_events(day: date, rows: list[tuple[int, str, str, int, float | None]]) -> pd.DataFrame:
    """Feedback rows from (user, variant, event type, item, rating)."""
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    frame = _events(day, [(uid, variant, 1, 0, []) for uid, variant, *_ in rows])
    frame[C.EVENT_ID] = [f"{day}-{k}" for k in range(len(rows))]
    frame[C.EVENT_TS] = [ts + timedelta(seconds=k) for k in range(len(rows))]
    frame[C.EVENT_TYPE] = [r[2] for r in rows]
    frame[C.ITEM_ID] = [r[3] for r in rows]
    frame[C.RATING] = [r[4] for r in rows]
    return frame


def _served_for(day: date) -> pd.DataFrame:
    # one list each: control user 1 has no long-tail item; treatment user 10 has 2 of 5 (0.40)
    return pd.DataFrame(
        {
            C.USER_ID: [1] * 5 + [10] * 5,
            C.DAYPART: ["evening"] * 10,
            C.RANK: list(range(1, 6)) * 2,
            C.ITEM_ID: [3, 4, 5, 1, 2, 1, 2, 3, 4, 5],
            C.ARM: ["svd"] * 5 + ["graph"] * 5,
            C.VARIANT: [CTL] * 5 + [TRT] * 5,
            C.SCORE: [1.0] * 10,
            C.NOVELTY: [1.0] * 10,
            C.IS_LONG_TAIL: [False] * 5 + [True, True, False, False, False],
            C.REASON: ["baseline"] * 10,
            C.RUN_DATE: [day] * 10,
        }
    )


IMP, CLK, RAT = EventType.IMPRESSION.value, EventType.CLICK.value, EventType.RATING.value
NICHE_NIGHT = [
    # control: user 1 sees 1 (niche), 3, 5 and clicks 3; user 2 sees 3, 4, clicks 4 and rates it 3;
    # user 3 sees 1 (niche) and clicks it -> niche impressions 2, niche clicks 1, per exposed user 1/3
    (1, CTL, IMP, 1, None),
    (1, CTL, IMP, 3, None),
    (1, CTL, IMP, 5, None),
    (1, CTL, CLK, 3, None),
    (2, CTL, IMP, 3, None),
    (2, CTL, IMP, 4, None),
    (2, CTL, CLK, 4, None),
    (2, CTL, RAT, 4, 3.0),
    (3, CTL, IMP, 1, None),
    (3, CTL, CLK, 1, None),
    # treatment: user 10 sees 1, 2, 3 and clicks 1, 2 (rates 2 with 5); user 11 sees 2, 4, clicks 2 and
    # rates it 4; user 12 sees 5 only -> niche impressions 3, niche clicks 3, per exposed user 1
    (10, TRT, IMP, 1, None),
    (10, TRT, IMP, 2, None),
    (10, TRT, IMP, 3, None),
    (10, TRT, CLK, 1, None),
    (10, TRT, CLK, 2, None),
    (10, TRT, RAT, 2, 5.0),
    (11, TRT, IMP, 2, None),
    (11, TRT, IMP, 4, None),
    (11, TRT, CLK, 2, None),
    (11, TRT, RAT, 2, 4.0),
    (12, TRT, IMP, 5, None),
]


def test_niche_item_ids_use_the_settings_genres() -> None:
    from deepcuts.pipelines.ab_analysis import niche_item_ids

    assert niche_item_ids(_catalog(), ("Anime", "Western")).tolist() == [1, 2]
    assert niche_item_ids(_catalog(), ("Anime", "Western", "Documentary")).tolist() == [1, 2, 5]
    assert niche_item_ids(_catalog().iloc[:0], ("Anime",)).tolist() == []


def test_niche_metrics_and_scoreboard_hand_computed(lake_home: Path) -> None:
    s = load_settings(
        home=str(lake_home), ab={"min_users_per_variant": 2}, rerank={"niche_genres": ["Western"]}
    )
    lake = Lake(lake_home)
    lake.write_table(Dataset.ITEMS, D1, _catalog())
    lake.write_table(Dataset.SERVED_LISTS, D1, _served_for(D1))
    lake.write_table(Dataset.FEEDBACK_EVENTS, D1, _typed_events(D1, NICHE_NIGHT))
    lake.mark_all_complete()
    out = ab_analysis(s, D1)
    record = read_verdict(s, D1)

    niche = record["niche"]
    assert niche["niche_impressions"] == {CTL: 2, TRT: 3}
    assert niche["niche_clicks"] == {CTL: 1, TRT: 3}
    assert niche["exposed_users"] == {CTL: 3, TRT: 3}
    assert niche["niche_clicks_per_user"][CTL] == pytest.approx(1 / 3)
    assert niche["niche_clicks_per_user"][TRT] == pytest.approx(1.0)
    # ratio 1 / (1/3) = 3. Per-user means: control (0, 0, 1) -> var s^2/N = (1/3)/3 = 1/9; treatment
    # (2, 1, 0) -> 1/3. Delta: Var = Vt / mc^2 + mt^2 Vc / mc^4 = 3 + 9 = 12
    half = 1.959963984540054 * math.sqrt(12.0)
    assert niche["ratio"] == pytest.approx(3.0)
    assert niche["ci_low"] == pytest.approx(3.0 - half) and niche["ci_high"] == pytest.approx(3.0 + half)

    board = record["scoreboard"]
    assert set(board) == set(SCOREBOARD_METRICS)
    # CTR 3 clicks / 6 impressions on both sides: lift 0, below +15%
    assert board["ctr_lift"]["control"] == pytest.approx(0.5) and board["ctr_lift"]["treatment"] == 0.5
    assert board["ctr_lift"]["value"] == pytest.approx(0.0) and board["ctr_lift"]["met"] is False
    assert {"ci_low", "ci_high", "target"} <= set(board["ctr_lift"])
    # the lists users saw: treatment 2 of 5 long-tail = 0.40 (inside [0.35, 0.40]); control 0
    assert board["long_tail_share"]["treatment"] == pytest.approx(0.4)
    assert board["long_tail_share"]["control"] == 0.0
    assert board["long_tail_share"]["met"] is True and board["long_tail_share"]["target"] == "[0.35, 0.40]"
    # treatment list: Anime, western, Drama, Comedy, Documentary = 5 genres < 6
    assert board["genres_per_list"]["treatment"] == 5.0 and board["genres_per_list"]["met"] is False
    assert board["mean_rating"] == {"control": 3.0, "treatment": 4.5, "target": ">= 4", "met": True}
    assert board["niche_click_ratio"]["value"] == pytest.approx(3.0)
    assert board["niche_click_ratio"]["met"] is True  # exactly at 3x counts as met
    assert board["niche_click_ratio"]["ci_high"] == pytest.approx(3.0 + half)
    assert out["scoreboard_met"] == {
        "ctr_lift": False,
        "long_tail_share": True,
        "genres_per_list": False,
        "mean_rating": True,
        "niche_click_ratio": True,
    }

    summary = lake.read_df(Dataset.AB_RESULTS, D1, parts=[SUMMARY_PART])
    night = summary[summary[C.SCOPE] == "night"].set_index([C.VARIANT, C.METRIC])[C.VALUE]
    assert night[(TRT, "niche_clicks")] == 3 and night[(CTL, "niche_impressions")] == 2
    assert night[(CTL, "niche_clicks_per_user")] == pytest.approx(1 / 3)

    # the niche counts run on: the same night's events again on D2 double every count, not the ratio
    lake.write_table(Dataset.FEEDBACK_EVENTS, D2, _typed_events(D2, NICHE_NIGHT))
    lake.mark_all_complete()
    ab_analysis(s, D2)
    again = read_verdict(s, D2)["niche"]
    assert again["niche_clicks"] == {CTL: 2, TRT: 6} and again["exposed_users"] == {CTL: 3, TRT: 3}
    assert again["ratio"] == pytest.approx(3.0)


def test_scoreboard_targets_come_from_settings(lake_home: Path) -> None:
    s = load_settings(
        home=str(lake_home),
        ab={"min_users_per_variant": 2},
        rerank={"niche_genres": ["Western"], "min_genres": 5, "long_tail_min": 0.1, "long_tail_max": 0.3},
        targets={"niche_click_ratio_min": 3.5},
    )
    lake = Lake(lake_home)
    lake.write_table(Dataset.ITEMS, D1, _catalog())
    lake.write_table(Dataset.SERVED_LISTS, D1, _served_for(D1))
    lake.write_table(Dataset.FEEDBACK_EVENTS, D1, _typed_events(D1, NICHE_NIGHT))
    lake.mark_all_complete()
    assert ab_analysis(s, D1)["scoreboard_met"] == {
        "ctr_lift": False,
        "long_tail_share": False,  # 0.40 above the band's 0.30
        "genres_per_list": True,  # 5 >= 5
        "mean_rating": True,
        "niche_click_ratio": False,  # 3 < 3.5
    }


def test_scoreboard_is_not_met_before_anything_is_measurable(lake_home: Path) -> None:
    out = ab_analysis(_settings(lake_home), D1)
    record = read_verdict(_settings(lake_home), D1)
    assert not any(out["scoreboard_met"].values())
    assert record["scoreboard"]["niche_click_ratio"]["value"] is None
    assert record["scoreboard"]["long_tail_share"]["treatment"] is None
