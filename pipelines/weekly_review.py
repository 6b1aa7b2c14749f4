"""Weekly diversity and performance review (``deepcuts_weekly``; ``deepcuts step weekly_review``).

Reads what the nightly steps already wrote for the nights of the week and the 28 nights before it,
and writes one HTML page per week into the reports folder the Airflow plugin serves
(``reports/weekly/week_ending=YYYY-MM-DD/index.html``, listed by ``reports/weekly/index.html``):

- the scoreboard's trends: each monitored metric (``monitor/checks``; plus the A/B CTRs and any
  numeric ``scoreboard`` entries of ``eval/ab`` verdicts) as its mean over the last 7 and 28 nights;
- niche discovery by genre: slots served per genre and variant, and their long-tail share;
- the bandit's arm shares per context (mean selection probability over the week);
- the A/B status at the end of the week, the experiments of the week (the nightly report's table:
  dates, treatment shares, decisions, verdicts), and the alerts of the week.

The pages share the nightly report's look (``deepcuts.pipelines.report.PAGE``) and link to each other: the
index of all nights links the weekly reviews, each review links back.

Every input is optional: a night without a partition is skipped and said so, so the review also works
on a lake with a few nights, or with outputs that a later version adds (read tolerantly).
"""

from __future__ import annotations

import html
import logging
import math
from datetime import date, timedelta
from typing import Any

import pandas as pd

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines.ab_analysis import SCOREBOARD_LABELS, VERDICT_FILE
from deepcuts.pipelines.report import (
    INDEX_FILE,
    PAGE,
    WEEKLY_DIR,
    WEEKLY_INDEX,
    build_index,
    experiment_rows,
    experiments_table,
    p_value_text,
)
from deepcuts.pipelines.storage import Lake, MissingDataError, as_run_date
from deepcuts.settings import Settings

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
#: Where a trend row comes from: the A/B verdicts (``eval/ab``) or the monitor's checks.
FROM_AB = "A/B verdict"
FROM_MONITOR = "monitor"
#: What the per-variant numbers of a scoreboard entry measure when they are not the metric itself:
#: the CTR lift compares the variants' CTRs, the niche click ratio their niche clicks per exposed user.
_ARM_MEASURE = {"ctr_lift": "CTR", "niche_click_ratio": "niche clicks per exposed user"}


def week_folder(week_ending: date) -> str:
    return f"{WEEKLY_DIR}/week_ending={week_ending.isoformat()}"


def _window(end: date, days: int) -> list[date]:
    return [end - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _read_nights(lake: Lake, dataset: Dataset, nights: list[date], **kwargs: Any) -> pd.DataFrame:
    frames = []
    for night in nights:
        try:
            frames.append(lake.read_df(dataset, night, **kwargs))
        except MissingDataError:
            continue
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _verdicts(lake: Lake, nights: list[date]) -> dict[date, dict[str, Any]]:
    out = {}
    for night in nights:
        try:
            verdict = lake.read_json(Dataset.AB_RESULTS, night, VERDICT_FILE)
        except (MissingDataError, ValueError):
            continue
        if isinstance(verdict, dict):
            out[night] = verdict
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _verdict_metrics(verdict: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics of one night's A/B verdict: any ``scoreboard`` numbers (named by the report's
    labels) and the CTR per variant (unless the scoreboard's CTR lift already carries them)."""
    metrics: dict[str, float] = {}
    scoreboard = verdict.get("scoreboard")
    if isinstance(scoreboard, dict):
        # ab_analysis's product scoreboard: {metric: {"value"?, "control"?, "treatment"?, "target", "met"}}
        # (or a bare number); whatever is numeric becomes a trend.
        for name, entry in scoreboard.items():
            if not isinstance(entry, dict):
                entry = {"value": entry}
            label = SCOREBOARD_LABELS.get(name, name)
            for key in ("value", "control", "treatment"):
                value = _number(entry.get(key))
                if value is not None:
                    metrics[label if key == "value" else f"{_ARM_MEASURE.get(name, label)}, {key}"] = value
    ctr = verdict.get("ctr")
    if isinstance(ctr, dict):
        for variant, stats in ctr.items():
            value = _number(stats.get("ctr")) if isinstance(stats, dict) else None
            if value is not None:
                metrics.setdefault(f"CTR, {variant}", value)
    return metrics


def scoreboard_trends(
    checks: pd.DataFrame, verdicts: dict[date, dict[str, Any]], week_ending: date, short: int, long: int
) -> pd.DataFrame:
    """One row per metric: latest value, mean over the last ``short`` and ``long`` nights, change, and
    where it comes from (:data:`FROM_MONITOR` or :data:`FROM_AB`).

    ``checks`` are ``monitor/checks`` rows (skipped checks have no value and count as missing). The
    change is left empty while every night of a metric is inside the short window: the two means are
    then the same nights, and a "+0.0%" would read as a measured standstill.
    """
    rows = []
    if not checks.empty:
        numeric = checks.dropna(subset=[C.VALUE])
        numeric = numeric[numeric[C.CATEGORY] != "inputs"]
        rows += [
            {
                "metric": str(r[C.CHECK_NAME]),
                "source": FROM_MONITOR,
                "night": as_run_date(r[C.RUN_DATE]),
                "value": float(r[C.VALUE]),
            }
            for r in numeric.to_dict("records")
        ]
    for night, verdict in verdicts.items():
        rows += [
            {"metric": m, "source": FROM_AB, "night": night, "value": v}
            for m, v in _verdict_metrics(verdict).items()
        ]
    columns = [
        "metric",
        "latest",
        f"mean {short}d",
        f"mean {long}d",
        f"{short}d vs {long}d",
        "nights",
        "source",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    short_start = week_ending - timedelta(days=short - 1)
    out = []
    for (source, metric), group in frame.groupby(["source", "metric"], sort=True):
        group = group.sort_values("night")
        in_week = group["night"] >= short_start
        week = group[in_week]["value"]
        mean_short = float(week.mean()) if len(week) else float("nan")
        mean_long = float(group["value"].mean())
        comparable = bool(mean_long) and not math.isnan(mean_short) and not in_week.all()
        change = (mean_short - mean_long) / abs(mean_long) if comparable else None
        out.append(
            {
                "metric": metric,
                "latest": float(group["value"].iloc[-1]),
                f"mean {short}d": mean_short,
                f"mean {long}d": mean_long,
                f"{short}d vs {long}d": change,
                "nights": len(group),
                "source": source,
            }
        )
    return pd.DataFrame(out, columns=columns)


def genre_discovery(served: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per genre: slots served per variant and the long-tail share of those slots.

    An item counts once for each of its genres. Sorted by treatment slots, most first.
    """
    if served.empty or items.empty:
        return pd.DataFrame(columns=["genre"])
    genres = items[[C.ITEM_ID, C.GENRES]].explode(C.GENRES).dropna(subset=[C.GENRES])
    slots = served[[C.ITEM_ID, C.VARIANT, C.IS_LONG_TAIL]].merge(genres, on=C.ITEM_ID, how="inner")
    stats = slots.groupby([C.GENRES, C.VARIANT])[C.IS_LONG_TAIL].agg(["size", "mean"]).unstack(C.VARIANT)
    out = pd.DataFrame({"genre": stats.index})
    variants = sorted(slots[C.VARIANT].unique())
    for variant in variants:
        out[f"slots {variant}"] = stats[("size", variant)].fillna(0).astype(int).to_numpy()
    for variant in variants:
        out[f"long-tail share {variant}"] = stats[("mean", variant)].to_numpy()
    order = f"slots {'treatment' if 'treatment' in variants else variants[-1]}"
    return out.sort_values([order, "genre"], ascending=[False, True], ignore_index=True)


def experiments_of_week(rows: list[dict[str, Any]], first: date, last: date) -> list[dict[str, Any]]:
    """The experiments (rows of :func:`deepcuts.pipelines.report.experiment_rows`) in force on some night from
    ``first`` to ``last``: started on or before ``last`` (or not yet analysed: no start date) and not
    ended before ``first``. A decision taking effect during the week keeps its experiment listed."""
    start, end = first.isoformat(), last.isoformat()
    return [
        row
        for row in rows
        if (row.get("from") is None or str(row["from"]) <= end)
        and (row.get("until") is None or str(row["until"]) >= start)
    ]


def arm_shares(policy: pd.DataFrame) -> pd.DataFrame:
    """Mean selection probability of each arm per (segment, daypart) context over the nights given."""
    if policy.empty:
        return pd.DataFrame()
    table = policy.pivot_table(
        index=[C.SEGMENT, C.DAYPART], columns=C.ARM, values=C.SELECTION_PROBABILITY, aggfunc="mean"
    )
    table.columns.name = None
    return table.reset_index()


# ----------------------------------------------------------------------------- HTML
def _cell(value: Any, percent: bool = False, fraction: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class=num>–</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, str) or not isinstance(value, int | float):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"<td class=num>{int(value):,}</td>"
    if percent or fraction:
        text = f"{value:+.1%}" if percent else f"{value:.1%}"
    else:  # a p value of 1e-5 is not "0.000": small non-zero values keep three significant digits
        text = f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.3f}"
    return f"<td class=num>{html.escape(text)}</td>"


def _table(
    frame: pd.DataFrame,
    percent_columns: tuple[str, ...] = (),
    row_class: str | None = None,
    fraction_columns: tuple[str, ...] = (),
) -> str:
    """An HTML table of ``frame``; every value is escaped. ``percent_columns`` are signed changes,
    ``fraction_columns`` shares (both shown as percentages)."""
    if frame.empty:
        return "<p class=muted>no data for these nights</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for record in frame.to_dict("records"):
        css = f' class="{html.escape(str(record[row_class]))}"' if row_class else ""
        cells = "".join(_cell(record[c], c in percent_columns, c in fraction_columns) for c in frame.columns)
        body.append(f"<tr{css}>{cells}</tr>")
    rows = "".join(body)
    return f"<div class=wrap><table class=t><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


def _section(title: str, what: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2><p class=note>{html.escape(what)}</p>{body}"


def _ab_status(verdicts: dict[date, dict[str, Any]]) -> str:
    if not verdicts:
        return "<p class=muted>no A/B verdict this week</p>"
    night = max(verdicts)
    verdict = verdicts[night]
    facts = {
        "night": night.isoformat(),
        "experiment": verdict.get("experiment"),
        "decision": verdict.get("decision", verdict.get("verdict")),
        "lift (treatment vs control CTR)": _number(verdict.get("lift")),
        "p value": p_value_text(verdict.get("p_value"))
        if _number(verdict.get("p_value")) is not None
        else None,
        "enough users": verdict.get("enough_users"),
        "sample ratio mismatch": verdict.get("srm_mismatch"),
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in facts.items() if v is not None)
    message = verdict.get("message")
    note = f"<p>{html.escape(str(message))}</p>" if message else ""
    return f"<table class=t>{rows}</table>{note}"


def _alerts(alerts: pd.DataFrame, nights: list[date]) -> str:
    if alerts.empty:
        return "<p>No alerts this week.</p>" if nights else "<p class=muted>no nightly run this week</p>"
    columns = [C.RUN_DATE, C.SEVERITY, C.CHECK_NAME, C.MESSAGE]
    return _table(alerts[columns].sort_values([C.RUN_DATE, C.CHECK_NAME]), row_class=C.SEVERITY)


def render_review(
    week_ending: date,
    nights: list[date],
    trends: pd.DataFrame,
    genres: pd.DataFrame,
    shares: pd.DataFrame,
    verdicts: dict[date, dict[str, Any]],
    experiments: list[dict[str, Any]],
    alerts: pd.DataFrame,
    short: int,
    long: int,
) -> bytes:
    title = f"deepcuts weekly review, week ending {week_ending.isoformat()}"
    present = ", ".join(n.isoformat() for n in nights) or "none"
    change = f"{short}d vs {long}d"
    means = (
        f"Newest value, mean over the last {short} and {long} nights, and how far the {short}-night mean "
        f"is from the {long}-night mean (relative change; empty until there are nights before the week)."
    )
    by_source = {
        source: trends[trends["source"] == source].drop(columns=["source"]).reset_index(drop=True)
        for source in (FROM_AB, FROM_MONITOR)
    }
    body = [
        f"<h1>{html.escape(title)}</h1>",
        # the page is reports/weekly/week_ending=D/index.html
        f'<nav><a href="../../{INDEX_FILE}">all nights</a>'
        f'<a href="../{INDEX_FILE}">all weekly reviews</a></nav>',
        f"<p class=note>Nights of the week with a nightly run: {html.escape(present)}.</p>",
        _section(
            "Scoreboard trends",
            "The product scoreboard of the A/B verdicts (lifts and ratios are treatment over control; "
            "per-variant values after the comma). " + means,
            _table(by_source[FROM_AB], percent_columns=(change,)),
        ),
        _section(
            "Monitoring trends",
            "Each value the nightly monitor checks (pipelines/monitor.py). " + means,
            _table(by_source[FROM_MONITOR], percent_columns=(change,)),
        ),
        _section(
            "Niche discovery by genre",
            "Slots served this week per genre and variant (an item counts once per genre it has), and "
            "the share of those slots that went to long-tail items: where each variant finds niches.",
            _table(genres, fraction_columns=tuple(c for c in genres.columns if c.startswith("long-tail"))),
        ),
        _section(
            "Arm shares per context",
            "The bandit's mean selection probability of each arm per (segment, daypart) this week.",
            _table(shares),
        ),
        _section(
            "A/B status", "The experiment's verdict after the last night of the week.", _ab_status(verdicts)
        ),
        _section(
            "Experiments of the week",
            "Every experiment in force on a night of the week, as the nightly report lists them.",
            experiments_table(experiments) if experiments else "<p class=muted>no experiment this week</p>",
        ),
        _section(
            "Alerts of the week",
            "Every failed monitoring check of the week (critical ones block that night's publish).",
            _alerts(alerts, nights),
        ),
    ]
    return PAGE.format(title=html.escape(title), body="\n".join(body)).encode()


def _weekly_index(lake: Lake) -> bytes:
    """The list of weekly reviews, newest first (one link per ``week_ending=`` folder)."""
    weeks = []
    folder = f"{lake.dataset_dir(Dataset.REPORTS)}/{WEEKLY_DIR}"
    import pyarrow.fs as pafs

    if lake.fs.get_file_info(folder).type == pafs.FileType.Directory:
        for info in lake.fs.get_file_info(pafs.FileSelector(folder)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("week_ending="):
                weeks.append(info.base_name)
    links = "".join(
        f'<li><a href="{html.escape(w)}/{INDEX_FILE}">{html.escape(w.removeprefix("week_ending="))}</a></li>'
        for w in sorted(weeks, reverse=True)
    )
    body = (
        f'<h1>deepcuts weekly reviews</h1><nav><a href="../{INDEX_FILE}">all nights</a></nav>'
        "<p class=note>One page per week, named by the last night of the week.</p>"
    )
    body += f"<ul>{links}</ul>" if links else "<p class=muted>no weekly review yet</p>"
    return PAGE.format(title="deepcuts weekly reviews", body=body).encode()


def weekly_review(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """Write the review of the week whose last night is ``run_date``; returns a small summary."""
    week_ending = as_run_date(run_date)
    cfg = settings.weekly
    lake = Lake(settings.home)
    week = _window(week_ending, cfg.short_window_days)
    month = _window(week_ending, cfg.long_window_days)

    checks = _read_nights(lake, Dataset.MONITOR_CHECKS, month)
    verdicts = _verdicts(lake, month)
    nights = [n for n in week if n in set(lake.run_dates(Dataset.SERVED_LISTS))]
    served = _read_nights(lake, Dataset.SERVED_LISTS, nights, columns=[C.ITEM_ID, C.VARIANT, C.IS_LONG_TAIL])
    items = pd.DataFrame()
    if nights:
        try:
            items = lake.read_df(Dataset.ITEMS, max(nights), columns=[C.ITEM_ID, C.GENRES])
        except MissingDataError:
            log.warning("weekly review %s: no items for %s; genre table left empty", week_ending, max(nights))
    trends = scoreboard_trends(checks, verdicts, week_ending, cfg.short_window_days, cfg.long_window_days)
    genres = genre_discovery(served, items)
    shares = arm_shares(_read_nights(lake, Dataset.BANDIT_POLICY, week))
    alerts = _read_nights(lake, Dataset.ALERTS, week)
    week_verdicts = {n: v for n, v in verdicts.items() if n in set(week)}
    experiments = experiments_of_week(experiment_rows(lake, week_ending, settings), week[0], week_ending)

    page = render_review(
        week_ending,
        nights,
        trends,
        genres,
        shares,
        week_verdicts,
        experiments,
        alerts,
        cfg.short_window_days,
        cfg.long_window_days,
    )
    folder = week_folder(week_ending)
    summary = {
        "week_ending": week_ending.isoformat(),
        "nights": [n.isoformat() for n in nights],
        "metrics": len(trends),
        "genres": int(genres["genre"].nunique()) if not genres.empty else 0,
        "experiments": [str(row["experiment"]) for row in experiments],
        "alerts": len(alerts),
        "critical_alerts": int((alerts[C.SEVERITY] == "critical").sum()) if not alerts.empty else 0,
        "report": lake.file_path(Dataset.REPORTS, None, f"{folder}/{INDEX_FILE}"),
    }
    lake.write_bytes(Dataset.REPORTS, None, f"{folder}/{INDEX_FILE}", page)
    lake.write_json(Dataset.REPORTS, None, f"{folder}/{SUMMARY_FILE}", summary)
    lake.write_bytes(Dataset.REPORTS, None, WEEKLY_INDEX, _weekly_index(lake))
    build_index(settings)  # the index of all nights links the weekly reviews once the first exists
    log.info(
        "weekly review %s: %d nights, %d metrics, %d alerts",
        week_ending,
        len(nights),
        len(trends),
        len(alerts),
    )
    return summary
