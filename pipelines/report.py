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
from deepcuts.experiment import ExperimentState
from deepcuts.pipelines.ab_analysis import (
    SCOREBOARD_LABELS,
    SCOREBOARD_METRICS,
    Status,
    Target,
    by_status,
    interval_text,
    scoreboard_headline,
    scoreboard_rows,
    targets,
)
from deepcuts.pipelines.experiment_registry import experiment_history, lake_entries, verdicts
from deepcuts.pipelines.storage import Lake, MissingDataError, as_run_date
from deepcuts.settings import ReportSettings, Settings

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
INDEX_FILE = "index.html"
GX_DOCS = "gx/index.html"
#: deepcuts.pipelines.weekly_review writes its pages under ``reports/weekly/`` and lists them in this file.
WEEKLY_DIR = "weekly"
WEEKLY_INDEX = f"{WEEKLY_DIR}/{INDEX_FILE}"
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


def _figure(fig: plt.Figure, dpi: int, shows: str, tight: bool = True) -> str:
    """A plot with its one-line caption saying what it shows."""
    return f"<figure>{_png(fig, dpi, tight)}<figcaption>{html.escape(shows)}</figcaption></figure>"


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


def _target_band(ax: plt.Axes, target: Target | None) -> None:
    """Shade the target's band (green) on a trend axis, after the data are drawn so the axis limits
    include both the data and the band; an open band runs to the edge of the axis."""
    if target is None or (target.low is None and target.high is None):
        return
    lo, hi = ax.get_ylim()
    xlim = ax.get_xlim()  # the span's sticky edges would drop the x margins and clip the end points
    edges = [v for v in (target.low, target.high) if v is not None]
    span = max(hi, *edges) - min(lo, *edges)
    lo, hi = min(lo, *edges) - 0.05 * span, max(hi, *edges) + 0.05 * span
    ax.axhspan(
        target.low if target.low is not None else lo,
        target.high if target.high is not None else hi,
        color="tab:green",
        alpha=0.12,
        lw=0,
        label="target",
    )
    ax.set_ylim(lo, hi)
    ax.set_xlim(xlim)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value))


def _integral(column: pd.Series) -> bool:
    """True when every present value of a column is a whole number and some exceed 1: counts stored as
    floats. A column of only 0s and 1s stays decimal: a share of exactly 0 must not read as a count."""
    values = [v for v in column if not _is_missing(v) and not isinstance(v, bool | np.bool_)]
    numbers = [float(v) for v in values if isinstance(v, int | float | np.number)]
    return (
        len(numbers) == len(values) > 0
        and all(x.is_integer() for x in numbers)
        and any(abs(x) > 1 for x in numbers)
    )


#: Text cells longer than this many characters wrap inside a box of bounded width (CSS ``.long``)
#: instead of stretching their column across the page (free-text reasons, messages).
LONG_TEXT = 60


def p_value_text(value: Any) -> str:
    """A p value as readers compare them: three decimals, and "<0.001" below that (never a mix of
    "0.000" and "9.58e-05" in one column)."""
    if _is_missing(value) or isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return "–"
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def _cell(value: Any, whole: bool, digits: int, floor: bool = False) -> str:
    """Text of one table cell: counts as integers, other numbers with ``digits`` decimals.

    A small non-zero number keeps three significant digits (a variance of 1e-5 is not "0.0000"), or
    with ``floor`` reads "<0.001" (for ``digits`` 3), so a column of rounded shares stays uniform."""
    if _is_missing(value):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer) or (whole and isinstance(value, float | np.floating)):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        x = float(value)
        if 0 < abs(x) < 10.0**-digits:
            bound = f"{10.0**-digits:.{digits}f}"
            return (f"<{bound}" if x > 0 else f">-{bound}") if floor else f"{x:.3g}"
        return f"{x:.{digits}f}"
    return str(value)


def _table(
    frame: pd.DataFrame,
    digits: int = 4,
    raw: tuple[str, ...] = (),
    nowrap: tuple[str, ...] = (),
    floor: bool = False,
) -> str:
    """An HTML table; every value is escaped except in the ``raw`` columns, whose cells the caller
    has built from escaped parts (links, status badges). Columns of whole numbers print as integers;
    ``nowrap`` columns (short labels such as verdicts) never break; long text wraps in a bounded box
    (``LONG_TEXT``); ``floor``: see ``_cell``."""
    if frame.empty:
        return "<p class=muted>no rows</p>"
    columns = [str(c) for c in frame.columns]
    whole = {c: _integral(frame[c]) for c in frame.columns}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for record in frame.itertuples(index=False, name=None):
        cells = []
        for col, value in zip(frame.columns, record, strict=True):
            numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
            text = str(value) if col in raw else html.escape(_cell(value, whole[col], digits, floor))
            if col not in raw and not numeric and len(text) > LONG_TEXT:
                text = f"<div class=long>{text}</div>"
            if numeric:
                cells.append(f"<td class=num>{text}</td>")
            else:
                cells.append(f"<td class=nowrap>{text}</td>" if col in nowrap else f"<td>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    body = "".join(rows)
    return f"<div class=wrap><table class=t><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _missing(what: str, error: Exception | str) -> str:
    return f"<p class=muted>{html.escape(what)} not available: {html.escape(str(error))}</p>"


def _note(text: str) -> str:
    return f"<p class=note>{html.escape(text)}</p>"


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;max-width:1220px;color:#222}}
h1{{font-size:22px}} h2{{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}}
h3{{font-size:15px;margin:16px 0 6px}}
table.t{{border-collapse:collapse;font-size:13px}} div.wrap{{overflow-x:auto;max-width:100%}}
table.t td,table.t th{{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}}
table.t th{{background:#f6f6f6}} table.t td:first-child{{white-space:nowrap}}
table.t td.num{{text-align:right;font-variant-numeric:tabular-nums}}
figure{{margin:8px 0 14px}} figcaption,.note{{color:#555;font-size:13px;max-width:1100px}}
.muted{{color:#888}} .badge{{display:inline-block;padding:2px 8px;border-radius:10px;background:#eef}}
.met{{color:#16643a;font-weight:600}} .off{{color:#fff;background:#c62828;padding:1px 6px;border-radius:4px;
font-weight:600;white-space:nowrap}} .met{{white-space:nowrap}} .unknown{{color:#8a6d00;font-weight:600}}
table.t td.nowrap{{white-space:nowrap}} .long{{max-width:36em;white-space:normal;overflow-wrap:anywhere}}
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
    lake.require_inputs(run_date, Dataset.SERVED_LISTS, Dataset.ITEMS)
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
_STATUS_HTML = {
    Status.MET: "<span class=met>&#10003; met</span>",
    Status.OFF: "<span class=off>&#10007; OFF TARGET</span>",
    Status.UNKNOWN: "<span class=unknown>not measurable yet</span>",
}


def _scoreboard_table(board: dict[str, dict[str, Any]]) -> str:
    rows = [dict(row, status=_STATUS_HTML[row["status"]]) for row in scoreboard_rows(board)]
    return _table(pd.DataFrame(rows), raw=("status",))


def _scoreboard_section(history: list[dict[str, Any]], today: dict[str, Any], settings: Settings) -> Section:
    title = "Scoreboard: the product's targets"
    board = today.get("ab", {}).get("scoreboard")
    if not board:
        why = today.get("ab_error") or "the A/B analysis of this night has no scoreboard"
        return Section(title, _missing("scoreboard", why))
    css = (
        "off"
        if by_status(board)[Status.OFF]
        else "met"
        if board and all(e.get("met") for e in board.values())
        else "unknown"
    )
    headline = f"<p><span class={css}>{html.escape(scoreboard_headline(board))}</span></p>"
    body = headline + _scoreboard_table(board)
    body += _note(
        "Each target judges the treatment (bandit + deep-cut re-ranker); control is the baseline arm "
        "served as is. Lift and ratio CIs are 95% delta-method intervals with users as the unit. "
        "Niche genres: " + ", ".join(settings.rerank.niche_genres) + "."
    )
    body += _scoreboard_trends(history, settings)
    return Section(title, body)


def _scoreboard_trends(history: list[dict[str, Any]], settings: Settings) -> str:
    nights = [h for h in history if h.get("ab", {}).get("scoreboard")]
    if not nights:
        return ""
    cfg = settings.report
    goals = targets(settings)
    labels = [h["run_date"] for h in nights]
    x = np.arange(len(nights))
    fig, axes = plt.subplots(1, len(SCOREBOARD_METRICS), figsize=(15, 3.1))
    ylabels = {
        "ctr_lift": "relative CTR lift",
        "long_tail_share": "long-tail share",
        "genres_per_list": "genres per list",
        "mean_rating": "mean rating",
        "niche_click_ratio": "treatment / control",
    }
    for ax, name in zip(axes, SCOREBOARD_METRICS, strict=True):
        entries = [h["ab"]["scoreboard"].get(name, {}) for h in nights]
        if name in ("ctr_lift", "niche_click_ratio"):
            value = np.array([_float(e.get("value")) for e in entries])
            low = np.array([_float(e.get("ci_low")) for e in entries])
            high = np.array([_float(e.get("ci_high")) for e in entries])
            err = np.nan_to_num(np.vstack([value - low, high - value]), nan=0.0)
            ax.errorbar(x, value, yerr=err, fmt="o", capsize=3, color="tab:orange", label="treatment, 95% CI")
        else:
            for variant, color in (
                (Variant.CONTROL.value, "tab:blue"),
                (Variant.TREATMENT.value, "tab:orange"),
            ):
                ax.plot(x, [_float(e.get(variant)) for e in entries], marker="o", color=color, label=variant)
        _target_band(ax, goals[name])
        ax.set_title(SCOREBOARD_LABELS[name], fontsize=10)
        ax.set_ylabel(ylabels[name], fontsize=8)
        ax.set_xlabel("run date", fontsize=8)
        _night_axis(ax, labels, cfg.date_labels)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
    # one legend above the panels: inside them it hides points
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    return _figure(
        fig,
        cfg.dpi,
        "The scoreboard night by night; the green band is the target. CTR lift and niche click ratio "
        "are treatment over control with 95% CIs, on the experiment's cumulative data; the list metrics "
        "are the lists users saw that night; the mean rating is cumulative.",
    )


def _float(value: Any) -> float:
    return math.nan if _is_missing(value) else float(value)


def _offline_section(history: list[dict[str, Any]], cfg: ReportSettings) -> Section:
    title = "Offline metrics per arm"
    rows = [dict(r, run_date=h["run_date"]) for h in history for r in h.get("offline", [])]
    if not rows:
        return Section(title, _missing("offline evaluation", "no nights evaluated yet"))
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
        fig, ax = plt.subplots(figsize=(9, 3.2))
        x = np.arange(len(pivot))
        for arm in pivot.columns:
            ax.plot(x, pivot[arm].to_numpy(), marker="o", label=arm)
        _night_axis(ax, [str(d) for d in pivot.index], cfg.date_labels)
        ax.set_xlabel("run date")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8, ncol=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: no overlap
        parts.append(
            _figure(
                fig,
                cfg.dpi,
                f"{metric} per arm: each night, yesterday's top-k candidates scored against the ratings "
                "that arrived since (higher = more accurate).",
            )
        )
    last = frame[frame["run_date"] == frame["run_date"].max()]
    parts.append(
        _note(f"Latest night ({last['run_date'].iloc[0]}): one table per list source, metric by arm.")
    )
    sources = {
        "previous_candidates": "Yesterday's candidates against today's ratings (accuracy)",
        "previous_reranked": "Yesterday's re-ranked lists against today's ratings (accuracy)",
        "candidates": "Today's candidates (beyond accuracy)",
        "reranked": "Today's re-ranked lists (beyond accuracy)",
    }
    for source in [
        *[s for s in sources if s in set(last[C.LIST_SOURCE])],
        *sorted(set(last[C.LIST_SOURCE]) - set(sources)),
    ]:
        part = last[last[C.LIST_SOURCE] == source]
        # transposed (metrics as rows, arms as columns) so that it fits a 1280 px screen
        wide = part.pivot_table(index=C.METRIC, columns=C.ARM, values=C.VALUE, aggfunc="mean")
        wide = wide.dropna(how="all")
        # what the table is first; the list_source value (eval/offline) after it, for the analyst
        code = html.escape(str(source))
        what = (
            f"{html.escape(sources[source])} <span class=muted>({code})</span>" if source in sources else code
        )
        parts.append(f"<h3>{what}</h3>")
        parts.append(_table(wide.reset_index(), digits=3))
    return Section(title, "".join(parts))


def _served_section(history: list[dict[str, Any]], today: dict[str, Any], settings: Settings) -> Section:
    title = "Served list diversity (tonight's published lists)"
    if "served" not in today:
        return Section(title, _missing("served lists", today.get("served_error", "")))
    cfg = settings.report
    goals = targets(settings)
    table = pd.DataFrame(today["served"]).T.reset_index(names="variant")
    series = [(h["run_date"], v, s) for h in history for v, s in h.get("served", {}).items()]
    frame = pd.DataFrame(
        [{"run_date": d, "variant": v, **s} for d, v, s in series],
    )
    nights = sorted(frame["run_date"].unique())
    frame["x"] = np.searchsorted(nights, frame["run_date"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.1))
    panels = [
        ("long_tail_share", "long-tail share", "share of long-tail slots", goals["long_tail_share"]),
        ("genres_per_list", "genres per list", "distinct genres", goals["genres_per_list"]),
        ("coverage", "catalog coverage", "distinct items / catalog", None),
    ]
    for ax, (metric, name, ylabel, target) in zip(axes, panels, strict=True):
        for variant, rows in frame.groupby("variant"):
            ax.plot(rows["x"], rows[metric], marker="o", label=variant)
        _target_band(ax, target)
        ax.set_title(name)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("run date")
        _night_axis(ax, nights, cfg.date_labels)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    shows = (
        "Diversity of the lists each night published for the next day, over all users of each variant "
        "(every slot counts, whether or not the user visits); green = target band. The scoreboard's "
        "long-tail share is the same measure on the lists users saw on the run date (the previous "
        "night's publication)."
    )
    return Section(title, _figure(fig, cfg.dpi, shows) + _table(table, digits=3))


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
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.5 * rows), squeeze=False, sharey=True)
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
    for ax in axes[:, 0]:
        ax.set_ylabel("P(select)", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("run date", fontsize=8)
    for ax in axes.ravel()[len(contexts) :]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=6, fontsize=8)
    # margins by hand: cropping this 12-panel figure to its content would draw it twice
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.09, top=0.9, hspace=0.7, wspace=0.12)
    last = policy[policy[C.RUN_DATE] == policy[C.RUN_DATE].max()]
    wide = last.pivot_table(index="context", columns=C.ARM, values=C.SELECTION_PROBABILITY).round(3)
    shows = (
        "Per context (segment / daypart), the probability that the bandit's policy serves each arm to "
        "a treatment user the next day (Thompson sampling with an exploration floor)."
    )
    return Section(
        "Bandit selection probabilities per context",
        _figure(fig, cfg.dpi, shows, tight=False) + _table(wide.reset_index(), digits=3),
    )


def _selection_of(assign: Any) -> dict[str, dict[str, float]]:
    """``{context: {arm: p}}`` of a refresh's assign summary, keeping only string keys and probabilities
    in [0, 1] (the summary is a file: hostile until validated)."""
    probs = assign.get("selection_probability") if isinstance(assign, dict) else None
    out: dict[str, dict[str, float]] = {}
    for ctx, arms in (probs if isinstance(probs, dict) else {}).items():
        if not isinstance(ctx, str) or not isinstance(arms, dict):
            continue
        valid = {
            arm: float(p)
            for arm, p in arms.items()
            if isinstance(arm, str) and isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 1
        }
        if valid:
            out[ctx] = valid
    return out


def _intraday_section(lake: Lake, run_date: date) -> Section:
    """The policy's trajectory within ``run_date``: one row per intraday refresh of that day
    (pipelines/intraday.py), i.e. what the app served between last night's publish and tonight's, and
    per context the selection probability of the arm that leads at the end of the day, refresh by
    refresh."""
    from deepcuts.pipelines import intraday

    title = "Within the day: intraday refreshes"
    refreshes = intraday.read_summaries(lake, run_date)
    if not refreshes:
        return Section(
            title, _note("No intraday refresh ran on this day: the night's policy served all day.")
        )
    night = lake.latest_before(Dataset.BANDIT_POLICY, run_date)
    base: dict[str, dict[str, float]] = {}
    if night is not None:
        cols = [C.SEGMENT, C.DAYPART, C.ARM, C.SELECTION_PROBABILITY]
        for seg, dp, arm, p in lake.read_df(Dataset.BANDIT_POLICY, night, columns=cols).itertuples(
            index=False, name=None
        ):
            base.setdefault(f"{seg}/{dp}", {})[str(arm)] = float(p)
    rows = []
    trajectory: dict[str, dict[str, float]] = {}  # slot end "HH:MM" -> the refresh's selection
    for slot, steps in refreshes.items():
        ingest, update, assign, publish = (
            doc if isinstance(doc, dict) else {} for doc in (steps.get(k) for k in intraday.STEP_NAMES)
        )
        probs = _selection_of(assign)
        top = [max(arms.values()) for arms in probs.values()]
        moves = [
            abs(p - base[ctx][arm])
            for ctx, arms in probs.items()
            for arm, p in arms.items()
            if arm in base.get(ctx, {})
        ]
        ends = str(ingest.get("slot_end", ""))[11:16]
        if probs:
            trajectory[ends or f"slot {slot}"] = probs
        rows.append(
            {
                "slot": slot,
                "slot ends (UTC)": ends,
                "events so far": ingest.get("events"),
                "new events": ingest.get("new_events"),
                "trials so far": update.get("trials"),
                "assignment": assign.get("status"),
                "publish": publish.get("status"),
                "list version": publish.get("list_version"),
                "mean top P(select)": float(np.mean(top)) if top else None,
                "largest move vs night": max(moves) if moves else None,
                "warnings": ", ".join(
                    str(a.get("check_name")) for a in ingest.get("alerts", []) if isinstance(a, dict)
                ),
            }
        )
    text = (
        "Each refresh re-estimates the posterior from last night's snapshot and the day's feedback "
        "so far and, when the evidence changed, publishes a re-assignment (a new list version). "
        "'mean top P(select)' is the mean over contexts of the largest selection probability; "
        "'largest move' the largest change of any selection probability against the night's policy."
    )
    body = _note(text) + _table(pd.DataFrame(rows), digits=3)
    if trajectory:
        body += _note(
            "Per context: the selection probability of the arm the last refresh of the day favours, in "
            "the night's policy and after each refresh that re-assigned (columns: the refresh slot's end, "
            "UTC). A context that learns within the day shows it rising from left to right."
        ) + _table(_trajectory_frame(base, trajectory), digits=3)
    return Section(title, body)


def _trajectory_frame(
    base: dict[str, dict[str, float]], trajectory: dict[str, dict[str, dict[str, float]]]
) -> pd.DataFrame:
    """One row per context: the end-of-day leading arm, its probability in the night's policy and
    after each refresh (None where a refresh did not list it)."""
    last = list(trajectory.values())[-1]
    rows = []
    for ctx in sorted(set(base) | set(last)):
        final = last.get(ctx) or base.get(ctx) or {}
        if not final:
            continue
        arm = max(final, key=lambda a: final[a])
        row: dict[str, Any] = {"context": ctx, "arm (end of day)": arm, "night": base.get(ctx, {}).get(arm)}
        for ends, probs in trajectory.items():
            row[ends] = probs.get(ctx, {}).get(arm)
        rows.append(row)
    return pd.DataFrame(rows)


#: The A/B verdict's per-variant CTR keys (deepcuts.pipelines.ab_analysis), as a reader names them.
CTR_LABELS = {
    "n_users": "users",
    "impressions": "item impressions",
    "clicks": "clicks",
    "ctr": "CTR",
    "se": "std. error",
    "variance": "variance (of the CTR)",
}
#: The verdict's per-variant niche keys, in table order, as a reader names them.
NICHE_LABELS = {
    "exposed_users": "exposed users",
    "niche_impressions": "niche impressions",
    "niche_clicks": "niche clicks",
    "niche_clicks_per_user": "niche clicks per exposed user",
    "niche_clicks_per_user_se": "std. error",
}


def _ab_section(today: dict[str, Any]) -> Section:
    title = "A/B test: baseline vs bandit"
    if "ab" not in today:
        return Section(title, _missing("A/B analysis", today.get("ab_error", "")))
    ab = today["ab"]
    body = (
        f"<p><span class=badge>verdict: {html.escape(str(ab.get('verdict')))}</span> "
        f"{html.escape(str(ab.get('message', '')))}</p>"
    )
    # the verdict's keys, as a reader names them
    labels = {
        "lift": "CTR lift (relative)",
        "ci_low": "CI low",
        "ci_high": "CI high",
        "p_value": "p value (always valid)",
        "srm_p_value": "sample ratio p value",
        "looks": "looks",
        "enough_users": "enough users",
    }
    p_values = ("p_value", "srm_p_value")
    summary = {label: p_value_text(ab.get(k)) if k in p_values else ab.get(k) for k, label in labels.items()}
    body += _table(pd.DataFrame([summary]))
    ctr = ab.get("ctr") or {}
    if ctr:
        body += "<h3>CTR per variant (clicks / item impressions, cumulative; users are the unit)</h3>"
        per_ctr = pd.DataFrame(ctr).T
        per_ctr = per_ctr[
            [k for k in CTR_LABELS if k in per_ctr] + [k for k in per_ctr if k not in CTR_LABELS]
        ]
        body += _table(per_ctr.rename(columns=CTR_LABELS).reset_index(names="variant"))
    niche = ab.get("niche") or {}
    if niche:
        per_variant = pd.DataFrame(
            {label: niche[key] for key, label in NICHE_LABELS.items() if isinstance(niche.get(key), dict)}
        ).reset_index(names="variant")
        body += "<h3>Niche discovery (cumulative)</h3>" + _table(per_variant)
        body += _note(
            "Niche items have at least one niche genre (rerank.niche_genres); an exposed user had at "
            "least one impression. Treatment / control niche clicks per exposed user: "
            + interval_text("niche_click_ratio", {"value": niche.get("ratio"), **niche})
            + "."
        )
    return Section(title, body)


def experiment_rows(lake: Lake, until: date | None, settings: Settings) -> list[dict[str, Any]]:
    """Every experiment with its dates, treatment shares, decision and verdicts (the registry's lake
    copy and the A/B verdicts of the nights up to ``until``)."""
    default = ExperimentState.from_settings(settings.ab)
    return experiment_history(lake_entries(lake), default, verdicts(lake, until))


def experiments_table(rows: list[dict[str, Any]]) -> str:
    """The experiments table of the report, the index and the weekly review, with its reading note."""
    return _table(pd.DataFrame(rows), nowrap=("verdict", "verdict at decision")) + _note(
        "Run dates: a decision applies from its 'from' / 'until' run date's assignments on. Verdict: the "
        "last analysed night's, frozen once the experiment is shipped or stopped (final); 'verdict at "
        "decision' is the one the operator saw (`deepcuts experiment status` shows the full log)."
    )


def _experiments_section(lake: Lake, until: date | None, settings: Settings) -> Section:
    return Section("Experiments", experiments_table(experiment_rows(lake, until, settings)))


def _ope_section(lake: Lake, run_date: date, cfg: ReportSettings, list_length: int) -> Section:
    title = "Off-policy evaluation"
    try:
        ope = lake.read_df(Dataset.OPE, run_date)
    except MissingDataError as exc:
        return Section(title, _missing("OPE estimates", exc))
    ope = ope.drop(columns=[C.RUN_DATE])
    # A click rate lies in [0, 1]; the bootstrap interval of an IPS estimate can leave it (weights are
    # unbounded). Only the displayed bounds are clipped: the stored estimates stay as computed.
    for col in (C.CI_LOW, C.CI_HIGH):
        ope[col] = ope[col].astype(float).clip(0.0, 1.0)
    if C.ESS in ope:  # an effective sample size is a count of logged impressions: no decimals
        ope[C.ESS] = ope[C.ESS].astype(float).round().astype("Int64")
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.22 * len(ope)))
    labels = ope[C.POLICY] + " · " + ope[C.ESTIMATOR]
    y = np.arange(len(ope))
    est = ope[C.ESTIMATE].astype(float).to_numpy()
    # an estimate outside its clipped interval (IPS above 1) draws no arm on that side
    err = np.clip(np.vstack([est - ope[C.CI_LOW], ope[C.CI_HIGH] - est]), 0.0, None)
    ax.errorbar(est, y, xerr=np.nan_to_num(err), fmt="o", capsize=2)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("estimated list click rate: P(at least one click on a list impression), 95% bootstrap CI")
    ax.set_ylabel("target policy · estimator")
    example = 1 - (1 - 0.09) ** list_length
    units = (
        "Units: the reward here is per list impression, the bandit's reward: one visit of a user to one "
        f"list of {list_length} items counts 1 when at least one of its items was clicked. The A/B CTR "
        "is per item impression (clicks / items shown). With independent clicks the list rate is about "
        f"1 - (1 - item CTR)^{list_length}: an item CTR of 0.09 gives a list rate of {example:.2f}, so "
        "the two are not comparable number for number. Only treatment traffic is logged with "
        "propensities, so these estimates are about the bandit's policies."
    )
    shows = (
        "What the click rate per list impression would have been on the run date's treatment traffic "
        "under each target policy (logging = what served it, posterior = tomorrow's policy, arm:X = "
        "always arm X), by IPS, SNIPS and doubly robust estimators. Intervals are shown clipped to "
        "[0, 1], the range of a rate (an IPS bound can exceed 1); the stored estimates are unclipped."
    )
    shown = ope.rename(
        columns={
            C.CI_LOW: "CI low (clipped)",
            C.CI_HIGH: "CI high (clipped)",
            C.N_TRIALS: "list impressions",
            C.ESS: "effective sample size",
            C.THIN_SUPPORT: "thin support",
        }
    )
    return Section(title, _note(units) + _figure(fig, cfg.dpi, shows) + _table(shown))


def _alerts_section(lake: Lake, run_date: date) -> Section:
    try:
        alerts = lake.read_df(Dataset.ALERTS, run_date)
    except MissingDataError as exc:
        return Section("Alerts", _missing("monitoring alerts", exc))
    if alerts.empty:
        return Section("Alerts", "<p>No alerts tonight.</p>")
    return Section("Alerts", _table(alerts.drop(columns=[C.RUN_DATE], errors="ignore")))


def _params(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(values.items()))


def _tuning_section(lake: Lake, run_date: date) -> Section:
    """The hyperparameters tonight's arms were trained with, from the newest weekly tuning (issue 18)."""
    from deepcuts.pipelines.tune import latest_tuning

    doc = latest_tuning(lake, run_date)
    if doc is None:
        return Section("Tuning", "<p class=muted>No tuning yet: the arms use the settings' values.</p>")
    rows = [
        {
            "arm": arm,
            "chosen": _params(entry["params"]),
            "validation": entry["ndcg"],
            "default": _params(entry["default_params"]),
            "default validation": entry["default_ndcg"],
        }
        for arm, entry in doc.get("arms", {}).items()
    ]
    note = _note(
        f"Tuned on {doc.get('run_date')} ({doc.get('validation_protocol')} validation inside the data, "
        f"{doc.get('metric')}); train applies the newest tuning at or before its run date."
    )
    return Section("Tuning", note + _table(pd.DataFrame(rows)))


def _gx_section(lake: Lake, run_date: date) -> Section:
    parts = []
    if lake.exists(Dataset.REPORTS, None, GX_DOCS):
        parts.append(
            f'<p><a href="../{GX_DOCS}">Great Expectations Data Docs</a> (every expectation of every '
            "validation run, with the failing values)</p>"
        )
    try:
        summary = lake.read_json(Dataset.VALIDATION, run_date, "summary.json")
    except MissingDataError as exc:
        parts.append(_missing("validation summary", exc))
        return Section("Data validation", "".join(parts))
    batches, facts = _validation_tables(summary)
    if facts:
        parts.append(_note(" · ".join(f"{name}: {_cell(value, False, 4)}" for name, value in facts.items())))
    if batches is not None:
        parts.append(_table(batches))
    return Section("Data validation", "".join(parts))


def _validation_tables(summary: Any) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The ingest validation summary as a table with one column per validated table (every entry that
    counts ``rows_in``) and one row per field, and the remaining top-level facts (name -> value)."""
    if not isinstance(summary, dict):
        return None, {"summary": _plain(summary)}
    batches: dict[str, dict[str, Any]] = {}
    facts: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict) and "rows_in" in value:
            batches[str(key)] = {k: _plain(v) for k, v in value.items()}
        else:
            facts[str(key)] = _plain(value)
    if not batches:
        return None, facts
    frame = pd.DataFrame(batches)
    first = [f for f in ("status", "rows_in", "accepted", "quarantined", "reasons") if f in frame.index]
    frame = frame.reindex(first + [f for f in frame.index if f not in first])
    return frame.reset_index(names="field"), facts


def _plain(value: Any) -> Any:
    """A nested value as short readable text (numbers stay numbers)."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list | tuple):
        return ", ".join(str(_plain(v)) for v in value) or "–"
    return value


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
        _scoreboard_section(history, today, settings),
        _ab_section(today),
        _experiments_section(lake, run_date, settings),
        _served_section(history, today, settings),
        _offline_section(history, cfg),
        _bandit_section(lake, dates, cfg),
        _intraday_section(lake, run_date),
        _ope_section(lake, run_date, cfg, settings.rerank.list_length),
        _alerts_section(lake, run_date),
        _gx_section(lake, run_date),
        _tuning_section(lake, run_date),
    ]
    header = f'<nav><a href="../{INDEX_FILE}">all nights</a></nav>'
    path = lake.write_bytes(
        Dataset.REPORTS, run_date, INDEX_FILE, _page(f"deepcuts night {run_date}", header, sections)
    )
    lake.mark_all_complete()
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
        board = ab.get("scoreboard") or {}
        day = html.escape(str(night["run_date"]))
        rows.append(
            {
                # index.html named: a folder link opens a directory listing on disk (file://)
                "night": f'<a href="run_date={day}/{INDEX_FILE}">{day}</a>',
                "verdict": ab.get("verdict", "–"),
                "CTR lift": interval_text("ctr_lift", {"value": ab.get("lift")}),
                "scoreboard": scoreboard_headline(board) if board else "–",
                "long-tail share of published lists (treatment)": treatment.get("long_tail_share"),
                "long-tail share of published lists (control)": control.get("long_tail_share"),
                "genres per published list (treatment)": treatment.get("genres_per_list"),
            }
        )
    body = (
        _table(pd.DataFrame(rows), digits=3, raw=("night",), nowrap=("verdict",), floor=True)
        + _note(
            "Long-tail share and genres per list: the lists each night published for the next day, over "
            "all users of the variant (the report's 'Served list diversity'). The scoreboard inside each "
            "night's report judges the lists users saw that night, published the night before."
        )
        if rows
        else "<p class=muted>no nights reported yet</p>"
    )
    pages = [
        f'<a href="{href}">{text}</a>'
        for href, text in (
            (WEEKLY_INDEX, "Weekly reviews"),
            (GX_DOCS, "Great Expectations Data Docs"),
        )
        if lake.exists(Dataset.REPORTS, None, href)
    ]
    links = f"<nav>{''.join(pages)}</nav>" if pages else ""
    sections = [Section("Nights", body), _experiments_section(lake, None, settings)]
    page = _page("deepcuts reports", links, sections)
    path = lake.write_bytes(Dataset.REPORTS, None, INDEX_FILE, page)
    return {"index": path, "nights": len(nights)}
