"""The weekly review: trends, genre discovery, arm shares and the page, on hand-made nights."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines.storage import Lake
from deepcuts.pipelines.weekly_review import (
    arm_shares,
    experiments_of_week,
    genre_discovery,
    scoreboard_trends,
    weekly_review,
)
from deepcuts.settings import Settings

END = date(2026, 1, 28)


def _checks(night: date, long_tail: float | None, status: str = "ok") -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.CHECK_NAME: ["long_tail_share", "served_lists_present"],
            C.CATEGORY: ["diversity", "inputs"],
            C.STATUS: [status, "ok"],
            C.VALUE: [long_tail, 1.0],
            C.THRESHOLD: ["[0.2, 0.6]", "present"],
            C.MESSAGE: ["m", "m"],
            C.RUN_DATE: [night, night],
        }
    )


def test_trends_compare_the_week_with_the_28_nights() -> None:
    # 28 nights: 21 at 0.2, then the week at 0.4 (one skipped check without a value).
    nights = [END - timedelta(days=i) for i in range(27, -1, -1)]
    frames = [_checks(n, 0.2 if n < END - timedelta(days=6) else 0.4) for n in nights]
    frames[-1] = _checks(END, None, status="skipped")
    verdicts = {END: {"ctr": {"control": {"ctr": 0.05}, "treatment": {"ctr": 0.06}}, "scoreboard": {"x": 2}}}
    trends = scoreboard_trends(pd.concat(frames), verdicts, END, 7, 28).set_index("metric")
    row = trends.loc["long_tail_share"]
    assert row["nights"] == 27 and row["latest"] == pytest.approx(0.4)
    assert row["mean 7d"] == pytest.approx(0.4)  # six valued nights of the week, all 0.4
    assert row["mean 28d"] == pytest.approx((21 * 0.2 + 6 * 0.4) / 27)
    assert row["7d vs 28d"] == pytest.approx(0.4 / ((21 * 0.2 + 6 * 0.4) / 27) - 1)
    assert "served_lists_present" not in trends.index  # input checks are not metrics
    assert trends.loc["CTR, treatment", "latest"] == pytest.approx(0.06)
    assert trends.loc["x", "mean 7d"] == pytest.approx(2.0)
    assert trends.loc["x", "source"] == "A/B verdict" and row["source"] == "monitor"
    assert scoreboard_trends(pd.DataFrame(), {}, END, 7, 28).empty


def test_a_young_lake_has_no_change_to_show() -> None:
    # Three nights, all inside the week: the 7- and 28-night means are the same nights.
    frames = [_checks(END - timedelta(days=i), 0.3 + i / 10) for i in range(3)]
    row = scoreboard_trends(pd.concat(frames), {}, END, 7, 28).set_index("metric").loc["long_tail_share"]
    assert row["mean 7d"] == pytest.approx(0.4) == row["mean 28d"]
    assert pd.isna(row["7d vs 28d"])  # not +0.0%: nothing to compare with yet


def test_the_scoreboard_trends_name_what_each_number_measures() -> None:
    board = {
        "ctr_lift": {"value": 0.47, "control": 0.08, "treatment": 0.12},
        "long_tail_share": {"control": 0.0, "treatment": 0.4},
    }
    ctr = {"control": {"ctr": 0.08}, "treatment": {"ctr": 0.12}}
    trends = scoreboard_trends(pd.DataFrame(), {END: {"scoreboard": board, "ctr": ctr}}, END, 7, 28)
    # the lift's per-variant numbers are the CTRs, listed once (not again from the verdict's "ctr")
    assert list(trends["metric"]) == [
        "CTR lift",
        "CTR, control",
        "CTR, treatment",
        "long-tail share, control",
        "long-tail share, treatment",
    ]
    assert list(trends["nights"]) == [1] * 5


def test_trends_read_verdicts_tolerantly() -> None:
    board = {
        "a": {"value": 0.5, "target": ">= 0.4", "met": True},
        "long_tail_share": {"control": 0.1, "treatment": None, "target": "[0.35, 0.40]"},
        "b": "text",
        "c": float("nan"),
        "d": True,
        "e": 3,
    }
    odd = {END: {"ctr": "n/a", "scoreboard": board}}
    trends = scoreboard_trends(pd.DataFrame(), odd, END, 7, 28)
    assert list(trends["metric"]) == ["a", "e", "long-tail share, control"]


def test_genre_discovery_counts_slots_per_genre_and_their_long_tail_share() -> None:
    served = pd.DataFrame(
        {
            C.ITEM_ID: [1, 2, 2, 3],
            C.VARIANT: ["treatment", "treatment", "control", "control"],
            C.IS_LONG_TAIL: [True, False, False, True],
        }
    )
    items = pd.DataFrame({C.ITEM_ID: [1, 2, 3], C.GENRES: [["Anime", "Drama"], ["Drama"], []]})
    table = genre_discovery(served, items).set_index("genre")
    assert list(table.index) == ["Drama", "Anime"]  # by treatment slots
    assert table.loc["Drama", "slots treatment"] == 2 and table.loc["Drama", "slots control"] == 1
    assert table.loc["Drama", "long-tail share treatment"] == pytest.approx(0.5)
    assert table.loc["Anime", "slots control"] == 0  # item 3 has no genre: counted nowhere
    assert pd.isna(table.loc["Anime", "long-tail share control"])


def test_arm_shares_average_the_selection_probability_per_context() -> None:
    policy = pd.DataFrame(
        {
            C.SEGMENT: ["new", "new", "new", "new"],
            C.DAYPART: ["morning"] * 4,
            C.ARM: ["svd", "graph", "svd", "graph"],
            C.SELECTION_PROBABILITY: [0.6, 0.4, 0.2, 0.8],
        }
    )
    row = arm_shares(policy).iloc[0]
    assert row["svd"] == pytest.approx(0.4) and row["graph"] == pytest.approx(0.6)


def _experiment(name: str, start: str | None, until: str | None) -> dict[str, object]:
    return {"experiment": name, "from": start, "until": until, "decision": "running"}


def test_experiments_of_the_week_are_those_in_force_on_one_of_its_nights() -> None:
    first = END - timedelta(days=6)  # 2026-01-22
    rows = [
        _experiment("ended-before", "2026-01-01", "2026-01-21"),  # stopped from the night before
        _experiment("ended-on-first-night", "2026-01-10", "2026-01-22"),
        _experiment("spans-the-week", "2026-01-01", None),
        _experiment("starts-last-night", "2026-01-28", None),
        _experiment("starts-after", "2026-01-29", None),
        _experiment("not-analysed-yet", None, None),  # the settings' experiment before its first verdict
    ]
    names = [r["experiment"] for r in experiments_of_week(rows, first, END)]
    assert names == ["ended-on-first-night", "spans-the-week", "starts-last-night", "not-analysed-yet"]


def test_the_review_page_is_written_escaped_and_listed(settings: Settings) -> None:
    lake = Lake(settings.home)
    night = END - timedelta(days=1)
    lake.write_table(Dataset.MONITOR_CHECKS, night, _checks(night, 0.3))
    verdict = {
        "decision": "<b>ship</b>",
        "lift": 0.1,
        "experiment": settings.ab.experiment,
        "run_date": str(night),
        "enough_users": False,
        "p_value": 0.00001234,
    }
    lake.write_json(Dataset.AB_RESULTS, night, "verdict.json", {**verdict, "verdict": "keep running"})
    served = pd.DataFrame(
        {
            C.USER_ID: [1, 1],
            C.DAYPART: ["morning"] * 2,
            C.RANK: [1, 2],
            C.ITEM_ID: [1, 2],
            C.ARM: ["svd", "svd"],
            C.VARIANT: ["treatment", "control"],
            C.SCORE: [1.0, 0.5],
            C.NOVELTY: [1.0, 1.0],
            C.IS_LONG_TAIL: [True, False],
            C.REASON: ["r", "r"],
            C.RUN_DATE: [night, night],
        }
    )
    lake.write_table(Dataset.SERVED_LISTS, night, served)
    genres = [["<script>x</script>"], ["Drama"]]
    items = pd.DataFrame({C.ITEM_ID: [1, 2], C.TITLE: ["a", "b"], C.GENRES: genres, C.YEAR: [1, 2]})
    lake.write_table(Dataset.ITEMS, night, items)

    summary = weekly_review(settings, END)
    assert summary["nights"] == [night.isoformat()] and summary["alerts"] == 0
    page = Path(summary["report"]).read_text()
    assert "week ending 2026-01-28" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # data never reaches HTML unescaped
    assert "&lt;b&gt;ship&lt;/b&gt;" in page
    assert "<th>enough users</th><td>no</td>" in page  # not Python's False
    assert "<th>p value</th><td>&lt;0.001</td>" in page  # 1.23e-05: neither 0.000 nor a lone e-notation
    assert "No alerts this week." in page
    # the experiments of the week: the nightly report's table (the settings' experiment, from its verdict)
    assert summary["experiments"] == [settings.ab.experiment]
    experiments = page[page.index("Experiments of the week") :]
    assert f"<td>{settings.ab.experiment}</td><td>{night.isoformat()}</td>" in experiments
    assert f"keep running ({night.isoformat()})" in experiments
    # links between the pages, relative and naming index.html (they are opened from disk too)
    assert 'href="../../index.html">all nights' in page and 'href="../index.html">all weekly' in page
    reports = Path(settings.home) / "reports"
    index = (reports / "weekly" / "index.html").read_text()
    assert 'href="week_ending=2026-01-28/index.html"' in index and 'href="../index.html"' in index
    assert 'href="weekly/index.html">Weekly reviews' in (reports / "index.html").read_text()
    assert json.loads((Path(summary["report"]).parent / "summary.json").read_text())["genres"] == 2
    # Idempotent for its week: a rerun writes the same page.
    assert weekly_review(settings, END) == summary
    assert Path(summary["report"]).read_text() == page
