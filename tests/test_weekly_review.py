"""The weekly review: trends, genre discovery, arm shares and the page, on hand-made nights."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from deepcuts.contracts import C, Dataset
from deepcuts.settings import Settings
from pipelines.storage import Lake
from pipelines.weekly_review import arm_shares, genre_discovery, scoreboard_trends, weekly_review

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
    assert trends.loc["ab ctr (treatment)", "latest"] == pytest.approx(0.06)
    assert trends.loc["scoreboard x", "mean 7d"] == pytest.approx(2.0)
    assert scoreboard_trends(pd.DataFrame(), {}, END, 7, 28).empty


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
    assert list(trends["metric"]) == ["scoreboard a", "scoreboard e", "scoreboard long_tail_share (control)"]


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


def test_the_review_page_is_written_escaped_and_listed(settings: Settings) -> None:
    lake = Lake(settings.home)
    night = END - timedelta(days=1)
    lake.write_table(Dataset.MONITOR_CHECKS, night, _checks(night, 0.3))
    lake.write_json(Dataset.AB_RESULTS, night, "verdict.json", {"decision": "<b>ship</b>", "lift": 0.1})
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
    index = (Path(settings.home) / "reports" / "weekly" / "index.html").read_text()
    assert 'href="week_ending=2026-01-28/"' in index
    assert json.loads((Path(summary["report"]).parent / "summary.json").read_text())["genres"] == 2
    # Idempotent for its week: a rerun writes the same page.
    assert weekly_review(settings, END) == summary
    assert Path(summary["report"]).read_text() == page
