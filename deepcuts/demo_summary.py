"""The closing summary of ``make run``: what happened each night and where to look next."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from deepcuts.contracts import C, Dataset, Variant
from deepcuts.settings import Settings
from pipelines.storage import Lake, MissingDataError


def _ctr(feedback: dict[str, Any], variant: str) -> str:
    impressions = feedback.get("impressions", {}).get(variant, 0)
    clicks = feedback.get("clicks", {}).get(variant, 0)
    return f"{clicks / impressions:.3f}" if impressions else "  -  "


def render_summary(settings: Settings, nights: list[dict[str, Any]]) -> str:
    lake = Lake(settings.home)
    lines = ["", "=" * 78, "deepcuts demo: summary", "=" * 78]
    lines.append(
        f"{'night':<12}{'seconds':>8}  {'CTR control':>12}{'CTR treatment':>15}  {'impressions':>12}"
    )
    for night in nights:
        fb = night.get("feedback", {})
        impressions = sum(fb.get("impressions", {}).values())
        lines.append(
            f"{night['run_date']:<12}{night['seconds']:>8.0f}  {_ctr(fb, Variant.CONTROL):>12}"
            f"{_ctr(fb, Variant.TREATMENT):>15}  {impressions:>12}"
        )
    last = date.fromisoformat(nights[-1]["run_date"])
    lines += ["", *_arm_shares(lake, last), "", *_list_health(lake, last), ""]
    reports = Path(settings.home).resolve() / Dataset.REPORTS.value
    lines.append(f"report for the last night: {reports / f'run_date={last.isoformat()}' / 'index.html'}")
    lines.append(f"report index:              {reports / 'index.html'}")
    lines.append(
        "inside the Airflow UI:     AIRFLOW_HOME="
        f"{Path(settings.home).resolve() / 'airflow'} .venv/bin/airflow standalone"
    )
    lines.append("                           then open http://localhost:8080 > Browse > Deep-cut reports")
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
