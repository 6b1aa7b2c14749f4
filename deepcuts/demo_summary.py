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
    lines.append("the next day's traffic on each night's lists (simulated users), control vs treatment:")
    lines.append(
        f"{'run date':<12}{'DAG s':>6}{'impressions':>13}{'CTR ctl':>9}{'CTR trt':>9}"
        f"{'long-tail ctl':>15}{'long-tail trt':>15}{'rating trt':>12}"
    )
    ctl, trt = Variant.CONTROL.value, Variant.TREATMENT.value
    for night in nights:
        fb = night.get("feedback", {})
        impressions = sum(int(v) for v in fb.get("impressions", {}).values())
        lines.append(
            f"{night['run_date']:<12}{night['seconds']:>6.0f}{impressions:>13}"
            f"{_fmt(fb, 'ctr', ctl):>9}{_fmt(fb, 'ctr', trt):>9}"
            f"{_fmt(fb, 'long_tail_share', ctl, '.0%'):>15}{_fmt(fb, 'long_tail_share', trt, '.0%'):>15}"
            f"{_fmt(fb, 'mean_rating', trt, '.2f'):>12}"
        )
    last = date.fromisoformat(nights[-1]["run_date"])
    lines += ["", *_arm_shares(lake, last), "", *_list_health(lake, last), ""]
    reports = Path(settings.home).resolve() / Dataset.REPORTS.value
    lines.append(f"report for the last night: {reports / f'run_date={last.isoformat()}' / 'index.html'}")
    lines.append(f"report index:              {reports / 'index.html'}")
    lines.append(f"weekly reviews:            {reports / 'weekly' / 'index.html'}")
    lines.append("inside the Airflow UI:     `make ui` (or `deepcuts ui`): it prints the URL and the login,")
    lines.append("                           then Browse > Deep-cut reports; Ctrl-C stops it")
    lines += ["", *_app_query_example(settings, lake, last), "=" * 78]
    return "\n".join(lines)


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
        served = lake.read_df(Dataset.SERVED_LISTS, run_date, columns=[C.USER_ID, C.DAYPART])
    except MissingDataError:
        return []
    user_id, daypart = int(served[C.USER_ID].iloc[0]), str(served[C.DAYPART].iloc[0])
    engine = serving_engine(settings)
    try:
        with engine.connect() as conn:
            rows = pd.DataFrame(read_user_list(conn, user_id, daypart))
    finally:
        engine.dispose()
    return [
        f"the app's query (sql/queries/user_list.sql) for user {user_id}, {daypart}, "
        f"on {settings.effective_serving_url}:",
        rows.head(10).to_string(index=False),
    ]
