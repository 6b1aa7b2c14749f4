"""Nightly step ``monitor``: health checks of the night's output and inputs, alerts, and the publish veto.

``monitor(settings, run_date)`` computes every check of docs/monitoring.md from the lake, writes them all
to ``monitor/checks`` and the failed ones to ``monitor/alerts`` (Parquet), replaces the run date's
monitor alerts in the serving database's ``alerts`` table, and sends the alerts (log always; webhook /
e-mail when configured, :func:`pipelines.alerting.send_alerts`). A failed check is ``critical`` when its
name is in ``monitor.critical_checks`` and ``warning`` otherwise; an unacknowledged critical alert makes
the publish of that run date refuse to switch, so the app keeps yesterday's version.

A missing upstream input is a finding (check ``<input>_present``), never a crash: the checks that need it
are ``skipped`` and the rest still run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from deepcuts.contracts import ALERTS_SCHEMA, MONITOR_CHECKS_SCHEMA, C, Dataset, EventType, Variant
from deepcuts.progress import get_logger
from deepcuts.settings import Settings
from pipelines import serving
from pipelines.alerting import send_alerts
from pipelines.storage import Lake, MissingDataError, as_run_date

log = get_logger(__name__)

OK, WARNING, CRITICAL, SKIPPED = "ok", "warning", "critical", "skipped"
#: The checks whose missing input is itself the finding.
INPUTS: dict[str, Dataset] = {
    "served_lists_present": Dataset.SERVED_LISTS,
    "items_present": Dataset.ITEMS,
    "policy_present": Dataset.BANDIT_POLICY,
    "feedback_present": Dataset.FEEDBACK_EVENTS,
    "validation_present": Dataset.VALIDATION,
}


@dataclass(frozen=True)
class Check:
    """One check's verdict. ``passed=None`` means not judged (skipped)."""

    name: str
    category: str
    passed: bool | None
    value: float | None
    threshold: str
    message: str


# --------------------------------------------------------------------------- metrics (pure)
def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative exposure counts (zeros included: unexposed catalog items).

    G = sum_i (2i - n - 1) x_(i) / (n * sum_i x_i), with x_(1) <= ... <= x_(n) and i = 1..n.
    0 = every item equally exposed; (n - 1) / n = all exposure on one item. 0 when nothing is exposed.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.size
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def bayesian_quality(sums: pd.Series, counts: pd.Series, prior_weight: float) -> tuple[pd.Series, float]:
    """Shrunk mean rating per item: q_i = (sum_i + m * mu) / (n_i + m), mu = global mean rating.

    Returns (q indexed like ``sums``, mu).
    """
    total_n = float(counts.sum())
    mu = float(sums.sum()) / total_n if total_n else float("nan")
    return (sums + prior_weight * mu) / (counts + prior_weight), mu


def scale_5pt(value: float, rating_min: float, rating_max: float) -> float:
    """Map a value on the 1..5 scale linearly onto rating_min..rating_max."""
    return rating_min + (value - 1.0) * (rating_max - rating_min) / 4.0


def diversity_metrics(served: pd.DataFrame, items: pd.DataFrame) -> dict[str, float]:
    """Long-tail share of served slots, mean distinct genres per (user, daypart) list, catalog coverage
    (distinct served items / catalog items) and the Gini of exposure over the catalog."""
    key = [C.USER_ID, C.DAYPART]
    out = {"long_tail_share": float(served[C.IS_LONG_TAIL].astype(bool).mean()) if len(served) else math.nan}
    genres = items[[C.ITEM_ID, C.GENRES]].explode(C.GENRES).dropna(subset=[C.GENRES])
    per_slot = served[[*key, C.ITEM_ID]].merge(genres, on=C.ITEM_ID, how="left")
    per_list = per_slot.groupby(key)[C.GENRES].nunique()
    out["genres_per_list"] = float(per_list.mean()) if len(per_list) else math.nan
    catalog = pd.Index(items[C.ITEM_ID].unique())
    exposure = (
        served[C.ITEM_ID].value_counts().reindex(catalog.union(served[C.ITEM_ID].unique()), fill_value=0)
    )
    out["coverage"] = float(served[C.ITEM_ID].nunique() / len(catalog)) if len(catalog) else math.nan
    out["gini"] = gini(exposure.to_numpy())
    return out


def product_lists(served: pd.DataFrame) -> pd.DataFrame:
    """The deep-cut product's lists: the treatment variant (control serves the un-re-ranked baseline
    arm by design, so its diversity and quality are the A/B comparison, not a health problem).
    All lists when nobody is in treatment."""
    treatment = served[served[C.VARIANT] == Variant.TREATMENT.value]
    return treatment if len(treatment) else served


def _which(product: pd.DataFrame, served: pd.DataFrame) -> str:
    return "treatment-list" if len(product) < len(served) else "served"


def ope_insane(ope: pd.DataFrame) -> np.ndarray:
    """Rows of an OPE table that cannot be right: a non-finite estimate without the thin-support flag,
    a SNIPS estimate outside [0, 1] (it is a weighted mean of 0/1 rewards), or ``ci_low > ci_high``.
    IPS and DR may legitimately leave [0, 1] on small samples, so their range is not judged."""
    est, lo, hi = (ope[c].astype(float).to_numpy() for c in (C.ESTIMATE, C.CI_LOW, C.CI_HIGH))
    thin = ope[C.THIN_SUPPORT].astype(bool).to_numpy()
    snips = (ope[C.ESTIMATOR] == "snips").to_numpy()
    finite = np.isfinite(est)
    bad = ~finite & ~thin
    bad |= finite & snips & ((est < -1e-12) | (est > 1 + 1e-12))
    bad |= np.isfinite(lo) & np.isfinite(hi) & (lo > hi + 1e-12)
    return bad


# --------------------------------------------------------------------------- reading the lake
def _read(lake: Lake, dataset: Dataset, run_date: date, **kwargs: Any) -> pd.DataFrame | None:
    lake.require_inputs(run_date, dataset, missing_ok=True)  # missing: a check fails; incomplete: an error
    try:
        return lake.read_df(dataset, run_date, **kwargs)
    except MissingDataError:
        return None


def _items_upto(lake: Lake, run_date: date) -> pd.DataFrame | None:
    days = [d for d in lake.run_dates(Dataset.ITEMS) if d <= run_date]
    if not days:
        return None
    frames = [lake.read_df(Dataset.ITEMS, d, columns=[C.ITEM_ID, C.GENRES]) for d in days]
    return pd.concat(frames, ignore_index=True).drop_duplicates(C.ITEM_ID, keep="last")


def _item_rating_stats(lake: Lake, run_date: date) -> pd.DataFrame | None:
    """Per item: sum and count of ratings in the history as of ``run_date`` (the newest interactions
    partition at or before it: partitions are cumulative snapshots, see pipelines/ingest.py)."""
    days = [d for d in lake.run_dates(Dataset.INTERACTIONS) if d <= run_date]
    if not days:
        return None
    table = lake.read_table(Dataset.INTERACTIONS, days[-1], columns=[C.ITEM_ID, C.RATING])
    agg = table.group_by(C.ITEM_ID).aggregate([(C.RATING, "sum"), (C.RATING, "count")]).to_pandas()
    stats = agg.set_index(C.ITEM_ID)[[f"{C.RATING}_sum", f"{C.RATING}_count"]]
    return stats.rename(columns={f"{C.RATING}_sum": "sum", f"{C.RATING}_count": "count"})


def _feedback_counts(lake: Lake, day: date) -> dict[str, Any] | None:
    """Events, impressions, clicks, rating count/sum and newest event time of one feedback partition."""
    try:
        table = lake.read_table(Dataset.FEEDBACK_EVENTS, day, columns=[C.EVENT_TYPE, C.RATING, C.EVENT_TS])
    except MissingDataError:
        return None
    kinds = table.column(C.EVENT_TYPE)
    ratings = table.filter(pc.equal(kinds, EventType.RATING.value)).column(C.RATING)
    newest = pc.max(table.column(C.EVENT_TS)).as_py() if table.num_rows else None
    return {
        "events": table.num_rows,
        "impressions": int(pc.sum(pc.equal(kinds, EventType.IMPRESSION.value)).as_py() or 0),
        "clicks": int(pc.sum(pc.equal(kinds, EventType.CLICK.value)).as_py() or 0),
        "ratings": int(pc.count(ratings).as_py()),
        "rating_sum": float(pc.sum(ratings).as_py() or 0.0),
        "newest": newest,
    }


def _validation_summaries(lake: Lake, run_date: date) -> list[dict[str, Any]]:
    """Every JSON document in the run date's ``validation`` partition."""
    folder = lake.partition_dir(Dataset.VALIDATION, run_date)
    if lake.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    docs = []
    for info in lake.fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
        rel = info.path[len(folder) + 1 :]
        if info.type == pafs.FileType.File and rel.endswith(".json") and not rel.startswith((".", "_")):
            docs.append(lake.read_json(Dataset.VALIDATION, run_date, rel))
    return docs


def quarantine_by_kind(doc: Any) -> dict[str, tuple[int, int]]:
    """(rows_in, quarantined) per top-level key of a validation summary that holds batch counts
    (``items``, ``interactions``, ``feedback`` in ingest's ``summary.json``)."""
    if not isinstance(doc, dict):
        return {}
    out = {}
    for key, value in doc.items():
        rows_in, quarantined = quarantine_counts(value)
        if rows_in:
            out[str(key)] = (rows_in, quarantined)
    return out


def quarantine_counts(doc: Any) -> tuple[int, int]:
    """Sum ``rows_in`` and ``quarantined`` over every batch summary found anywhere in a validation
    document (``Outcome.summary()`` dicts, possibly nested per kind)."""
    if isinstance(doc, dict):
        if "rows_in" in doc and "quarantined" in doc:
            return int(doc["rows_in"] or 0), int(doc["quarantined"] or 0)
        pairs = [quarantine_counts(v) for v in doc.values()]
    elif isinstance(doc, list):
        pairs = [quarantine_counts(v) for v in doc]
    else:
        return 0, 0
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


# --------------------------------------------------------------------------- the checks
def _band(
    name: str, category: str, value: float | None, low: float | None, high: float | None, what: str
) -> Check:
    if value is None or not math.isfinite(value):
        return Check(name, category, None, None, _bounds(low, high), f"{what}: not computable")
    passed = (low is None or value >= low) and (high is None or value <= high)
    verdict = "inside" if passed else "OUTSIDE"
    return Check(
        name,
        category,
        passed,
        float(value),
        _bounds(low, high),
        f"{what} = {value:.4g}, {verdict} {_bounds(low, high)}",
    )


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def _skip(name: str, category: str, threshold: str, why: str) -> Check:
    return Check(name, category, None, None, threshold, f"skipped: {why}")


def run_checks(settings: Settings, lake: Lake, run_date: date) -> list[Check]:
    """Compute every check for ``run_date`` (pure reads; nothing is written)."""
    cfg = settings.monitor
    checks: list[Check] = []
    served = _read(lake, Dataset.SERVED_LISTS, run_date)
    items = _items_upto(lake, run_date)
    policy = _read(lake, Dataset.BANDIT_POLICY, run_date)
    feedback = _feedback_counts(lake, run_date)
    validation = _validation_summaries(lake, run_date)
    present = {
        "served_lists_present": served is not None and len(served) > 0,
        "items_present": items is not None and len(items) > 0,
        "policy_present": policy is not None and len(policy) > 0,
        "feedback_present": feedback is not None,
        "validation_present": bool(validation),
    }
    for name, ok in present.items():
        dataset = INPUTS[name]
        checks.append(
            Check(
                name,
                "inputs",
                ok,
                1.0 if ok else 0.0,
                "present",
                f"{dataset.value} for {run_date} is "
                + (
                    "present"
                    if ok
                    else f"MISSING (looked in {lake.partition_dir(dataset, run_date)}); "
                    "run the step that writes it"
                ),
            )
        )

    # diversity health -------------------------------------------------------------------------------
    div_names = ("long_tail_share", "genres_per_list", "coverage", "gini")
    if served is not None and len(served) and items is not None and len(items):
        product = product_lists(served)
        m = diversity_metrics(product, items)
        whole = diversity_metrics(served, items)
        m["coverage"], m["gini"] = whole["coverage"], whole["gini"]
        checks += [
            _band(
                "long_tail_share",
                "diversity",
                m["long_tail_share"],
                cfg.long_tail_min,
                cfg.long_tail_max,
                f"share of {_which(product, served)} slots that are long-tail items",
            ),
            _band(
                "genres_per_list",
                "diversity",
                m["genres_per_list"],
                cfg.min_genres_per_list,
                None,
                f"mean distinct genres per (user, daypart) list ({_which(product, served)})",
            ),
            _band(
                "coverage",
                "diversity",
                m["coverage"],
                cfg.min_coverage,
                None,
                "distinct served items / catalog items",
            ),
            _band("gini", "diversity", m["gini"], None, cfg.max_gini, "Gini of exposure over the catalog"),
        ]
    else:
        checks += [_skip(n, "diversity", "-", "served lists or items missing") for n in div_names]

    # quality ----------------------------------------------------------------------------------------
    rmin, rmax = settings.source.rating_min, settings.source.rating_max
    for doc in validation:  # ingest records the scale the loader actually found
        scale = doc.get("rating_scale") if isinstance(doc, dict) else None
        if isinstance(scale, list) and len(scale) == 2:
            rmin, rmax = float(scale[0]), float(scale[1])
    floor = scale_5pt(cfg.min_mean_quality, rmin, rmax)
    stats = _item_rating_stats(lake, run_date)
    if served is not None and len(served) and stats is not None and len(stats):
        q, mu = bayesian_quality(stats["sum"], stats["count"], settings.arms.quality.prior_weight)
        product = product_lists(served)
        slot_q = product[C.ITEM_ID].map(q).fillna(mu)
        overall = float(served[C.ITEM_ID].map(q).fillna(mu).mean())
        checks.append(
            _band(
                "mean_predicted_quality",
                "quality",
                float(slot_q.mean()),
                floor,
                None,
                f"mean Bayesian quality of {_which(product, served)} items (all served lists: {overall:.3f})",
            )
        )
    else:
        checks.append(
            _skip("mean_predicted_quality", "quality", f">= {floor:g}", "served lists or ratings missing")
        )
    min_ratings = cfg.min_ratings_for_quality
    if feedback is not None and feedback["ratings"] >= min_ratings:
        observed = feedback["rating_sum"] / feedback["ratings"]
        checks.append(
            _band(
                "mean_observed_rating",
                "quality",
                observed,
                floor,
                None,
                f"mean rating given in the app on {run_date} ({feedback['ratings']} ratings)",
            )
        )
    else:
        got = 0 if feedback is None else feedback["ratings"]
        checks.append(
            _skip(
                "mean_observed_rating",
                "quality",
                f">= {floor:g}",
                f"{got} ratings in the app's feedback < {min_ratings}",
            )
        )

    trailing = [
        (d, _feedback_counts(lake, d))
        for d in (run_date - timedelta(days=k) for k in range(1, cfg.ctr_trailing_days + 1))
    ]
    trailing = [(d, t) for d, t in trailing if t is not None]
    t_imp = sum(t["impressions"] for _, t in trailing)
    t_clk = sum(t["clicks"] for _, t in trailing)
    min_imp = cfg.min_impressions_for_ctr
    if feedback is not None and feedback["impressions"] >= min_imp and t_imp >= min_imp and t_clk > 0:
        ctr, t_ctr = feedback["clicks"] / feedback["impressions"], t_clk / t_imp
        drop = 1.0 - ctr / t_ctr
        check = _band(
            "ctr_drop",
            "quality",
            drop,
            None,
            cfg.max_ctr_drop,
            f"relative CTR drop (CTR {ctr:.4f} vs trailing {len(trailing)}-day {t_ctr:.4f})",
        )
        checks.append(check)
    else:
        checks.append(
            _skip(
                "ctr_drop",
                "quality",
                f"<= {cfg.max_ctr_drop:g}",
                f"fewer than {min_imp} impressions on the night or in the trailing window",
            )
        )

    # arm balance ------------------------------------------------------------------------------------
    if policy is not None and len(policy):
        probs = policy[C.SELECTION_PROBABILITY].astype(float)
        low_row = policy.loc[probs.idxmin()]
        high_row = policy.loc[probs.idxmax()]
        n_low = int((probs < cfg.arm_floor).sum())
        n_high = int((probs > cfg.arm_ceiling).sum())
        checks.append(
            _band(
                "arm_floor",
                "arm_balance",
                float(probs.min()),
                cfg.arm_floor,
                None,
                f"lowest selection probability ({low_row[C.ARM]} in "
                f"{low_row[C.SEGMENT]}/{low_row[C.DAYPART]}; "
                f"{n_low} (context, arm) pairs below the floor)",
            )
        )
        checks.append(
            _band(
                "arm_ceiling",
                "arm_balance",
                float(probs.max()),
                None,
                cfg.arm_ceiling,
                f"highest selection probability ({high_row[C.ARM]} in {high_row[C.SEGMENT]}/"
                f"{high_row[C.DAYPART]}; {n_high} pairs above the ceiling)",
            )
        )
    else:
        checks += [_skip(n, "arm_balance", "-", "policy missing") for n in ("arm_floor", "arm_ceiling")]

    # data health ------------------------------------------------------------------------------------
    volumes = [t["events"] for _, t in trailing]
    if volumes:
        median = float(np.median(volumes))
        today = 0 if feedback is None else feedback["events"]
        ratio = today / median if median > 0 else math.nan
        checks.append(
            _band(
                "feedback_volume",
                "data_health",
                ratio,
                cfg.min_feedback_ratio,
                None,
                f"feedback events {today} / trailing median {median:g}",
            )
        )
    else:
        checks.append(
            _skip(
                "feedback_volume",
                "data_health",
                f">= {cfg.min_feedback_ratio:g}",
                "no trailing feedback to compare with",
            )
        )
    if feedback is not None and feedback["newest"] is not None:
        end_of_day = datetime.combine(run_date + timedelta(days=1), time(0), tzinfo=UTC)
        newest = feedback["newest"]
        newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        age_h = (end_of_day - newest).total_seconds() / 3600.0
        checks.append(
            _band(
                "feedback_freshness",
                "data_health",
                age_h,
                None,
                cfg.max_feedback_age_hours,
                f"hours from the newest feedback event ({newest.isoformat()}) to the end of {run_date}",
            )
        )
    else:
        checks.append(
            _skip(
                "feedback_freshness",
                "data_health",
                f"<= {cfg.max_feedback_age_hours:g}",
                "no feedback events",
            )
        )
    kinds: dict[str, tuple[int, int]] = {}
    for doc in validation:
        for kind, (rows_in, quarantined) in quarantine_by_kind(doc).items():
            before = kinds.get(kind, (0, 0))
            kinds[kind] = (before[0] + rows_in, before[1] + quarantined)
    if kinds:
        # The worst table decides: a bad feedback day must not hide behind a big, clean catalog.
        shares = {k: q / n for k, (n, q) in kinds.items()}
        worst = max(shares, key=lambda k: shares[k])
        detail = ", ".join(f"{k} {q}/{n}" for k, (n, q) in sorted(kinds.items()))
        checks.append(
            _band(
                "quarantine_share",
                "data_health",
                shares[worst],
                None,
                cfg.max_quarantine_share,
                f"highest quarantined share ({worst}); quarantined/incoming rows: {detail}",
            )
        )
    else:
        checks.append(
            _skip(
                "quarantine_share", "data_health", f"<= {cfg.max_quarantine_share:g}", "no validation summary"
            )
        )

    # OPE sanity -------------------------------------------------------------------------------------
    ope = _read(lake, Dataset.OPE, run_date)
    if ope is not None and len(ope):
        bad = ope_insane(ope)
        checks.append(
            Check(
                "ope_sanity",
                "ope",
                not bad.any(),
                float(bad.sum()),
                "0 insane estimates",
                f"{int(bad.sum())} of {len(ope)} OPE estimates are insane (non-finite with support, "
                "SNIPS outside [0, 1], or ci_low > ci_high)"
                + (
                    f", e.g. {ope.loc[bad, [C.POLICY, C.ESTIMATOR, C.ESTIMATE]].head(3).to_dict('records')}"
                    if bad.any()
                    else ""
                ),
            )
        )
        logging_rows = ope[ope[C.POLICY] == "logging"]
        ess = logging_rows[C.ESS].astype(float) if len(logging_rows) else ope[C.ESS].astype(float)
        ess_value = float(ess.min()) if ess.notna().any() else math.nan
        trials = int(ope[C.N_TRIALS].max()) if len(ope) else 0
        checks.append(
            _skip("ope_support", "ope", f">= {cfg.min_ope_ess:g}", "no logged list impressions yet")
            if trials == 0
            else _band(
                "ope_support",
                "ope",
                ess_value,
                cfg.min_ope_ess,
                None,
                f"effective sample size of the logging policy ({int(ope[C.THIN_SUPPORT].sum())} "
                "estimates flagged thin support)",
            )
        )
    else:
        checks += [
            _skip(n, "ope", "-", "no OPE output for the run date") for n in ("ope_sanity", "ope_support")
        ]
    checks += target_checks(settings, lake, run_date)
    return checks


#: Scoreboard metrics the monitor watches (docs/monitoring.md): the product promises a nightly alert
#: can act on. The lift and the niche ratio are cumulative experiment results, read in the report.
TARGET_CHECKS: dict[str, str] = {
    "target_long_tail_share": "long_tail_share",
    "target_mean_rating": "mean_rating",
}


def target_checks(settings: Settings, lake: Lake, run_date: date) -> list[Check]:
    """The product's long-tail band and rating floor, judged on the scoreboard ``ab_analysis`` wrote for
    ``run_date`` (treatment), so the alert and the report can never disagree. The mean rating is only
    judged once the treatment has ``monitor.min_ratings_for_quality`` ratings in the experiment."""
    from pipelines.ab_analysis import SUMMARY_PART, VERDICT_FILE, ABMetric, Scope, targets

    goals = targets(settings)
    if not lake.exists(Dataset.AB_RESULTS, run_date, VERDICT_FILE):
        why = f"no A/B scoreboard for {run_date} (run ab_analysis first)"
        return [_skip(name, "targets", goals[m].text, why) for name, m in TARGET_CHECKS.items()]
    board = lake.read_json(Dataset.AB_RESULTS, run_date, VERDICT_FILE).get("scoreboard") or {}
    summary = _read(lake, Dataset.AB_RESULTS, run_date, parts=[SUMMARY_PART])
    ratings = 0
    if summary is not None:
        rows = summary[
            (summary[C.SCOPE] == Scope.CUMULATIVE.value)
            & (summary[C.VARIANT] == Variant.TREATMENT.value)
            & (summary[C.METRIC] == ABMetric.RATINGS.value)
        ]
        ratings = int(rows[C.VALUE].fillna(0).sum())
    min_ratings = settings.monitor.min_ratings_for_quality
    out = []
    for name, metric in TARGET_CHECKS.items():
        goal, value = goals[metric], (board.get(metric) or {}).get(Variant.TREATMENT.value)
        if metric == "mean_rating" and ratings < min_ratings:
            why = f"{ratings} treatment ratings in the experiment < {min_ratings}"
            out.append(_skip(name, "targets", goal.text, why))
            continue
        what = {
            "long_tail_share": "product target: long-tail share of the treatment lists users saw",
            "mean_rating": f"product target: mean rating treatment users gave ({ratings} ratings)",
        }[metric]
        out.append(_band(name, "targets", value, goal.low, goal.high, what))
    return out


# --------------------------------------------------------------------------- the step
def _status(check: Check, critical: set[str]) -> str:
    if check.passed is None:
        return SKIPPED
    if check.passed:
        return OK
    return CRITICAL if check.name in critical else WARNING


def monitor(
    settings: Settings,
    run_date: date | str,
    notify: Callable[[Settings, list[dict[str, Any]]], Any] = send_alerts,
) -> dict[str, Any]:
    """Run every check for ``run_date``; write checks and alerts (Parquet + serving DB); send alerts.

    Idempotent: a re-run replaces the run date's Parquet parts and its monitor alerts in the database
    (acknowledgements are kept). Returns counts and the names of the failed checks.
    """
    run_date = as_run_date(run_date)
    lake = Lake(settings.home)
    checks = run_checks(settings, lake, run_date)
    critical = set(settings.monitor.critical_checks)
    rows = [
        {
            C.CHECK_NAME: c.name,
            C.CATEGORY: c.category,
            C.STATUS: _status(c, critical),
            C.VALUE: c.value,
            C.THRESHOLD: c.threshold,
            C.MESSAGE: c.message,
            C.RUN_DATE: run_date,
        }
        for c in checks
    ]
    alerts = [
        {
            C.CHECK_NAME: r[C.CHECK_NAME],
            C.CATEGORY: r[C.CATEGORY],
            C.SEVERITY: r[C.STATUS],
            C.VALUE: r[C.VALUE],
            C.THRESHOLD: r[C.THRESHOLD],
            C.MESSAGE: r[C.MESSAGE],
            C.RUN_DATE: run_date,
        }
        for r in rows
        if r[C.STATUS] in (WARNING, CRITICAL)
    ]
    lake.write_table(
        Dataset.MONITOR_CHECKS, run_date, pa.Table.from_pylist(rows, schema=MONITOR_CHECKS_SCHEMA)
    )
    lake.write_table(Dataset.ALERTS, run_date, pa.Table.from_pylist(alerts, schema=ALERTS_SCHEMA))
    lake.mark_all_complete()

    engine = serving.serving_engine(settings, writer=True)
    try:
        serving.ensure_schema(engine)
        serving.replace_alerts(engine, run_date, "monitor", alerts)
    finally:
        engine.dispose()
    delivery = notify(settings, [{**a, "run_date": run_date.isoformat()} for a in alerts]) if alerts else None

    counts = {s: sum(1 for r in rows if r[C.STATUS] == s) for s in (OK, WARNING, CRITICAL, SKIPPED)}
    log.info("monitor %s: %s", run_date, counts)
    return {
        "run_date": run_date.isoformat(),
        "checks": len(rows),
        **counts,
        "blocks_publish": counts[CRITICAL] > 0,
        "failed": {a[C.CHECK_NAME]: a[C.SEVERITY] for a in alerts},
        "delivery": delivery,
    }
