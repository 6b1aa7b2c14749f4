"""Nightly HTML report for analysts (step ``report``) and the index across nights.

One self-contained HTML file per night (plots embedded as PNG) at ``reports/run_date=D/index.html``,
plus ``reports/index.html`` with the trends over all nights. The Airflow plugin serves the reports
folder as-is, so the same relative links work on disk and inside the Airflow UI.

Every section reads its own upstream dataset and says plainly when that dataset is missing (the first
night has no A/B result yet, a monitoring-only rerun has no OPE, ...): a report never fails a night.
Trends read one small JSON per night (``stats.json``) written by this step, not the raw lists.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: workers have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from deepcuts.contracts import C, Dataset, Variant
from deepcuts.settings import ReportSettings, Settings
from pipelines.storage import Lake, MissingDataError, as_run_date

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
INDEX_FILE = "index.html"
GX_DOCS = "gx/index.html"
AB_VERDICT_FILE = "verdict.json"


@dataclass
class Section:
    title: str
    body: str


# ----------------------------------------------------------------------------- rendering helpers
def _png(fig: plt.Figure, dpi: int, tight: bool = True) -> str:
    """The figure as an embedded PNG; ``tight`` crops it to its content (a second full draw: pass
    False for a figure whose margins are set by hand)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _night_axis(ax: plt.Axes, labels: list[str], max_labels: int) -> None:
    """Label the nights of an axis whose x positions are ``0 .. len(labels) - 1`` with at most
    ``max_labels`` evenly spaced tick labels.

    Trend plots put nights at integer positions (one per night, gaps kept out) and label only some of
    them: a label per night is unreadable after a few weeks and its text layout is most of the
    rendering time of a trend plot (docs/benchmarks.md).
    """
    step = max(1, math.ceil(len(labels) / max(max_labels, 1)))
    ticks = list(range(0, len(labels), step))
    ax.set_xticks(ticks, [labels[i] for i in ticks])


def _table(frame: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    if frame.empty:
        return "<p class=muted>no rows</p>"
    formatters = {c: floatfmt.format for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    return frame.to_html(index=False, border=0, classes="t", formatters=formatters, na_rep="–")


def _missing(what: str, error: Exception | str) -> str:
    return f"<p class=muted>{html.escape(what)} not available: {html.escape(str(error))}</p>"


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}}
h1{{font-size:22px}} h2{{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}}
table.t{{border-collapse:collapse;font-size:13px}}
table.t td,table.t th{{padding:3px 8px;border-bottom:1px solid #eee}}
.muted{{color:#888}} .badge{{display:inline-block;padding:2px 8px;border-radius:10px;background:#eef}}
.critical{{background:#fdd}} .warning{{background:#ffe9c7}} nav a{{margin-right:12px}} img{{max-width:100%}}
</style></head><body>{body}</body></html>"""


def _page(title: str, header: str, sections: list[Section]) -> bytes:
    body = [f"<h1>{html.escape(title)}</h1>", header]
    body += [f"<h2>{html.escape(s.title)}</h2>{s.body}" for s in sections]
    return PAGE.format(title=html.escape(title), body="\n".join(body)).encode()


# ----------------------------------------------------------------------------- per-night stats
def _served_stats(lake: Lake, run_date: date) -> dict[str, dict[str, float]]:
    """Diversity of the lists published tonight, per variant: long-tail share, genres per list,
    catalog coverage, mean novelty."""
    served = lake.read_df(Dataset.SERVED_LISTS, run_date)
    items = lake.read_df(Dataset.ITEMS, run_date, columns=[C.ITEM_ID, C.GENRES])
    n_catalog = len(items)
    genres = items.explode(C.GENRES).dropna(subset=[C.GENRES])
    out: dict[str, dict[str, float]] = {}
    for variant, rows in served.groupby(C.VARIANT):
        per_list = (
            rows[[C.USER_ID, C.DAYPART, C.ITEM_ID]]
            .merge(genres, on=C.ITEM_ID, how="left")
            .groupby([C.USER_ID, C.DAYPART])[C.GENRES]
            .nunique()
        )
        out[str(variant)] = {
            "long_tail_share": float(rows[C.IS_LONG_TAIL].mean()),
            "genres_per_list": float(per_list.mean()),
            "coverage": float(rows[C.ITEM_ID].nunique() / max(n_catalog, 1)),
            "novelty": float(rows[C.NOVELTY].mean()),
            "users": float(rows[C.USER_ID].nunique()),
        }
    return out


def _night_stats(lake: Lake, run_date: date) -> dict[str, Any]:
    stats: dict[str, Any] = {"run_date": run_date.isoformat()}
    try:
        stats["served"] = _served_stats(lake, run_date)
    except MissingDataError as exc:
        stats["served_error"] = str(exc)
    try:
        stats["ab"] = lake.read_json(Dataset.AB_RESULTS, run_date, AB_VERDICT_FILE)
    except MissingDataError as exc:
        stats["ab_error"] = str(exc)
    try:
        offline = lake.read_df(Dataset.EVAL_OFFLINE, run_date)
        stats["offline"] = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in offline.drop(columns=[C.RUN_DATE]).to_dict(orient="records")
        ]
    except MissingDataError as exc:
        stats["offline_error"] = str(exc)
    return stats


# ----------------------------------------------------------------------------- sections
def _offline_section(history: list[dict[str, Any]], cfg: ReportSettings) -> Section:
    rows = [dict(r, run_date=h["run_date"]) for h in history for r in h.get("offline", [])]
    if not rows:
        return Section("Offline metrics per arm", _missing("offline evaluation", "no nights evaluated yet"))
    frame = pd.DataFrame(rows)
    parts = []
    accuracy = frame[frame[C.LIST_SOURCE] == "previous_candidates"]
    metric = next(
        (m for m in ("ndcg@10", "hit_rate@10", "precision@10") if m in set(accuracy[C.METRIC])), None
    )
    if metric:
        pivot = accuracy[accuracy[C.METRIC] == metric].pivot_table(
            index="run_date", columns=C.ARM, values=C.VALUE, aggfunc="mean"
        )
        fig, ax = plt.subplots(figsize=(8, 3.2))
        x = np.arange(len(pivot))
        for arm in pivot.columns:
            ax.plot(x, pivot[arm].to_numpy(), marker="o", label=arm)
        _night_axis(ax, [str(d) for d in pivot.index], cfg.date_labels)
        ax.set_title(f"{metric} of yesterday's candidates against today's ratings")
        ax.set_xlabel("run date")
        ax.legend(fontsize=8, ncol=4)
        parts.append(_png(fig, cfg.dpi))
    last = frame[frame["run_date"] == frame["run_date"].max()]
    wide = last.pivot_table(index=[C.LIST_SOURCE, C.ARM], columns=C.METRIC, values=C.VALUE, aggfunc="mean")
    parts.append(_table(wide.reset_index()))
    return Section("Offline metrics per arm", "".join(parts))


def _served_section(history: list[dict[str, Any]], today: dict[str, Any], cfg: ReportSettings) -> Section:
    if "served" not in today:
        return Section("Served list diversity", _missing("served lists", today.get("served_error", "")))
    table = pd.DataFrame(today["served"]).T.reset_index(names="variant")
    series = [(h["run_date"], v, s) for h in history for v, s in h.get("served", {}).items()]
    frame = pd.DataFrame(
        [{"run_date": d, "variant": v, **s} for d, v, s in series],
    )
    nights = sorted(frame["run_date"].unique())
    frame["x"] = np.searchsorted(nights, frame["run_date"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, metric, title in zip(
        axes,
        ["long_tail_share", "genres_per_list", "coverage"],
        ["long-tail share", "genres per list", "catalog coverage"],
        strict=True,
    ):
        for variant, rows in frame.groupby("variant"):
            ax.plot(rows["x"], rows[metric], marker="o", label=variant)
        ax.set_title(title)
        _night_axis(ax, nights, cfg.date_labels)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0].legend(fontsize=8)
    return Section("Served list diversity", _png(fig, cfg.dpi) + _table(table))


def _bandit_section(lake: Lake, dates: list[date], cfg: ReportSettings) -> Section:
    frames = []
    for d in dates:
        try:
            frames.append(lake.read_df(Dataset.BANDIT_POLICY, d))
        except MissingDataError:
            continue
    if not frames:
        return Section("Bandit selection probabilities", _missing("bandit policy", "no policy written yet"))
    policy = pd.concat(frames, ignore_index=True)
    policy["context"] = policy[C.SEGMENT] + " / " + policy[C.DAYPART]
    contexts = sorted(policy["context"].unique())
    cols = 4
    rows = int(np.ceil(len(contexts) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.4 * rows), squeeze=False, sharey=True)
    for ax, context in zip(axes.ravel(), contexts, strict=False):
        sub = policy[policy["context"] == context].pivot_table(
            index=C.RUN_DATE, columns=C.ARM, values=C.SELECTION_PROBABILITY
        )
        x = np.arange(len(sub))
        for arm in sub.columns:
            ax.plot(x, sub[arm].to_numpy(), marker=".", label=arm)
        _night_axis(ax, [pd.Timestamp(d).strftime("%m-%d") for d in sub.index], cfg.date_labels)
        ax.set_title(context, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=6)
    for ax in axes.ravel()[len(contexts) :]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=6, fontsize=8)
    # margins by hand: cropping this 12-panel figure to its content would draw it twice
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.07, top=0.9, hspace=0.6, wspace=0.12)
    last = policy[policy[C.RUN_DATE] == policy[C.RUN_DATE].max()]
    wide = last.pivot_table(index="context", columns=C.ARM, values=C.SELECTION_PROBABILITY).round(3)
    return Section(
        "Bandit selection probabilities per context",
        _png(fig, cfg.dpi, tight=False) + _table(wide.reset_index()),
    )


def _ab_section(history: list[dict[str, Any]], today: dict[str, Any], cfg: ReportSettings) -> Section:
    if "ab" not in today:
        return Section("A/B test: baseline vs bandit", _missing("A/B analysis", today.get("ab_error", "")))
    ab = today["ab"]
    header = (
        f"<p><span class=badge>{html.escape(str(ab.get('verdict')))}</span> "
        f"{html.escape(str(ab.get('message', '')))}</p>"
    )
    points = [
        dict(h["ab"], run_date=h["run_date"]) for h in history if h.get("ab", {}).get("lift") is not None
    ]
    body = header
    if points:
        frame = pd.DataFrame(points)
        fig, ax = plt.subplots(figsize=(8, 3))
        lift = frame["lift"].astype(float)
        low = frame["ci_low"].astype(float)
        high = frame["ci_high"].astype(float)
        x = np.arange(len(frame))
        ax.errorbar(x, lift, yerr=[lift - low, high - lift], fmt="o", capsize=3)
        ax.axhline(0, color="grey", lw=1)
        ax.set_title("relative CTR lift of treatment over control, 95% CI (cumulative)")
        _night_axis(ax, frame["run_date"].astype(str).tolist(), cfg.date_labels)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        body += _png(fig, cfg.dpi)
    keys = ["lift", "ci_low", "ci_high", "p_value", "srm_p_value", "looks", "enough_users"]
    body += _table(pd.DataFrame([{k: ab.get(k) for k in keys}]))
    ctr = ab.get("ctr") or {}
    if ctr:
        body += _table(pd.DataFrame(ctr).T.reset_index(names="variant"))
    return Section("A/B test: baseline vs bandit", body)


def _ope_section(lake: Lake, run_date: date, cfg: ReportSettings) -> Section:
    try:
        ope = lake.read_df(Dataset.OPE, run_date)
    except MissingDataError as exc:
        return Section("Off-policy evaluation", _missing("OPE estimates", exc))
    ope = ope.drop(columns=[C.RUN_DATE])
    fig, ax = plt.subplots(figsize=(9, 3.2))
    labels = ope[C.POLICY] + " · " + ope[C.ESTIMATOR]
    y = np.arange(len(ope))
    est = ope[C.ESTIMATE].astype(float).to_numpy()
    err = np.vstack([est - ope[C.CI_LOW].astype(float), ope[C.CI_HIGH].astype(float) - est])
    ax.errorbar(est, y, xerr=np.nan_to_num(err), fmt="o", capsize=2)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("estimated CTR per list impression (95% bootstrap CI)")
    return Section("Off-policy evaluation", _png(fig, cfg.dpi) + _table(ope))


def _alerts_section(lake: Lake, run_date: date) -> Section:
    try:
        alerts = lake.read_df(Dataset.ALERTS, run_date)
    except MissingDataError as exc:
        return Section("Alerts", _missing("monitoring alerts", exc))
    if alerts.empty:
        return Section("Alerts", "<p>No alerts tonight.</p>")
    return Section("Alerts", _table(alerts))


def _gx_section(lake: Lake, run_date: date) -> Section:
    parts = []
    if lake.exists(Dataset.REPORTS, None, GX_DOCS):
        parts.append(f'<p><a href="../{GX_DOCS}">Great Expectations Data Docs</a></p>')
    try:
        summary = lake.read_json(Dataset.VALIDATION, run_date, "summary.json")
        parts.append(f"<pre>{html.escape(_short_json(summary))}</pre>")
    except MissingDataError as exc:
        parts.append(_missing("validation summary", exc))
    return Section("Data validation", "".join(parts))


def _short_json(obj: Any, limit: int = 4000) -> str:
    import json

    text = json.dumps(obj, indent=1, default=str)
    return text if len(text) <= limit else text[:limit] + "\n..."


# ----------------------------------------------------------------------------- steps
def _history(lake: Lake, until: date) -> list[dict[str, Any]]:
    out = []
    for d in lake.run_dates(Dataset.REPORTS):
        if d <= until and lake.exists(Dataset.REPORTS, d, STATS_FILE):
            out.append(lake.read_json(Dataset.REPORTS, d, STATS_FILE))
    return out


def report(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """Render the report of ``run_date`` and refresh the index. Idempotent per run date."""
    run_date = as_run_date(run_date)
    lake = Lake(settings.home)
    today = _night_stats(lake, run_date)
    lake.write_json(Dataset.REPORTS, run_date, STATS_FILE, today)
    history = _history(lake, run_date)
    dates = [date.fromisoformat(h["run_date"]) for h in history]
    cfg = settings.report
    sections = [
        _ab_section(history, today, cfg),
        _served_section(history, today, cfg),
        _offline_section(history, cfg),
        _bandit_section(lake, dates, cfg),
        _ope_section(lake, run_date, cfg),
        _alerts_section(lake, run_date),
        _gx_section(lake, run_date),
    ]
    header = f'<nav><a href="../{INDEX_FILE}">all nights</a></nav>'
    path = lake.write_bytes(
        Dataset.REPORTS, run_date, INDEX_FILE, _page(f"deepcuts night {run_date}", header, sections)
    )
    index = build_index(settings)
    log.info("report for %s written to %s", run_date, path)
    return {"run_date": run_date.isoformat(), "report": path, "index": index["index"], "nights": len(history)}


def build_index(settings: Settings) -> dict[str, Any]:
    """``reports/index.html``: every night with its verdict and list health, newest first."""
    lake = Lake(settings.home)
    nights = [
        lake.read_json(Dataset.REPORTS, d, STATS_FILE)
        for d in lake.run_dates(Dataset.REPORTS)
        if lake.exists(Dataset.REPORTS, d, STATS_FILE)
    ]
    rows = []
    for night in reversed(nights):
        treatment = night.get("served", {}).get(Variant.TREATMENT.value, {})
        control = night.get("served", {}).get(Variant.CONTROL.value, {})
        ab = night.get("ab", {})
        rows.append(
            {
                "night": f'<a href="run_date={night["run_date"]}/">{night["run_date"]}</a>',
                "verdict": ab.get("verdict", "–"),
                "lift": ab.get("lift"),
                "long-tail share (treatment)": treatment.get("long_tail_share"),
                "long-tail share (control)": control.get("long_tail_share"),
                "genres per list (treatment)": treatment.get("genres_per_list"),
            }
        )
    table = pd.DataFrame(rows)
    body = (
        table.to_html(
            index=False, border=0, classes="t", escape=False, na_rep="–", float_format="{:.3f}".format
        )
        if rows
        else "<p class=muted>no nights reported yet</p>"
    )
    links = (
        f'<p><a href="{GX_DOCS}">Great Expectations Data Docs</a></p>'
        if lake.exists(Dataset.REPORTS, None, GX_DOCS)
        else ""
    )
    page = _page("deepcuts reports", links, [Section("Nights", body)])
    path = lake.write_bytes(Dataset.REPORTS, None, INDEX_FILE, page)
    return {"index": path, "nights": len(nights)}
