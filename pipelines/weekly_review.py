"""Weekly diversity and performance review (``deepcuts_weekly``; ``deepcuts step weekly_review``).

Reads what the nightly steps already wrote for the nights of the week and the 28 nights before it,
and writes one HTML page per week into the reports folder the Airflow plugin serves
(``reports/weekly/week_ending=YYYY-MM-DD/index.html``, listed by ``reports/weekly/index.html``):

- the scoreboard's trends: each monitored metric (``monitor/checks``; plus the A/B CTRs and any
  numeric ``scoreboard`` entries of ``eval/ab`` verdicts) as its mean over the last 7 and 28 nights;
- niche discovery by genre: slots served per genre and variant, and their long-tail share;
- the bandit's arm shares per context (mean selection probability over the week);
- the A/B status at the end of the week, and the alerts of the week.

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
from deepcuts.settings import Settings
from pipelines.storage import Lake, MissingDataError, as_run_date

log = logging.getLogger(__name__)

WEEKLY_DIR = "weekly"
INDEX_FILE = "index.html"
SUMMARY_FILE = "summary.json"
AB_VERDICT_FILE = "verdict.json"  # written by pipelines.ab_analysis into eval/ab/run_date=D/

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}}
h1{{font-size:22px}} h2{{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{padding:3px 8px;border-bottom:1px solid #eee}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} .muted{{color:#888}} .what{{color:#555}}
.critical{{background:#fdd}} .warning{{background:#ffe9c7}}
</style></head><body>{body}</body></html>"""


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
            verdict = lake.read_json(Dataset.AB_RESULTS, night, AB_VERDICT_FILE)
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
    """Numeric metrics of one night's A/B verdict: CTR per variant and any ``scoreboard`` numbers."""
    metrics: dict[str, float] = {}
    ctr = verdict.get("ctr")
    if isinstance(ctr, dict):
        for variant, stats in ctr.items():
            value = _number(stats.get("ctr")) if isinstance(stats, dict) else None
            if value is not None:
                metrics[f"ab ctr ({variant})"] = value
    scoreboard = verdict.get("scoreboard")
    if isinstance(scoreboard, dict):
        # ab_analysis's product scoreboard: {metric: {"value"?, "control"?, "treatment"?, "target", "met"}}
        # (or a bare number); whatever is numeric becomes a trend.
        for name, entry in scoreboard.items():
            if not isinstance(entry, dict):
                entry = {"value": entry}
            for key, label in (("value", ""), ("control", " (control)"), ("treatment", " (treatment)")):
                value = _number(entry.get(key))
                if value is not None:
                    metrics[f"scoreboard {name}{label}"] = value
    return metrics


def scoreboard_trends(
    checks: pd.DataFrame, verdicts: dict[date, dict[str, Any]], week_ending: date, short: int, long: int
) -> pd.DataFrame:
    """One row per metric: latest value, mean over the last ``short`` and ``long`` nights, change.

    ``checks`` are ``monitor/checks`` rows (skipped checks have no value and count as missing).
    """
    rows = []
    if not checks.empty:
        numeric = checks.dropna(subset=[C.VALUE])
        numeric = numeric[numeric[C.CATEGORY] != "inputs"]
        rows += [
            {"metric": str(r[C.CHECK_NAME]), "night": as_run_date(r[C.RUN_DATE]), "value": float(r[C.VALUE])}
            for r in numeric.to_dict("records")
        ]
    for night, verdict in verdicts.items():
        rows += [{"metric": m, "night": night, "value": v} for m, v in _verdict_metrics(verdict).items()]
    columns = ["metric", "latest", f"mean {short}d", f"mean {long}d", f"{short}d vs {long}d", "nights"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    short_start = week_ending - timedelta(days=short - 1)
    out = []
    for metric, group in frame.groupby("metric", sort=True):
        group = group.sort_values("night")
        week = group[group["night"] >= short_start]["value"]
        mean_short = float(week.mean()) if len(week) else float("nan")
        mean_long = float(group["value"].mean())
        change = (
            (mean_short - mean_long) / abs(mean_long) if mean_long and not math.isnan(mean_short) else None
        )
        out.append(
            {
                "metric": metric,
                "latest": float(group["value"].iloc[-1]),
                f"mean {short}d": mean_short,
                f"mean {long}d": mean_long,
                f"{short}d vs {long}d": change,
                "nights": len(group),
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
        return '<td class="n">–</td>'
    if isinstance(value, bool | str) or not isinstance(value, int | float):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f'<td class="n">{int(value):,}</td>'
    text = f"{value:+.1%}" if percent else f"{value:.1%}" if fraction else f"{value:.3f}"
    return f'<td class="n">{html.escape(text)}</td>'


def _table(
    frame: pd.DataFrame,
    percent_columns: tuple[str, ...] = (),
    row_class: str | None = None,
    fraction_columns: tuple[str, ...] = (),
) -> str:
    """An HTML table of ``frame``; every value is escaped. ``percent_columns`` are signed changes,
    ``fraction_columns`` shares (both shown as percentages)."""
    if frame.empty:
        return '<p class="muted">no data for these nights</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for record in frame.to_dict("records"):
        css = f' class="{html.escape(str(record[row_class]))}"' if row_class else ""
        cells = "".join(_cell(record[c], c in percent_columns, c in fraction_columns) for c in frame.columns)
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(title: str, what: str, body: str) -> str:
    return f'<h2>{html.escape(title)}</h2><p class="what">{html.escape(what)}</p>{body}'


def _ab_status(verdicts: dict[date, dict[str, Any]]) -> str:
    if not verdicts:
        return '<p class="muted">no A/B verdict this week</p>'
    night = max(verdicts)
    verdict = verdicts[night]
    facts = {
        "night": night.isoformat(),
        "experiment": verdict.get("experiment"),
        "decision": verdict.get("decision", verdict.get("verdict")),
        "lift (treatment vs control CTR)": _number(verdict.get("lift")),
        "p value": _number(verdict.get("p_value")),
        "enough users": verdict.get("enough_users"),
        "sample ratio mismatch": verdict.get("srm_mismatch"),
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in facts.items() if v is not None)
    message = verdict.get("message")
    note = f"<p>{html.escape(str(message))}</p>" if message else ""
    return f"<table>{rows}</table>{note}"


def render_review(
    week_ending: date,
    nights: list[date],
    trends: pd.DataFrame,
    genres: pd.DataFrame,
    shares: pd.DataFrame,
    verdicts: dict[date, dict[str, Any]],
    alerts: pd.DataFrame,
    short: int,
    long: int,
) -> bytes:
    title = f"deepcuts weekly review, week ending {week_ending.isoformat()}"
    present = ", ".join(n.isoformat() for n in nights) or "none"
    alert_table = (
        alerts[[C.RUN_DATE, C.SEVERITY, C.CHECK_NAME, C.MESSAGE]].sort_values([C.RUN_DATE, C.CHECK_NAME])
        if not alerts.empty
        else alerts
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="what">Nights of the week with a nightly run: {html.escape(present)}.</p>',
        _section(
            "Scoreboard trends",
            f"Each monitored metric: its newest value, its mean over the last {short} and {long} nights, "
            f"and how far the {short}-night mean is from the {long}-night mean (relative change).",
            _table(trends, percent_columns=(f"{short}d vs {long}d",)),
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
            "Alerts of the week",
            "Every failed monitoring check of the week (critical ones block that night's publish).",
            _table(alert_table, row_class=C.SEVERITY if not alert_table.empty else None),
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
        f'<li><a href="{html.escape(w)}/">{html.escape(w.removeprefix("week_ending="))}</a></li>'
        for w in sorted(weeks, reverse=True)
    )
    body = "<h1>deepcuts weekly reviews</h1><p class='what'>One page per week (last night of the week).</p>"
    body += f"<ul>{links}</ul>" if links else '<p class="muted">no weekly review yet</p>'
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

    page = render_review(
        week_ending,
        nights,
        trends,
        genres,
        shares,
        week_verdicts,
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
        "alerts": len(alerts),
        "critical_alerts": int((alerts[C.SEVERITY] == "critical").sum()) if not alerts.empty else 0,
        "report": lake.file_path(Dataset.REPORTS, None, f"{folder}/{INDEX_FILE}"),
    }
    lake.write_bytes(Dataset.REPORTS, None, f"{folder}/{INDEX_FILE}", page)
    lake.write_json(Dataset.REPORTS, None, f"{folder}/{SUMMARY_FILE}", summary)
    lake.write_bytes(Dataset.REPORTS, None, f"{WEEKLY_DIR}/{INDEX_FILE}", _weekly_index(lake))
    log.info(
        "weekly review %s: %d nights, %d metrics, %d alerts",
        week_ending,
        len(nights),
        len(trends),
        len(alerts),
    )
    return summary
