from __future__ import annotations

import html
import re
from datetime import date, timedelta

import pandas as pd

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines.report import build_index, report
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings

D1 = date(2026, 3, 1)
D2 = D1 + timedelta(days=1)


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.ITEM_ID: [1, 2, 3, 4],
            C.TITLE: ["a", "b", "c", "d"],
            C.GENRES: [["Anime"], ["Drama", "Anime"], ["Comedy"], ["Western"]],
            C.YEAR: [2000, 2001, 2002, 2003],
        }
    )


def _served(run_date: date) -> pd.DataFrame:
    # user 1 treatment: items 1,2 (one long tail); user 2 control: items 3,4 (none long tail)
    return pd.DataFrame(
        {
            C.USER_ID: [1, 1, 2, 2],
            C.DAYPART: ["evening"] * 4,
            C.RANK: [1, 2, 1, 2],
            C.ITEM_ID: [1, 2, 3, 4],
            C.ARM: ["graph", "graph", "svd", "svd"],
            C.VARIANT: ["treatment", "treatment", "control", "control"],
            C.SCORE: [0.9, 0.8, 0.7, 0.6],
            C.NOVELTY: [5.0, 3.0, 1.0, 1.0],
            C.IS_LONG_TAIL: [True, False, False, False],
            C.REASON: ["hidden_gem", "x", "baseline", "baseline"],
            C.RUN_DATE: [run_date] * 4,
        }
    )


def _scoreboard(lift: float) -> dict[str, dict[str, object]]:
    """A scoreboard as ab_analysis writes it: long-tail share off target, the rest met."""
    return {
        "ctr_lift": {
            "control": 0.05,
            "treatment": 0.05 * (1 + lift),
            "value": lift,
            "ci_low": lift - 0.1,
            "ci_high": lift + 0.1,
            "target": ">= +15%",
            "met": lift >= 0.15,
        },
        "long_tail_share": {"control": 0.0, "treatment": 0.5, "target": "[0.35, 0.40]", "met": False},
        "genres_per_list": {"control": 2.0, "treatment": 7.0, "target": ">= 6", "met": True},
        "mean_rating": {"control": 4.1, "treatment": 4.2, "target": ">= 4", "met": True},
        "niche_click_ratio": {
            "control": 0.1,
            "treatment": 0.4,
            "value": 4.0,
            "ci_low": 2.5,
            "ci_high": 5.5,
            "target": ">= 3x control",
            "met": True,
        },
    }


def _write_night(lake: Lake, run_date: date, lift: float, **verdict: object) -> None:
    lake.write_table(Dataset.ITEMS, run_date, _items())
    lake.write_table(Dataset.SERVED_LISTS, run_date, _served(run_date))
    lake.write_json(
        Dataset.AB_RESULTS,
        run_date,
        "verdict.json",
        {
            "verdict": "keep_running",
            "message": "not enough evidence yet",
            "lift": lift,
            "ci_low": lift - 0.1,
            "ci_high": lift + 0.1,
            "p_value": 0.4,
            "srm_p_value": 0.9,
            "looks": 1,
            "enough_users": True,
            "ctr": {
                "control": {"n_users": 2313.0, "impressions": 23130.0, "clicks": 1157.0, "ctr": 0.05},
                "treatment": {"n_users": 2287.0, "impressions": 22870.0, "clicks": 1372.0, "ctr": 0.06},
            },
            "scoreboard": _scoreboard(lift),
            **verdict,
        },
    )
    lake.mark_all_complete()  # as the steps that write them do when they finish


def test_report_renders_sections_and_says_what_is_missing(settings: Settings) -> None:
    lake = Lake(settings.home)
    _write_night(lake, D1, 0.02)
    _write_night(lake, D2, 0.05)
    report(settings, D1)
    out = report(settings, D2.isoformat())
    assert out["nights"] == 2
    page = lake.read_bytes(Dataset.REPORTS, D2, "index.html").decode()
    assert "deepcuts night 2026-03-02" in page
    assert "keep_running" in page and "not enough evidence yet" in page
    assert "<th>p value (always valid)</th>" in page and "<th>p_value</th>" not in page  # named for readers
    assert page.count("data:image/png;base64,") >= 2  # scoreboard trends and diversity plots
    # the scoreboard comes first and flags what is off target
    assert page.index("Scoreboard") < page.index("A/B test") < page.index("Served list diversity")
    # lift 0.05 < +15% and long-tail share 0.5 outside [0.35, 0.40]
    assert "2 OFF TARGET: CTR lift, long-tail share" in page and page.count("OFF TARGET") == 3
    assert page.count("<figcaption>") == page.count(
        "data:image/png;base64,"
    )  # every chart says what it shows
    # counts print as integers, not 2313.0000
    assert "2,313" in page and "2313.0" not in page
    # sections whose upstream data is absent say so instead of failing the night
    assert "OPE estimates not available" in page
    assert "monitoring alerts not available" in page
    stats = lake.read_json(Dataset.REPORTS, D2, "stats.json")
    assert stats["served"]["treatment"]["long_tail_share"] == 0.5
    assert stats["served"]["control"]["long_tail_share"] == 0.0
    # treatment list of user 1 covers Anime + Drama = 2 genres; coverage 2 of 4 items
    assert stats["served"]["treatment"]["genres_per_list"] == 2.0
    assert stats["served"]["treatment"]["coverage"] == 0.5


def test_index_lists_nights_newest_first_and_links_relatively(settings: Settings) -> None:
    lake = Lake(settings.home)
    _write_night(lake, D1, 0.02)
    _write_night(lake, D2, 0.05)
    report(settings, D1)
    report(settings, D2)
    index = lake.read_bytes(Dataset.REPORTS, None, "index.html").decode()
    assert index.index('href="run_date=2026-03-02/index.html"') < index.index("run_date=2026-03-01/")
    assert 'href="/' not in index
    assert "Weekly reviews" not in index  # linked once deepcuts.pipelines.weekly_review wrote its list
    assert build_index(settings)["nights"] == 2


def test_report_is_idempotent(settings: Settings) -> None:
    lake = Lake(settings.home)
    _write_night(lake, D1, 0.02)
    report(settings, D1)
    first = lake.read_bytes(Dataset.REPORTS, D1, "stats.json")
    report(settings, D1)
    assert lake.read_bytes(Dataset.REPORTS, D1, "stats.json") == first


def test_trend_axes_label_at_most_date_labels_nights() -> None:
    # one point per night at x = 0..n-1; a label per night is unreadable after a few weeks (and its
    # text layout was most of the report's rendering time), so only report.date_labels are written
    import matplotlib.pyplot as plt

    from deepcuts.pipelines.report import _night_axis

    nights = [(D1 + timedelta(days=i)).isoformat() for i in range(30)]
    fig, ax = plt.subplots()
    _night_axis(ax, nights, 8)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == nights[0] and 1 < len(labels) <= 8
    assert list(ax.get_xticks()) == [nights.index(label) for label in labels]
    _night_axis(ax, nights[:3], 8)  # few nights: every one labelled
    assert [t.get_text() for t in ax.get_xticklabels()] == nights[:3]
    plt.close(fig)


PAYLOAD = "<img src=x onerror=alert(1)>"


def test_every_value_from_data_is_escaped(settings: Settings) -> None:
    lake = Lake(settings.home)
    items = _items()
    items.loc[0, C.GENRES] = [PAYLOAD]
    served = _served(D1)
    served[C.ARM] = PAYLOAD
    _write_night(lake, D1, 0.2, verdict=PAYLOAD, message=f"message {PAYLOAD}")
    lake.write_table(Dataset.ITEMS, D1, items)
    lake.write_table(Dataset.SERVED_LISTS, D1, served)
    offline = pd.DataFrame(
        {
            C.LIST_SOURCE: ["candidates", "previous_candidates"],
            C.ARM: [PAYLOAD, PAYLOAD],
            C.METRIC: ["novelty", PAYLOAD],
            C.VALUE: [7.5, 0.4],
            C.N_USERS: [10, 10],
            C.RUN_DATE: [D1, D1],
        }
    )
    lake.write_table(Dataset.EVAL_OFFLINE, D1, offline)
    lake.write_json(
        Dataset.VALIDATION,
        D1,
        "summary.json",
        {"status": PAYLOAD, "feedback": {"rows_in": 3, "quarantined": 1, "reasons": {PAYLOAD: 1}}},
    )
    lake.write_table(
        Dataset.ALERTS,
        D1,
        pd.DataFrame(
            {
                C.CHECK_NAME: ["long_tail_share"],
                C.CATEGORY: ["diversity"],
                C.SEVERITY: ["warning"],
                C.VALUE: [0.5],
                C.THRESHOLD: ["[0.35, 0.4]"],
                C.MESSAGE: [f"event {PAYLOAD}"],
                C.RUN_DATE: [D1],
            }
        ),
    )
    lake.mark_all_complete()
    report(settings, D1)
    escaped = html.escape(PAYLOAD)
    for page in (
        lake.read_bytes(Dataset.REPORTS, D1, "index.html").decode(),
        lake.read_bytes(Dataset.REPORTS, None, "index.html").decode(),
    ):
        assert PAYLOAD not in page and "<img src=x" not in page
        assert escaped in page  # shown, as text
    night = lake.read_bytes(Dataset.REPORTS, D1, "index.html").decode()
    assert night.count(escaped) >= 5  # verdict, message, offline arm + metric, validation, alert
    # an offline table is headed by what it holds, then its list_source value
    assert "<h3>Today&#x27;s candidates (beyond accuracy) <span class=muted>(candidates)</span></h3>" in night


def test_tables_print_counts_as_integers_and_escape_cells() -> None:
    from deepcuts.pipelines.report import _table

    frame = pd.DataFrame({"users": [2313.0, 12.0], "ctr": [0.05, float("nan")], "arm": ["a&b", "<b>"]})
    out = _table(frame)
    assert "2,313" in out and ">12<" in out and "2313.0" not in out
    assert "0.0500" in out and "–" in out
    assert "a&amp;b" in out and "&lt;b&gt;" in out and "<b>" not in out


def test_ab_tables_have_readable_headers_and_uniform_p_values(settings: Settings) -> None:
    lake = Lake(settings.home)
    ctr = {
        v: {
            "n_users": 2313.0,
            "impressions": 23130.0,
            "clicks": 1157.0,
            "ctr": 0.05,
            "se": 0.002,
            "variance": 4e-06,
        }
        for v in ("control", "treatment")
    }
    niche = {
        "exposed_users": {"control": 2313, "treatment": 2287},
        "niche_impressions": {"control": 900, "treatment": 1800},
        "niche_clicks": {"control": 45, "treatment": 120},
        "niche_clicks_per_user": {"control": 0.0195, "treatment": 0.0525},
        "niche_clicks_per_user_se": {"control": 0.003, "treatment": 0.005},
        "ratio": 2.7,
        "ci_low": 2.0,
        "ci_high": 3.4,
    }
    _write_night(lake, D1, 0.2, p_value=9.58e-05, srm_p_value=0.5, ctr=ctr, niche=niche)
    report(settings, D1)
    page = lake.read_bytes(Dataset.REPORTS, D1, "index.html").decode()
    ab = page[page.index("A/B test") : page.index("<h2>Experiments")]
    for raw in ("n_users", "se", "variance", "niche_clicks_per_user", "exposed_users"):
        assert f"<th>{raw}</th>" not in ab
    for header in (
        "users",
        "std. error",
        "variance (of the CTR)",
        "niche clicks per exposed user",
        "exposed users",
    ):
        assert f"<th>{header}</th>" in ab
    # p values: three decimals, "<0.001" below that; never 9.58e-05 beside 0.5000
    assert "<td>&lt;0.001</td>" in ab and "<td>0.500</td>" in ab and "9.58e-05" not in ab
    assert "<td class=num>4e-06</td>" in ab  # a small variance keeps its significant digits
    # the index: short verdicts never wrap
    index = lake.read_bytes(Dataset.REPORTS, None, "index.html").decode()
    assert "<td class=nowrap>keep_running</td>" in index


def test_ope_table_clips_displayed_rate_intervals_and_prints_ess_as_count(settings: Settings) -> None:
    lake = Lake(settings.home)
    _write_night(lake, D1, 0.2)
    ope = pd.DataFrame(
        {
            C.POLICY: ["posterior", "posterior"],
            C.ESTIMATOR: ["ips", "snips"],
            C.ESTIMATE: [0.8222, 0.7469],
            C.CI_LOW: [-0.0125, 0.6010],
            C.CI_HIGH: [1.3542, 0.9],
            C.N_TRIALS: [52, 52],
            C.ESS: [446.0, 39.4857],
            C.THIN_SUPPORT: [False, True],
            C.RUN_DATE: [D1, D1],
        }
    )
    lake.write_table(Dataset.OPE, D1, ope)
    lake.mark_all_complete()
    report(settings, D1)
    page = lake.read_bytes(Dataset.REPORTS, D1, "index.html").decode()
    table = page[page.index("<th>effective sample size</th>") :]
    table = table[: table.index("</table>")]
    assert "<td class=num>446</td>" in table and "446.0000" not in table
    assert "<td class=num>39</td>" in table  # rounded, not truncated decimals
    # the IPS interval -0.0125 .. 1.3542 shows as 0 .. 1, and the caption says so
    assert "<td class=num>0.0000</td>" in table and "<td class=num>1.0000</td>" in table
    assert "1.3542" not in table and "-0.0125" not in table
    assert "Intervals are shown clipped to [0, 1]" in page
    stored = lake.read_df(Dataset.OPE, D1)  # the stored numbers are untouched
    assert stored[C.CI_HIGH].tolist() == [1.3542, 0.9] and stored[C.ESS].tolist() == [446.0, 39.4857]


def test_long_text_wraps_in_a_bounded_box_escaped_and_small_shares_floor() -> None:
    from deepcuts.pipelines.report import LONG_TEXT, _table

    reason = "<b>bad</b> " + "user_id not in users; " * 10
    frame = pd.DataFrame({"field": ["reasons", "status"], "feedback": [reason, "ok"]})
    out = _table(frame)
    assert f"<td><div class=long>{html.escape(reason)}</div></td>" in out  # full text, escaped
    assert "<td>ok</td>" in out and len(reason) > LONG_TEXT
    shares = _table(pd.DataFrame({"share": [9.58e-05, 0.25, 0.0]}), digits=3, floor=True)
    assert "<td class=num>&lt;0.001</td>" in shares and "9.58e-05" not in shares
    assert "<td class=num>0.250</td>" in shares and "<td class=num>0.000</td>" in shares


def _policy(run_date: date, probability: dict[tuple[str, str, str], float]) -> pd.DataFrame:
    keys = list(probability)
    return pd.DataFrame(
        {
            C.SEGMENT: [k[0] for k in keys],
            C.DAYPART: [k[1] for k in keys],
            C.ARM: [k[2] for k in keys],
            C.ALPHA: [1.0] * len(keys),
            C.BETA: [1.0] * len(keys),
            C.MEAN: [0.5] * len(keys),
            C.THOMPSON_PROBABILITY: list(probability.values()),
            C.SELECTION_PROBABILITY: list(probability.values()),
            C.RUN_DATE: [run_date] * len(keys),
        }
    )


def test_intraday_section_shows_each_contexts_trajectory_escaped_and_validated(settings: Settings) -> None:
    """The night's policy of D1 (serving D2), then two refreshes of D2: power/evening moves to
    long_tail (0.3 -> 0.55 -> 0.8); a tampered summary's values are dropped, its text escaped."""
    from deepcuts.pipelines.intraday import slot_part
    from deepcuts.pipelines.report import _intraday_section

    lake = Lake(settings.home)
    night = {("power", "evening", "svd"): 0.7, ("power", "evening", "long_tail"): 0.3}
    lake.write_table(Dataset.BANDIT_POLICY, D1, _policy(D1, night))

    def refresh(slot: int, long_tail: object, extra: dict[str, object]) -> None:
        ingest = {
            "slot_end": f"{D2.isoformat()}T{slot + 1:02d}:00:00+00:00",
            "events": 10 * slot,
            "new_events": 10,
        }
        assign = {
            "status": "assigned",
            "selection_probability": {"power/evening": {"svd": 0.2, "long_tail": long_tail}, **extra},
        }
        for step, doc in (("ingest", ingest), ("assign", assign), ("publish", {"status": "published"})):
            lake.write_json(Dataset.INTRADAY_SUMMARY, D2, f"{slot_part(slot)}.{step}.json", doc)

    refresh(7, 0.55, {})
    refresh(19, 0.8, {PAYLOAD: {"svd": 0.5}, "new/night": {PAYLOAD: "high", "svd": 2.0}})
    body = _intraday_section(lake, D2).body
    second = body.split("</table>")[1]  # the trajectory table
    rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr) for tr in second.split("<tr>")[1:]]
    assert rows[0] == ["context", "arm (end of day)", "night", "08:00", "20:00"]
    assert ["power/evening", "long_tail", "0.300", "0.550", "0.800"] in rows
    # the tampered context name is shown as text; its non-probabilities are dropped, not rendered
    assert PAYLOAD not in body and html.escape(PAYLOAD) in body
    assert "new/night" not in body and "high" not in body
