"""The closing summary of ``make run``: what happened each night and where to look next."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from deepcuts.contracts import C, Dataset, Variant
from deepcuts.settings import Settings
from pipelines.storage import Lake, MissingDataError


def _fmt(feedback: dict[str, Any], metric: str, variant: str, spec: str = ".3f") -> str:
    value = feedback.get(metric, {}).get(variant)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def render_summary(settings: Settings, nights: list[dict[str, Any]]) -> str:
    lake = Lake(settings.home)
    lines = ["", "=" * 78, "deepcuts demo: summary", "=" * 78]
    last = date.fromisoformat(nights[-1]["run_date"])
    lines += [*_scoreboard(lake, last), ""]
    lines.append("the next day's traffic on each night's lists (simulated users), control / treatment:")
    lines.append(
        f"{'run date':<11}{'DAG s':>6}{'impressions':>12}{'CTR':>14}{'shown tail':>12}"
        f"{'rating':>12}{'niche clicks':>13}"
    )
    for night in nights:
        fb = night.get("feedback", {})
        impressions = sum(int(v) for v in fb.get("impressions", {}).values())
        lines.append(
            f"{night['run_date']:<11}{night['seconds']:>6.0f}{impressions:>12}"
            f"{_pair(fb, 'ctr', '.3f'):>14}{_pair(fb, 'long_tail_share', '.0%'):>12}"
            f"{_pair(fb, 'mean_rating', '.2f'):>12}{_pair(fb, 'niche_clicks', 'd'):>13}"
        )
    lines.append("(shown tail: long-tail share of the items shown to the next day's visitors; the report's")
    lines.append(" served-list diversity counts every published slot, visited or not)")
    lines += ["", *_arm_shares(lake, last), "", *_list_health(lake, last), ""]
    reports = Path(settings.home).resolve() / Dataset.REPORTS.value
    lines.append(f"report for the last night: {reports / f'run_date={last.isoformat()}' / 'index.html'}")
    lines.append(f"report index:              {reports / 'index.html'}")
    lines.append(f"weekly reviews:            {reports / 'weekly' / 'index.html'}")
    lines.append("inside the Airflow UI:     `make ui` (or `deepcuts ui`): it prints the URL and the login,")
    lines.append("                           then Browse > Deep-cut reports; Ctrl-C stops it")
    lines += ["", *_app_query_example(settings, lake, last), "=" * 78]
    return "\n".join(lines)


def _pair(feedback: dict[str, Any], metric: str, spec: str) -> str:
    """``control/treatment`` of one metric of a night's feedback."""
    return "/".join(_fmt(feedback, metric, v, spec) for v in (Variant.CONTROL.value, Variant.TREATMENT.value))


def _scoreboard(lake: Lake, run_date: date) -> list[str]:
    """The product scoreboard ``ab_analysis`` computed for the last night, one line per target."""
    from pipelines.ab_analysis import VERDICT_FILE, Status, scoreboard_headline, scoreboard_rows

    if not lake.exists(Dataset.AB_RESULTS, run_date, VERDICT_FILE):
        return [f"product scoreboard: no A/B analysis for {run_date}"]
    board = lake.read_json(Dataset.AB_RESULTS, run_date, VERDICT_FILE).get("scoreboard") or {}
    if not board:
        return [f"product scoreboard: the A/B analysis of {run_date} has none"]
    lines = [f"product scoreboard after night {run_date} (treatment judged): {scoreboard_headline(board)}"]
    lines.append(
        f"  {'metric':<18}{'control':>8}{'treatment':>10}  {'lift / ratio [95% CI]':<24}status: target"
    )
    for row in scoreboard_rows(board):
        flag = {Status.MET: "met", Status.OFF: "OFF TARGET", Status.UNKNOWN: "not measurable"}[row["status"]]
        target = row["target (treatment)"].split(" (")[0]  # the promised range is in the report
        interval = row["lift / ratio"].replace(" (95% CI ", " [").replace(" to ", ", ").replace(")", "]")
        lines.append(
            f"  {row['metric']:<18}{row['control']:>8}{row['treatment']:>10}  {interval:<24}{flag}: {target}"
        )
    return lines


def _arm_shares(lake: Lake, run_date: date) -> list[str]:
    try:
        assignments = lake.read_df(Dataset.ASSIGNMENTS, run_date, columns=[C.VARIANT, C.ARM])
    except MissingDataError:
        return ["arm shares: no assignments written"]
    treated = assignments[assignments[C.VARIANT] == Variant.TREATMENT.value]
    shares = treated[C.ARM].value_counts(normalize=True).sort_index()
    body = ", ".join(f"{arm} {share:.0%}" for arm, share in shares.items())
    return [f"bandit arm shares for tomorrow (treatment): {body}"]


def _list_health(lake: Lake, run_date: date) -> list[str]:
    try:
        served = lake.read_df(Dataset.SERVED_LISTS, run_date, columns=[C.VARIANT, C.IS_LONG_TAIL, C.USER_ID])
    except MissingDataError:
        return ["served lists: none written"]
    out = []
    for variant, group in served.groupby(C.VARIANT):
        out.append(
            f"{variant:>9}: long-tail share {group[C.IS_LONG_TAIL].mean():.0%} "
            f"over {group[C.USER_ID].nunique()} users"
        )
    return out


def _app_query_example(settings: Settings, lake: Lake, run_date: date) -> list[str]:
    """Run the app's own read query (sql/queries/user_list.sql) for one user and show the result."""
    from pipelines.serving import read_user_list, serving_engine

    try:
        served = lake.read_df(
            Dataset.SERVED_LISTS, run_date, columns=[C.USER_ID, C.DAYPART, C.VARIANT, C.IS_LONG_TAIL]
        )
    except MissingDataError:
        return []
    if served.empty:
        return []
    user_id, daypart = deep_cut_example(served)
    engine = serving_engine(settings)
    try:
        with engine.connect() as conn:
            rows = pd.DataFrame(read_user_list(conn, user_id, daypart))
    finally:
        engine.dispose()
    shown = [c for c in (C.RANK, C.ITEM_ID, C.ARM, C.VARIANT, C.IS_LONG_TAIL, C.REASON) if c in rows.columns]
    return [
        f"the app's query (sql/queries/user_list.sql) for user {user_id}, {daypart}, "
        f"on {settings.effective_serving_url}",
        f"(a treatment list with the most long-tail items; columns {', '.join(shown)} of the result):",
        rows[shown].head(settings.rerank.list_length).to_string(index=False)
        if not rows.empty
        else "(no rows)",
    ]


def deep_cut_example(served: pd.DataFrame) -> tuple[int, str]:
    """The (user, daypart) whose treatment list holds the most long-tail items (ties: lowest user id,
    then daypart name): a list that shows the deep-cut reasons. Any list when nobody is in treatment."""
    treated = served[served[C.VARIANT] == Variant.TREATMENT.value]
    pool = treated if len(treated) else served
    tails = pool.groupby([C.USER_ID, C.DAYPART])[C.IS_LONG_TAIL].sum().reset_index()
    best = tails.sort_values([C.IS_LONG_TAIL, C.USER_ID, C.DAYPART], ascending=[False, True, True]).iloc[0]
    return int(best[C.USER_ID]), str(best[C.DAYPART])
