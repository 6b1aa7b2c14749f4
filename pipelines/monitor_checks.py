"""The monitor's check registry: the health checks of a night's output and inputs (docs/monitoring.md).

:data:`CHECKS` is the one list of checks: each :class:`HealthCheck` names one check, its category and a
small function that judges a :class:`Night` (the run date's inputs, each read from the lake once, when a
check first needs it); the function's docstring gives the formula and the settings of its threshold.
:func:`run_checks` runs a list of them (pure reads); the ``monitor`` step (``deepcuts.pipelines.monitor``)
writes and sends the findings. ``monitor.critical_checks`` is validated against :data:`CHECK_NAMES` when the
settings load; the names live in ``monitor_check_names`` (a module without imports, so that loading the
settings does not import pandas) and this module refuses to import while they disagree with :data:`CHECKS`.

A missing upstream input is a finding (check ``<input>_present``), never a crash: the checks that need it
are ``skipped`` and the rest still run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.fs as pafs

from deepcuts.contracts import C, Dataset, EventType, Variant
from deepcuts.formulas import bayesian_mean, gini, scale_5pt
from deepcuts.pipelines.monitor_check_names import CHECK_NAMES
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.settings import Settings


# --------------------------------------------------------------------------- metrics (pure)
def bayesian_quality(sums: pd.Series, counts: pd.Series, prior_weight: float) -> tuple[pd.Series, float]:
    """Shrunk mean rating per item (:func:`deepcuts.formulas.bayesian_mean`) with ``mu`` the global mean
    rating of the history. Returns (q indexed like ``sums``, mu)."""
    total_n = float(counts.sum())
    mu = float(sums.sum()) / total_n if total_n else float("nan")
    return bayesian_mean(sums, counts, mu, prior_weight), mu


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


@dataclass(frozen=True)
class RefreshFacts:
    """What the monitor reads of one intraday refresh's ingest summary (pipelines/intraday.py), each
    value validated: the summary is a file, so a field of the wrong type or an unparseable time is
    reported, not trusted."""

    slot: int
    events: int | None
    new_events: int | None
    newest: str | None
    problem: str | None = None


def _refresh_facts(lake: Lake, day: date, slots: int) -> list[RefreshFacts] | None:
    """:class:`RefreshFacts` of every refresh of ``day`` whose ingest wrote a summary (``slots``: the
    slots a day has now, ``intraday.refreshes_per_day``); None when none did."""
    from deepcuts.pipelines.intraday import read_summaries

    try:
        summaries = read_summaries(lake, day)
    except (ValueError, TypeError, OSError) as exc:  # a stray file name or a corrupt JSON document
        return [RefreshFacts(-1, None, None, None, f"intraday summaries of {day} unreadable: {exc}")]
    ingests = {slot: steps["ingest"] for slot, steps in summaries.items() if "ingest" in steps}
    if not ingests:
        return None
    out = []
    for slot, doc in ingests.items():
        events, new, newest = (doc.get(k) if isinstance(doc, dict) else None for k in _REFRESH_FIELDS)
        counts_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (events, new))
        newest_ok = newest is None or (isinstance(newest, str) and _parses_as_time(newest))
        if not 0 <= slot < slots:
            out.append(RefreshFacts(slot, None, None, None, f"slot outside 0..{slots - 1}"))
        elif counts_ok and newest_ok:
            out.append(RefreshFacts(slot, events, new, newest))
        else:
            out.append(RefreshFacts(slot, None, None, None, "unreadable ingest summary (events/newest)"))
    return out


_REFRESH_FIELDS = ("events", "new_events", "newest_event_ts")


def _parses_as_time(text: str) -> bool:
    """An ISO time with a zone (a naive one cannot be compared with the slot's end in UTC)."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        return False
    return not pd.isna(ts) and ts.tzinfo is not None


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


# --------------------------------------------------------------------------- the night's inputs
class Night:
    """The inputs of one run date's checks, each read from the lake once, when a check first needs it."""

    def __init__(self, settings: Settings, lake: Lake, run_date: date) -> None:
        self.settings, self.lake, self.run_date = settings, lake, run_date
        self.cfg = settings.monitor

    @cached_property
    def served(self) -> pd.DataFrame | None:
        return _read(self.lake, Dataset.SERVED_LISTS, self.run_date)

    @cached_property
    def items(self) -> pd.DataFrame | None:
        return _items_upto(self.lake, self.run_date)

    @cached_property
    def policy(self) -> pd.DataFrame | None:
        return _read(self.lake, Dataset.BANDIT_POLICY, self.run_date)

    @cached_property
    def feedback(self) -> dict[str, Any] | None:
        return _feedback_counts(self.lake, self.run_date)

    @cached_property
    def validation(self) -> list[dict[str, Any]]:
        return _validation_summaries(self.lake, self.run_date)

    @cached_property
    def ope(self) -> pd.DataFrame | None:
        return _read(self.lake, Dataset.OPE, self.run_date)

    @cached_property
    def refreshes(self) -> list[RefreshFacts] | None:
        """The intraday refreshes of D (``intraday_summary`` of the day D closes: every hourly refresh
        of D ran before tonight's monitor), one per slot whose ingest wrote a summary; None when none
        ran."""
        return _refresh_facts(self.lake, self.run_date, self.settings.intraday.refreshes_per_day)

    @cached_property
    def trailing(self) -> list[dict[str, Any]]:
        """Feedback counts of the ``monitor.ctr_trailing_days`` days before D that have a partition."""
        days = (self.run_date - timedelta(days=k) for k in range(1, self.cfg.ctr_trailing_days + 1))
        counts = (_feedback_counts(self.lake, d) for d in days)
        return [c for c in counts if c is not None]

    def present(self, dataset: Dataset) -> bool:
        """Whether the run date has a usable ``dataset``: found and not empty (``<input>_present``)."""
        found: pd.DataFrame | dict[str, Any] | list[dict[str, Any]] | None = {
            Dataset.SERVED_LISTS: self.served,
            Dataset.ITEMS: self.items,
            Dataset.BANDIT_POLICY: self.policy,
            Dataset.FEEDBACK_EVENTS: self.feedback,
            Dataset.VALIDATION: self.validation,
        }[dataset]
        return found is not None and len(found) > 0

    @cached_property
    def has_lists(self) -> bool:
        return self.served is not None and len(self.served) > 0

    @cached_property
    def product(self) -> pd.DataFrame:
        assert self.served is not None
        return product_lists(self.served)

    @cached_property
    def which(self) -> str:
        """``treatment-list`` or ``served``: which lists the product checks judged (for messages)."""
        assert self.served is not None
        return _which(self.product, self.served)

    @cached_property
    def diversity(self) -> dict[str, float] | None:
        """:func:`diversity_metrics` of the product lists, with coverage and Gini over every served list
        (catalog exposure); None without served lists or items."""
        if not self.has_lists or self.items is None or not len(self.items):
            return None
        assert self.served is not None
        m = diversity_metrics(self.product, self.items)
        whole = diversity_metrics(self.served, self.items)
        m["coverage"], m["gini"] = whole["coverage"], whole["gini"]
        return m

    @cached_property
    def treatment_ratings(self) -> int:
        """Ratings treatment users gave in the experiment so far (cumulative scope of the A/B summary)."""
        from deepcuts.pipelines.ab_analysis import SUMMARY_PART, ABMetric, Scope

        summary = _read(self.lake, Dataset.AB_RESULTS, self.run_date, parts=[SUMMARY_PART])
        if summary is None:
            return 0
        rows = summary[
            (summary[C.SCOPE] == Scope.CUMULATIVE.value)
            & (summary[C.VARIANT] == Variant.TREATMENT.value)
            & (summary[C.METRIC] == ABMetric.RATINGS.value)
        ]
        return int(rows[C.VALUE].fillna(0).sum())

    @cached_property
    def quality_floor(self) -> float:
        """``monitor.min_mean_quality`` on the source's rating scale, as ingest recorded it when it did."""
        rmin, rmax = self.settings.source.rating_min, self.settings.source.rating_max
        for doc in self.validation:
            scale = doc.get("rating_scale") if isinstance(doc, dict) else None
            if isinstance(scale, list) and len(scale) == 2:
                rmin, rmax = float(scale[0]), float(scale[1])
        return scale_5pt(self.cfg.min_mean_quality, rmin, rmax)


# --------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Outcome:
    """What one check found. ``passed=None`` means not judged (skipped)."""

    passed: bool | None
    value: float | None
    threshold: str
    message: str


@dataclass(frozen=True)
class Finding:
    """A check's outcome under the check's registry name and category: one row of ``monitor/checks``."""

    name: str
    category: str
    passed: bool | None
    value: float | None
    threshold: str
    message: str


def _band(value: float | None, low: float | None, high: float | None, what: str) -> Outcome:
    """Passed when ``low <= value <= high`` (a None bound is open); not computable = skipped."""
    if value is None or not math.isfinite(value):
        return Outcome(None, None, _bounds(low, high), f"{what}: not computable")
    passed = (low is None or value >= low) and (high is None or value <= high)
    verdict = "inside" if passed else "OUTSIDE"
    return Outcome(
        passed, float(value), _bounds(low, high), f"{what} = {value:.4g}, {verdict} {_bounds(low, high)}"
    )


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def _skip(threshold: str, why: str) -> Outcome:
    return Outcome(None, None, threshold, f"skipped: {why}")


# --------------------------------------------------------------------------- the checks
Judge = Callable[[Night], Outcome]


@dataclass(frozen=True)
class HealthCheck:
    """One entry of the check registry: its name (the ``check_name`` of its rows and alerts, and what
    ``monitor.critical_checks`` lists), its category, and the function that judges a night. Each
    function's docstring gives its formula and the settings its threshold comes from."""

    name: str
    category: str
    judge: Judge

    def run(self, night: Night) -> Finding:
        o = self.judge(night)
        return Finding(self.name, self.category, o.passed, o.value, o.threshold, o.message)


@dataclass(frozen=True)
class InputPresent:
    """``<input>_present``: 1 when the run date's ``dataset`` partition exists and is not empty, else 0
    (a finding, never a crash; the checks that need the input are skipped). Threshold: present."""

    dataset: Dataset

    def __call__(self, night: Night) -> Outcome:
        ok = night.present(self.dataset)
        where = night.lake.partition_dir(self.dataset, night.run_date)
        state = "present" if ok else f"MISSING (looked in {where}); run the step that writes it"
        return Outcome(
            ok, 1.0 if ok else 0.0, "present", f"{self.dataset.value} for {night.run_date} is {state}"
        )


_NO_LISTS = "served lists or items missing"


def long_tail_share(night: Night) -> Outcome:
    """Share of the product lists' slots whose item ``is_long_tail``.
    Band: [``monitor.long_tail_min``, ``monitor.long_tail_max``]."""
    if night.diversity is None:
        return _skip("-", _NO_LISTS)
    what = f"share of {night.which} slots that are long-tail items"
    return _band(night.diversity["long_tail_share"], night.cfg.long_tail_min, night.cfg.long_tail_max, what)


def genres_per_list(night: Night) -> Outcome:
    """Mean over the product's (user, daypart) lists of the number of distinct genres of their items.
    Floor: ``monitor.min_genres_per_list``."""
    if night.diversity is None:
        return _skip("-", _NO_LISTS)
    what = f"mean distinct genres per (user, daypart) list ({night.which})"
    return _band(night.diversity["genres_per_list"], night.cfg.min_genres_per_list, None, what)


def coverage(night: Night) -> Outcome:
    """Distinct served items / catalog items, over every served list. Floor: ``monitor.min_coverage``."""
    if night.diversity is None:
        return _skip("-", _NO_LISTS)
    what = "distinct served items / catalog items"
    return _band(night.diversity["coverage"], night.cfg.min_coverage, None, what)


def exposure_gini(night: Night) -> Outcome:
    """Gini of the exposure counts of every catalog item over every served list (:func:`gini`; unexposed
    items count as 0). Ceiling: ``monitor.max_gini``."""
    if night.diversity is None:
        return _skip("-", _NO_LISTS)
    return _band(night.diversity["gini"], None, night.cfg.max_gini, "Gini of exposure over the catalog")


def mean_predicted_quality(night: Night) -> Outcome:
    """Mean Bayesian quality ``q_i = (s_i + m mu) / (n_i + m)`` (:func:`bayesian_quality`,
    ``m = arms.quality.prior_weight``, unrated items get ``mu``) of the product lists' slots, from the
    newest interactions snapshot at or before D. Floor: ``monitor.min_mean_quality`` (5-point, scaled)."""
    stats = _item_rating_stats(night.lake, night.run_date) if night.has_lists else None
    if stats is None or not len(stats):
        return _skip(f">= {night.quality_floor:g}", "served lists or ratings missing")
    assert night.served is not None
    q, mu = bayesian_quality(stats["sum"], stats["count"], night.settings.arms.quality.prior_weight)
    slot_q = night.product[C.ITEM_ID].map(q).fillna(mu)
    overall = float(night.served[C.ITEM_ID].map(q).fillna(mu).mean())
    what = f"mean Bayesian quality of {night.which} items (all served lists: {overall:.3f})"
    return _band(float(slot_q.mean()), night.quality_floor, None, what)


def mean_observed_rating(night: Night) -> Outcome:
    """Mean rating of the night's rating events in the app's feedback; judged from
    ``monitor.min_ratings_for_quality`` ratings. Floor: ``monitor.min_mean_quality`` (5-point, scaled)."""
    feedback, min_ratings = night.feedback, night.cfg.min_ratings_for_quality
    if feedback is None or feedback["ratings"] < min_ratings:
        got = 0 if feedback is None else feedback["ratings"]
        why = f"{got} ratings in the app's feedback < {min_ratings}"
        return _skip(f">= {night.quality_floor:g}", why)
    observed = feedback["rating_sum"] / feedback["ratings"]
    what = f"mean rating given in the app on {night.run_date} ({feedback['ratings']} ratings)"
    return _band(observed, night.quality_floor, None, what)


def ctr_drop(night: Night) -> Outcome:
    """Relative CTR drop ``1 - CTR(D) / CTR(D-w..D-1)``, CTR = clicks / impressions, the trailing
    ``monitor.ctr_trailing_days`` pooled; judged from ``monitor.min_impressions_for_ctr`` impressions on D
    and in the window. Ceiling: ``monitor.max_ctr_drop``."""
    feedback, trailing, cfg = night.feedback, night.trailing, night.cfg
    t_imp = sum(t["impressions"] for t in trailing)
    t_clk = sum(t["clicks"] for t in trailing)
    min_imp = cfg.min_impressions_for_ctr
    if feedback is None or feedback["impressions"] < min_imp or t_imp < min_imp or t_clk <= 0:
        why = f"fewer than {min_imp} impressions on the night or in the trailing window"
        return _skip(f"<= {cfg.max_ctr_drop:g}", why)
    ctr, t_ctr = feedback["clicks"] / feedback["impressions"], t_clk / t_imp
    what = f"relative CTR drop (CTR {ctr:.4f} vs trailing {len(trailing)}-day {t_ctr:.4f})"
    return _band(1.0 - ctr / t_ctr, None, cfg.max_ctr_drop, what)


def arm_floor(night: Night) -> Outcome:
    """Lowest ``selection_probability`` over every (segment, daypart, arm) of the bandit policy.
    Floor: ``monitor.arm_floor``."""
    return _arm_extreme(night, highest=False)


def arm_ceiling(night: Night) -> Outcome:
    """Highest ``selection_probability`` over every (segment, daypart, arm) of the bandit policy.
    Ceiling: ``monitor.arm_ceiling``."""
    return _arm_extreme(night, highest=True)


def _arm_extreme(night: Night, highest: bool) -> Outcome:
    """The policy's highest or lowest selection probability against its bound, naming where it is."""
    policy = night.policy
    if policy is None or not len(policy):
        return _skip("-", "policy missing")
    probs = policy[C.SELECTION_PROBABILITY].astype(float)
    row = policy.loc[probs.idxmax() if highest else probs.idxmin()]
    where = f"{row[C.ARM]} in {row[C.SEGMENT]}/{row[C.DAYPART]}"
    if highest:
        n_high = int((probs > night.cfg.arm_ceiling).sum())
        what = f"highest selection probability ({where}; {n_high} pairs above the ceiling)"
        return _band(float(probs.max()), None, night.cfg.arm_ceiling, what)
    n_low = int((probs < night.cfg.arm_floor).sum())
    what = f"lowest selection probability ({where}; {n_low} (context, arm) pairs below the floor)"
    return _band(float(probs.min()), night.cfg.arm_floor, None, what)


def feedback_volume(night: Night) -> Outcome:
    """Feedback events on D / median events of the trailing ``monitor.ctr_trailing_days`` days.
    Floor: ``monitor.min_feedback_ratio``."""
    volumes = [t["events"] for t in night.trailing]
    if not volumes:
        return _skip(f">= {night.cfg.min_feedback_ratio:g}", "no trailing feedback to compare with")
    median = float(np.median(volumes))
    today = 0 if night.feedback is None else night.feedback["events"]
    ratio = today / median if median > 0 else math.nan
    what = f"feedback events {today} / trailing median {median:g}"
    return _band(ratio, night.cfg.min_feedback_ratio, None, what)


def feedback_freshness(night: Night) -> Outcome:
    """Hours from the newest feedback event of D to the end of D (UTC).
    Ceiling: ``monitor.max_feedback_age_hours``."""
    limit = night.cfg.max_feedback_age_hours
    if night.feedback is None or night.feedback["newest"] is None:
        return _skip(f"<= {limit:g}", "no feedback events")
    end_of_day = datetime.combine(night.run_date + timedelta(days=1), time(0), tzinfo=UTC)
    newest = night.feedback["newest"]
    newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    age_h = (end_of_day - newest).total_seconds() / 3600.0
    what = f"hours from the newest feedback event ({newest.isoformat()}) to the end of {night.run_date}"
    return _band(age_h, None, limit, what)


def quarantine_share(night: Night) -> Outcome:
    """Highest quarantined / incoming rows over the tables of the run date's validation summaries
    (:func:`quarantine_by_kind`). Ceiling: ``monitor.max_quarantine_share``."""
    kinds: dict[str, tuple[int, int]] = {}
    for doc in night.validation:
        for kind, (rows_in, quarantined) in quarantine_by_kind(doc).items():
            before = kinds.get(kind, (0, 0))
            kinds[kind] = (before[0] + rows_in, before[1] + quarantined)
    limit = night.cfg.max_quarantine_share
    if not kinds:
        return _skip(f"<= {limit:g}", "no validation summary")
    # The worst table decides: a bad feedback day must not hide behind a big, clean catalog.
    shares = {k: q / n for k, (n, q) in kinds.items()}
    worst = max(shares, key=lambda k: shares[k])
    detail = ", ".join(f"{k} {q}/{n}" for k, (n, q) in sorted(kinds.items()))
    what = f"highest quarantined share ({worst}); quarantined/incoming rows: {detail}"
    return _band(shares[worst], None, limit, what)


_NO_REFRESH = "no intraday refresh ran on the run date"


def _refresh_alerts(night: Night) -> dict[int, dict[str, dict[str, Any]]]:
    """Slot -> {check name: the refresh's own warning} by :func:`deepcuts.pipelines.intraday.refresh_warnings`
    (one definition for the hourly warning and the nightly check), for every readable refresh of D."""
    from deepcuts.pipelines.intraday import refresh_warnings

    out: dict[int, dict[str, dict[str, Any]]] = {}
    for r in night.refreshes or []:
        if r.problem is None and r.events is not None and r.new_events is not None:
            found = refresh_warnings(
                night.settings, night.run_date, r.slot, r.events, r.events - r.new_events, r.newest
            )
            out[r.slot] = {a["check_name"]: a for a in found}
    return out


def _unreadable(night: Night) -> str:
    bad = [
        f"slot {r.slot}: {r.problem}" if r.slot >= 0 else r.problem
        for r in night.refreshes or []
        if r.problem
    ]
    return f"; not judged: {'; '.join(str(b) for b in bad)}" if bad else ""


def intraday_no_feedback(night: Night) -> Outcome:
    """Number of the run date's intraday refreshes that found no feedback event newer than the previous
    refresh of the day had (``intraday_no_feedback`` of :func:`deepcuts.pipelines.intraday.refresh_warnings`:
    the app's log export or the transfer may be stalled); skipped when no refresh ran (the
    ``deepcuts_intraday`` DAG, one refresh per slot of ``intraday.refreshes_per_day``). Passes at 0."""
    threshold = "0 refreshes without new feedback"
    if night.refreshes is None:
        return _skip(threshold, _NO_REFRESH)
    alerts = _refresh_alerts(night)
    quiet = [slot for slot, found in alerts.items() if "intraday_no_feedback" in found]
    message = (
        f"{len(quiet)} of {len(night.refreshes)} intraday refreshes found no new feedback"
        + (f" (slots {quiet})" if quiet else "")
        + _unreadable(night)
    )
    return Outcome(not quiet, float(len(quiet)), threshold, message)


def intraday_feedback_lag(night: Night) -> Outcome:
    """Largest lag, in minutes, over the run date's intraday refreshes from a refresh's newest valid
    feedback event to the end of its slot (``intraday_feedback_lag`` of
    :func:`deepcuts.pipelines.intraday.refresh_warnings`); refreshes without any event are the other
    check's. Ceiling: ``intraday.max_feedback_lag_minutes``."""
    limit = float(night.settings.intraday.max_feedback_lag_minutes)
    if night.refreshes is None:
        return _skip(f"<= {limit:g}", _NO_REFRESH)
    from deepcuts.pipelines.intraday import slot_end

    lags = {
        r.slot: (slot_end(night.settings, night.run_date, r.slot) - pd.Timestamp(r.newest)).total_seconds()
        / 60
        for r in night.refreshes
        if r.problem is None and r.newest is not None
    }
    if not lags:
        return _skip(f"<= {limit:g}", "no intraday refresh of the run date saw a feedback event")
    worst = max(lags, key=lambda slot: lags[slot])
    late = sorted(s for s, lag in lags.items() if lag > limit)
    what = (
        f"largest minutes from the newest feedback event to the end of its refresh slot (slot {worst}; "
        f"{len(late)} of {len(lags)} refreshes over the limit{f': slots {late}' if late else ''})"
        + _unreadable(night)
    )
    return _band(lags[worst], None, limit, what)


_NO_OPE = "no OPE output for the run date"


def ope_sanity(night: Night) -> Outcome:
    """Number of impossible OPE estimates (:func:`ope_insane`). Passes at 0."""
    ope = night.ope
    if ope is None or not len(ope):
        return _skip("-", _NO_OPE)
    bad = ope_insane(ope)
    example = (
        f", e.g. {ope.loc[bad, [C.POLICY, C.ESTIMATOR, C.ESTIMATE]].head(3).to_dict('records')}"
        if bad.any()
        else ""
    )
    message = (
        f"{int(bad.sum())} of {len(ope)} OPE estimates are insane (non-finite with support, "
        f"SNIPS outside [0, 1], or ci_low > ci_high){example}"
    )
    return Outcome(not bad.any(), float(bad.sum()), "0 insane estimates", message)


def ope_support(night: Night) -> Outcome:
    """Smallest effective sample size of the ``logging`` policy's estimates (all rows when it has none);
    judged once the OPE saw a logged impression. Floor: ``monitor.min_ope_ess``."""
    ope, floor = night.ope, night.cfg.min_ope_ess
    if ope is None or not len(ope):
        return _skip("-", _NO_OPE)
    if int(ope[C.N_TRIALS].max()) == 0:
        return _skip(f">= {floor:g}", "no logged list impressions yet")
    logging_rows = ope[ope[C.POLICY] == "logging"]
    ess = logging_rows[C.ESS].astype(float) if len(logging_rows) else ope[C.ESS].astype(float)
    ess_value = float(ess.min()) if ess.notna().any() else math.nan
    what = (
        f"effective sample size of the logging policy ({int(ope[C.THIN_SUPPORT].sum())} "
        "estimates flagged thin support)"
    )
    return _band(ess_value, floor, None, what)


@dataclass(frozen=True)
class Target:
    """A product target on the scoreboard ``ab_analysis`` wrote for D (treatment), so that the alert and
    the report can never disagree. Band: ``deepcuts.pipelines.ab_analysis.targets`` (the ``targets`` and
    ``rerank`` settings). The mean rating waits for ``monitor.min_ratings_for_quality`` treatment ratings
    in the experiment."""

    metric: str
    what: str

    def __call__(self, night: Night) -> Outcome:
        from deepcuts.pipelines.ab_analysis import VERDICT_FILE, targets

        goal = targets(night.settings)[self.metric]
        if not night.lake.exists(Dataset.AB_RESULTS, night.run_date, VERDICT_FILE):
            return _skip(goal.text, f"no A/B scoreboard for {night.run_date} (run ab_analysis first)")
        board = night.lake.read_json(Dataset.AB_RESULTS, night.run_date, VERDICT_FILE).get("scoreboard") or {}
        value = (board.get(self.metric) or {}).get(Variant.TREATMENT.value)
        ratings, min_ratings = night.treatment_ratings, night.cfg.min_ratings_for_quality
        if self.metric == "mean_rating" and ratings < min_ratings:
            return _skip(goal.text, f"{ratings} treatment ratings in the experiment < {min_ratings}")
        return _band(value, goal.low, goal.high, self.what.format(ratings=ratings))


_TARGET_LONG_TAIL = "product target: long-tail share of the treatment lists users saw"
_TARGET_RATING = "product target: mean rating treatment users gave ({ratings} ratings)"

#: The check registry, in the order of ``monitor/checks``. A check's name is its ``check_name`` and what
#: ``monitor.critical_checks`` lists (validated against :data:`CHECK_NAMES` when settings load).
CHECKS: tuple[HealthCheck, ...] = (
    HealthCheck("served_lists_present", "inputs", InputPresent(Dataset.SERVED_LISTS)),
    HealthCheck("items_present", "inputs", InputPresent(Dataset.ITEMS)),
    HealthCheck("policy_present", "inputs", InputPresent(Dataset.BANDIT_POLICY)),
    HealthCheck("feedback_present", "inputs", InputPresent(Dataset.FEEDBACK_EVENTS)),
    HealthCheck("validation_present", "inputs", InputPresent(Dataset.VALIDATION)),
    HealthCheck("long_tail_share", "diversity", long_tail_share),
    HealthCheck("genres_per_list", "diversity", genres_per_list),
    HealthCheck("coverage", "diversity", coverage),
    HealthCheck("gini", "diversity", exposure_gini),
    HealthCheck("mean_predicted_quality", "quality", mean_predicted_quality),
    HealthCheck("mean_observed_rating", "quality", mean_observed_rating),
    HealthCheck("ctr_drop", "quality", ctr_drop),
    HealthCheck("arm_floor", "arm_balance", arm_floor),
    HealthCheck("arm_ceiling", "arm_balance", arm_ceiling),
    HealthCheck("feedback_volume", "data_health", feedback_volume),
    HealthCheck("feedback_freshness", "data_health", feedback_freshness),
    HealthCheck("quarantine_share", "data_health", quarantine_share),
    HealthCheck("intraday_no_feedback", "intraday", intraday_no_feedback),
    HealthCheck("intraday_feedback_lag", "intraday", intraday_feedback_lag),
    HealthCheck("ope_sanity", "ope", ope_sanity),
    HealthCheck("ope_support", "ope", ope_support),
    HealthCheck("target_long_tail_share", "targets", Target("long_tail_share", _TARGET_LONG_TAIL)),
    HealthCheck("target_mean_rating", "targets", Target("mean_rating", _TARGET_RATING)),
)
if tuple(c.name for c in CHECKS) != CHECK_NAMES:
    # The settings validate monitor.critical_checks against the light list without importing this module.
    raise ImportError(
        "deepcuts.pipelines.monitor_checks.CHECKS and monitor_check_names.CHECK_NAMES disagree: "
        f"registry {[c.name for c in CHECKS]} vs names {list(CHECK_NAMES)}; "
        "list every check, in registry order, in pipelines/monitor_check_names.py"
    )


def run_checks(
    settings: Settings, lake: Lake, run_date: date, checks: Sequence[HealthCheck] = CHECKS
) -> list[Finding]:
    """Run ``checks`` (default: the whole registry) for ``run_date``, in order (pure reads)."""
    night = Night(settings, lake, run_date)
    return [check.run(night) for check in checks]
