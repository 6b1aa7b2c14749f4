"""Nightly step ``ab_analysis``: the A/B test of baseline (control) against bandit + re-ranker (treatment).

For run date ``D`` it reads the canonical ``feedback_events(D)`` (written by ingest, late events counted on
the day they arrive), adds them to the experiment's running per-user totals of the previous analysed
night, and computes on the cumulative totals (statistics in ``deepcuts.models.abtest.ab_stats``):

* CTR per variant with users as the unit (delta method), difference and relative lift with
  ``1 - alpha`` confidence intervals;
* the always-valid mSPRT p-value, ``p_D = min(p_{D-1}, 1 / Lambda_D)``, so that a verdict may be read
  every night without inflating false positives (the running ``p`` is the step's state);
* the sample-ratio-mismatch chi-square on exposed users per variant against the design share: each user
  is expected in treatment with the share in force on the night they were first exposed (a ramp changes
  the expectation for new users only), so the expected treatment count is the sum of those shares;
* guardrails, treatment against control: mean observed rating, and over the lists users saw on ``D``
  (``served_lists`` of the previous run date; tonight's on the very first night) the long-tail share,
  distinct genres per list and catalog coverage;
* niche discovery: impressions and clicks of items with a niche genre (``rerank.niche_genres``, decided by
  ``deepcuts.models.reranking.deepcut_scores.niche_flags``), niche clicks per exposed user per variant and the
  treatment / control ratio of that mean with a delta-method CI
  (``deepcuts.models.abtest.ab_stats.ratio_with_ci``);
* the product's scoreboard (:func:`scoreboard`): CTR lift, long-tail share, genres per list, mean rating
  and niche click ratio, each against its target (``targets`` and ``rerank`` settings) with ``met``.

Verdict (plain language, first rule that applies):

1. ``invalid (SRM)`` if the SRM check fires: the split is broken and no comparison can be trusted;
2. ``keep running`` while a variant has fewer than ``ab.min_users_per_variant`` exposed users;
3. ``treatment wins`` if ``p <= alpha``, the difference is positive and no guardrail fails;
4. ``control wins`` if ``p <= alpha`` and the difference is negative;
5. ``keep running`` otherwise (including a significant win that breaks a guardrail, said in the message).

The experiment: feedback of run date ``D`` was served from the lists assigned on ``D - 1``, so the night
is analysed under the experiment in force for ``D - 1`` (``deepcuts.pipelines.experiment_registry.state_for``;
the ``ab.*`` settings before the registry's first entry). A user stays in the variant of their first
exposure; the events of a user a ramp (or a stop) moved to the other variant are ignored from the move
on (``moved_users``), so neither arm is contaminated. A new experiment name starts clean totals. Once the
experiment is shipped or stopped, the night is not analysed: the last analysed night's verdict, totals
and summary are carried forward unchanged with ``final = true`` and the decision (the frozen verdict).

Writes to ``Dataset.AB_RESULTS`` for ``D``: ``summary.parquet`` (long format: scope, variant, metric,
value), ``verdict.json`` (the decision, the test statistics and the running state) and
``state/user_totals.parquet`` (cumulative per-user counts, read back by the next night). Re-running a
night reads the same previous state and rewrites the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from deepcuts.contracts import FEEDBACK_SCHEMA, C, Dataset, EventType, Variant
from deepcuts.experiment import SHIP_VERDICT, ExperimentState
from deepcuts.experiment import Status as RunStatus
from deepcuts.formulas import scale_5pt
from deepcuts.jsonsafe import json_safe
from deepcuts.pipelines.experiment_registry import state_for
from deepcuts.pipelines.storage import Lake, MissingDataError, as_run_date
from deepcuts.progress import get_logger
from deepcuts.settings import ABSettings, Settings

if TYPE_CHECKING:
    from deepcuts.models.abtest.ab_stats import Comparison, RatioEstimate

# The statistics (scipy.special) and the genre matrix (scipy.sparse) are imported where the step
# computes with them: the report, the monitor and the weekly review import this module only for its
# names, targets and scoreboard formatting, and each is a process of its own that would pay for scipy.

log = get_logger(__name__)

SUMMARY_PART: Final = "summary"
STATE_PART: Final = "state/user_totals"
VERDICT_FILE: Final = "verdict.json"
VARIANTS: Final = (Variant.CONTROL.value, Variant.TREATMENT.value)
#: The scoreboard's metrics in display order (JSON files store keys sorted).
SCOREBOARD_METRICS: Final = (
    "ctr_lift",
    "long_tail_share",
    "genres_per_list",
    "mean_rating",
    "niche_click_ratio",
)


class Verdict(StrEnum):
    KEEP_RUNNING = "keep running"
    TREATMENT_WINS = SHIP_VERDICT
    CONTROL_WINS = "control wins"
    INVALID = "invalid (SRM)"


class Scope(StrEnum):
    NIGHT = "night"  # feedback of the run date only
    CUMULATIVE = "cumulative"  # since the experiment started
    LISTS = "lists"  # the served lists users saw on the run date


class ABMetric(StrEnum):
    USERS = "users"
    IMPRESSIONS = "impressions"
    CLICKS = "clicks"
    CTR = "ctr"
    CTR_SE = "ctr_se"
    MEAN_RATING = "mean_rating"
    RATINGS = "ratings"
    LONG_TAIL_SHARE = "long_tail_share"
    GENRES_PER_LIST = "genres_per_list"
    COVERAGE = "coverage"
    LISTS = "lists"
    NICHE_IMPRESSIONS = "niche_impressions"
    NICHE_CLICKS = "niche_clicks"
    NICHE_CLICKS_PER_USER = "niche_clicks_per_user"


#: ``eval/ab`` summary: one row per (scope, variant, metric).
AB_SUMMARY_SCHEMA: Final = pa.schema(
    [
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
        pa.field(C.EXPERIMENT, pa.string(), nullable=False),
        pa.field(C.SCOPE, pa.string(), nullable=False),
        pa.field(C.VARIANT, pa.string(), nullable=False),
        pa.field(C.METRIC, pa.string(), nullable=False),
        pa.field(C.VALUE, pa.float64()),
    ]
)

#: ``eval/ab`` running state: cumulative totals per exposed user since the experiment started.
USER_TOTALS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.VARIANT, pa.string(), nullable=False),
        pa.field(C.IMPRESSIONS, pa.int64(), nullable=False),
        pa.field(C.CLICKS, pa.int64(), nullable=False),
        pa.field(C.RATING_SUM, pa.float64(), nullable=False),
        pa.field(C.RATING_COUNT, pa.int64(), nullable=False),
        pa.field(C.NICHE_IMPRESSIONS, pa.int64(), nullable=False),
        pa.field(C.NICHE_CLICKS, pa.int64(), nullable=False),
        # null until the step knows the design (user_totals of one batch of events does not)
        pa.field(C.TREATMENT_SHARE, pa.float64()),
    ]
)
#: The per-user counts that add up from night to night.
_COUNTS: Final = (C.IMPRESSIONS, C.CLICKS, C.RATING_SUM, C.RATING_COUNT, C.NICHE_IMPRESSIONS, C.NICHE_CLICKS)


# ----------------------------------------------------------------------------- per-user totals
@dataclass(frozen=True)
class TotalsResult:
    totals: pd.DataFrame
    #: Events without a known variant (not part of the experiment), ignored.
    unlabelled_events: int
    #: Users whose events carry both variants (a split bug); counted in the variant of most events.
    crossover_users: int


def niche_item_ids(items: pd.DataFrame, niche_genres: tuple[str, ...]) -> npt.NDArray[np.int64]:
    """Sorted ids of the catalog items with at least one niche genre
    (``deepcuts.models.reranking.deepcut_scores.niche_flags``, the one rule the scores and the re-ranker use
    too)."""
    from deepcuts.models.reranking.deepcut_scores import genre_matrix, niche_flags

    if items.empty:
        return np.empty(0, dtype=np.int64)
    ids = np.unique(items[C.ITEM_ID].to_numpy(np.int64))
    genres, names = genre_matrix(items, ids)
    return ids[niche_flags(genres, names, niche_genres)]


def user_totals(feedback: pd.DataFrame, niche_items: npt.ArrayLike = ()) -> TotalsResult:
    """Per-user impressions, clicks, rating sums/counts and niche impressions/clicks of one batch of events.

    Impressions and clicks are event counts (ingest has already removed duplicate event ids); niche ones
    are those whose item is in ``niche_items`` (:func:`niche_item_ids`). A user belongs to the variant
    that most of their events carry (ties: control).
    """
    known = feedback[C.VARIANT].isin(VARIANTS)
    unlabelled = int((~known).sum())
    fb = feedback.loc[known, [C.USER_ID, C.ITEM_ID, C.VARIANT, C.EVENT_TYPE, C.RATING]]
    if fb.empty:
        return TotalsResult(_empty_totals(), unlabelled, 0)
    kind = fb[C.EVENT_TYPE]
    is_rating = (kind == EventType.RATING.value) & fb[C.RATING].notna()
    impression = (kind == EventType.IMPRESSION.value).to_numpy()
    click = (kind == EventType.CLICK.value).to_numpy()
    niche = np.isin(fb[C.ITEM_ID].to_numpy(np.int64), np.asarray(niche_items, dtype=np.int64))
    frame = pd.DataFrame(
        {
            C.USER_ID: fb[C.USER_ID].to_numpy(np.int64),
            C.IMPRESSIONS: impression.astype(np.int64),
            C.CLICKS: click.astype(np.int64),
            C.RATING_SUM: np.where(is_rating, fb[C.RATING].astype("float64").fillna(0.0), 0.0),
            C.RATING_COUNT: is_rating.to_numpy(np.int64),
            C.NICHE_IMPRESSIONS: (impression & niche).astype(np.int64),
            C.NICHE_CLICKS: (click & niche).astype(np.int64),
            "_treated": (fb[C.VARIANT] == Variant.TREATMENT.value).to_numpy(np.int64),
        }
    )
    grouped = frame.groupby(C.USER_ID, sort=True).agg(
        **{name: (name, "sum") for name in _COUNTS},
        _treated=("_treated", "sum"),
        _events=("_treated", "size"),
    )
    treated, events = grouped.pop("_treated"), grouped.pop("_events")
    crossover = int(((treated > 0) & (treated < events)).sum())
    grouped.insert(
        0, C.VARIANT, np.where(treated * 2 > events, Variant.TREATMENT.value, Variant.CONTROL.value)
    )
    return TotalsResult(_typed_totals(grouped.reset_index()), unlabelled, crossover)


def combine_totals(previous: pd.DataFrame, today: pd.DataFrame) -> pd.DataFrame:
    """Add today's per-user totals to the running ones; a user keeps the variant first seen."""
    if previous.empty:
        return _typed_totals(today)
    if today.empty:
        return _typed_totals(previous)
    both = pd.concat([previous, today], ignore_index=True)
    sums = both.groupby(C.USER_ID, sort=True)[list(_COUNTS)].sum()
    first = both.groupby(C.USER_ID, sort=True)[[C.VARIANT, C.TREATMENT_SHARE]].first()
    sums.insert(0, C.VARIANT, first[C.VARIANT])
    sums[C.TREATMENT_SHARE] = first[C.TREATMENT_SHARE]
    return _typed_totals(sums.reset_index())


def drop_moved_users(previous: pd.DataFrame, today: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Today's totals without the users whose variant changed since their first exposure, and how many.

    A ramp (or a stop) moves the users between the old and the new share to the other variant; they
    stay in the arm of their first exposure, and their events after the move are in neither arm.
    """
    if previous.empty or today.empty:
        return today, 0
    first = previous.set_index(C.USER_ID)[C.VARIANT]
    was = today[C.USER_ID].map(first)
    moved = was.notna() & (was != today[C.VARIANT])
    return today[~moved.to_numpy()].reset_index(drop=True), int(moved.sum())


def _empty_totals() -> pd.DataFrame:
    return USER_TOTALS_SCHEMA.empty_table().to_pandas()


def _typed_totals(frame: pd.DataFrame) -> pd.DataFrame:
    if C.TREATMENT_SHARE not in frame.columns:
        frame = frame.assign(**{C.TREATMENT_SHARE: math.nan})
    table = pa.Table.from_pandas(frame[USER_TOTALS_SCHEMA.names], preserve_index=False)
    return table.cast(USER_TOTALS_SCHEMA).to_pandas().sort_values(C.USER_ID, ignore_index=True)


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class TestResult:
    """Everything the verdict is made of, for one look at the cumulative data."""

    estimates: dict[str, RatioEstimate]
    comparison: Comparison
    p_value: float
    srm_p_value: float
    srm_chi2: float
    srm_mismatch: bool
    enough_users: bool
    #: Expected treatment share of the exposed users (mean of each one's share at first exposure).
    design_share: float


def run_test(totals: pd.DataFrame, ab: ABSettings, previous_p: float = 1.0) -> TestResult:
    """CTR per variant, lift with CIs, the updated always-valid p-value and the SRM check.

    The running p-value only moves once both variants have ``ab.min_users_per_variant`` exposed users:
    a plug-in variance from a handful of users is too noisy for the normal approximation.

    SRM: a user first exposed under treatment share ``s_i`` is in treatment with probability ``s_i``
    (the hash bucket is uniform and independent of when a user comes), so the expected treatment count
    of ``N`` exposed users is ``sum_i s_i = N * mean(s_i)``; users without a recorded share count with
    ``ab.treatment_share``. Pearson's chi-square with these expectations is slightly conservative when
    the shares differ (the binomial variance ``sum s_i (1 - s_i)`` is at most ``N s (1 - s)``).
    """
    from deepcuts.models.abtest.ab_stats import compare, msprt_p_value, srm_test, user_ctr

    estimates = {}
    exposed = {}
    for variant in VARIANTS:
        rows = totals[totals[C.VARIANT] == variant]
        estimates[variant] = user_ctr(rows[C.CLICKS].to_numpy(), rows[C.IMPRESSIONS].to_numpy())
        exposed[variant] = estimates[variant].n_users
    control, treatment = estimates[Variant.CONTROL.value], estimates[Variant.TREATMENT.value]
    comparison = compare(control, treatment, alpha=ab.alpha)
    enough = min(exposed.values()) >= ab.min_users_per_variant
    p = previous_p
    if enough:
        p = msprt_p_value(comparison.diff, treatment.variance + control.variance, ab.msprt_tau2, previous_p)
    design = design_share(totals, ab.treatment_share)
    shares = {Variant.CONTROL.value: 1.0 - design, Variant.TREATMENT.value: design}
    srm = srm_test(exposed, shares, alpha=ab.srm_alpha)
    return TestResult(estimates, comparison, p, srm.p_value, srm.chi2, srm.mismatch, enough, design)


def design_share(totals: pd.DataFrame, default: float) -> float:
    """Mean treatment share at first exposure over the exposed users (``default`` where unknown)."""
    exposed = totals[totals[C.IMPRESSIONS] > 0]
    if exposed.empty:
        return default
    return float(exposed[C.TREATMENT_SHARE].astype("float64").fillna(default).mean())


@dataclass(frozen=True)
class NicheResult:
    """Niche discovery per variant on the cumulative totals, and treatment / control with a CI.

    ``per_user[v]`` is the mean niche clicks per exposed user (a user with at least one impression) of
    variant ``v`` with its delta-method variance; ``ratio`` = treatment mean / control mean.
    """

    impressions: dict[str, int]
    clicks: dict[str, int]
    per_user: dict[str, RatioEstimate]
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "niche_impressions": self.impressions,
            "niche_clicks": self.clicks,
            "exposed_users": {v: e.n_users for v, e in self.per_user.items()},
            "niche_clicks_per_user": {v: e.ctr for v, e in self.per_user.items()},
            "niche_clicks_per_user_se": {v: e.se for v, e in self.per_user.items()},
            "ratio": self.ratio,
            "ci_low": self.ratio_ci_low,
            "ci_high": self.ratio_ci_high,
        }


def niche_test(totals: pd.DataFrame, alpha: float) -> NicheResult:
    """Niche impressions, clicks and clicks per exposed user per variant; their ratio with a CI."""
    from deepcuts.models.abtest.ab_stats import per_user_mean, ratio_with_ci

    impressions, clicks, per_user = {}, {}, {}
    for variant in VARIANTS:
        rows = totals[totals[C.VARIANT] == variant]
        impressions[variant] = int(rows[C.NICHE_IMPRESSIONS].sum())
        clicks[variant] = int(rows[C.NICHE_CLICKS].sum())
        exposed = rows[rows[C.IMPRESSIONS] > 0]
        per_user[variant] = per_user_mean(exposed[C.NICHE_CLICKS].to_numpy())
    ratio, low, high = ratio_with_ci(
        per_user[Variant.CONTROL.value], per_user[Variant.TREATMENT.value], alpha
    )
    return NicheResult(impressions, clicks, per_user, ratio, low, high)


@dataclass(frozen=True)
class Target:
    """One scoreboard target: the treatment's value must lie in ``[low, high]`` (``None`` = open)."""

    low: float | None
    high: float | None
    text: str

    def met(self, value: float | None) -> bool:
        """False while the value is not measurable: a target is shown met only when it is."""
        if value is None or not math.isfinite(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


def targets(settings: Settings) -> dict[str, Target]:
    """The scoreboard's targets from settings, in :data:`SCOREBOARD_METRICS` order (one place for the
    scoreboard, the report's target bands and the monitor's target checks).

    ``targets.ctr_lift_min``, ``targets.niche_click_ratio_min`` and ``targets.mean_rating_min_5pt``
    (5-point scale, scaled to the ``source`` rating scale); the re-ranker's own
    ``rerank.long_tail_min/max`` and ``rerank.min_genres`` for the lists.
    """
    tg, rr = settings.targets, settings.rerank
    low, high = settings.source.rating_min, settings.source.rating_max
    floor = scale_5pt(tg.mean_rating_min_5pt, low, high)
    return {
        "ctr_lift": Target(
            tg.ctr_lift_min,
            None,
            f">= {tg.ctr_lift_min:+.0%} (promise {tg.ctr_lift_min:+.0%} to {tg.ctr_lift_goal:+.0%})",
        ),
        "long_tail_share": Target(
            rr.long_tail_min, rr.long_tail_max, f"[{rr.long_tail_min:.2f}, {rr.long_tail_max:.2f}]"
        ),
        "genres_per_list": Target(float(rr.min_genres), None, f">= {rr.min_genres}"),
        "mean_rating": Target(floor, None, f">= {floor:g}"),
        "niche_click_ratio": Target(
            tg.niche_click_ratio_min, None, f">= {tg.niche_click_ratio_min:g}x control"
        ),
    }


def scoreboard(
    result: TestResult,
    niche: NicheResult,
    rating: dict[str, float],
    lists: dict[str, dict[str, float]],
    settings: Settings,
) -> dict[str, dict[str, Any]]:
    """The product's targets, control against treatment, each with ``target`` (text) and ``met``.

    ``met`` judges the treatment (the product) against :func:`targets` and is false while a value is not
    measurable. Per metric, ``control``/``treatment`` are: CTR (cumulative, per item impression); the
    long-tail share and genres per list of the lists users saw on the run date; the mean rating event
    (cumulative); niche clicks per exposed user (cumulative). ``ctr_lift`` and ``niche_click_ratio``
    also carry ``value`` (lift, ratio) with ``ci_low``, ``ci_high`` (``1 - ab.alpha``, delta method).
    """
    goals = targets(settings)

    def side(values: dict[str, Any]) -> dict[str, float | None]:
        return {v: _num(values.get(v)) for v in VARIANTS}

    cmp_ = result.comparison
    sides = {
        "ctr_lift": side({v: e.ctr for v, e in result.estimates.items()}),
        "long_tail_share": side({v: m.get(ABMetric.LONG_TAIL_SHARE.value) for v, m in lists.items()}),
        "genres_per_list": side({v: m.get(ABMetric.GENRES_PER_LIST.value) for v, m in lists.items()}),
        "mean_rating": side(rating),
        "niche_click_ratio": side({v: e.ctr for v, e in niche.per_user.items()}),
    }
    intervals = {
        "ctr_lift": (cmp_.lift, cmp_.lift_ci_low, cmp_.lift_ci_high),
        "niche_click_ratio": (niche.ratio, niche.ratio_ci_low, niche.ratio_ci_high),
    }
    board: dict[str, dict[str, Any]] = {}
    for name in SCOREBOARD_METRICS:
        entry: dict[str, Any] = dict(sides[name])
        judged = entry[Variant.TREATMENT.value]
        if name in intervals:
            value, low, high = (_num(x) for x in intervals[name])
            entry.update(value=value, ci_low=low, ci_high=high)
            judged = value
        entry.update(target=goals[name].text, met=goals[name].met(judged))
        board[name] = entry
    return board


class Status(StrEnum):
    MET = "met"
    OFF = "OFF TARGET"
    UNKNOWN = "not measurable yet"


#: Per scoreboard metric: its name for people, what control / treatment hold, how to print them.
SCOREBOARD_LABELS: Final = {
    "ctr_lift": "CTR lift",
    "long_tail_share": "long-tail share",
    "genres_per_list": "genres per list",
    "mean_rating": "mean rating",
    "niche_click_ratio": "niche click ratio",
}
_MEASURED_AS: Final = {
    "ctr_lift": ("CTR: clicks / item impressions, cumulative", ".4f"),
    "long_tail_share": ("share of long-tail items in the lists users saw on the run date", ".3f"),
    "genres_per_list": ("distinct genres per (user, daypart) list users saw on the run date", ".2f"),
    "mean_rating": ("mean rating event users gave, cumulative", ".2f"),
    "niche_click_ratio": ("niche-genre clicks per exposed user, cumulative", ".3f"),
}


def scoreboard_rows(board: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """The scoreboard as text rows (report, ``make run`` summary), in :data:`SCOREBOARD_METRICS` order:
    metric, control, treatment, lift / ratio with its CI, target, status (a :class:`Status`), measured as."""
    rows = []
    for name in SCOREBOARD_METRICS:
        entry = board.get(name)
        if entry is None:
            continue
        what, spec = _MEASURED_AS[name]
        judged = entry.get("value", entry.get(Variant.TREATMENT.value))
        status = Status.MET if entry.get("met") else Status.UNKNOWN if not _finite(judged) else Status.OFF
        rows.append(
            {
                "metric": SCOREBOARD_LABELS[name],
                "control": _text(entry.get(Variant.CONTROL.value), spec),
                "treatment": _text(entry.get(Variant.TREATMENT.value), spec),
                "lift / ratio": interval_text(name, entry) if "value" in entry else "",
                "target (treatment)": str(entry.get("target", "")),
                "status": status,
                "measured as": what,
            }
        )
    return rows


def by_status(board: dict[str, dict[str, Any]]) -> dict[Status, list[str]]:
    """Scoreboard metric names (for people) per status, in display order."""
    out: dict[Status, list[str]] = {status: [] for status in Status}
    for row in scoreboard_rows(board):
        out[row["status"]].append(row["metric"])
    return out


def scoreboard_headline(board: dict[str, dict[str, Any]]) -> str:
    """One line: every target met, or what is off target and what cannot be judged yet."""
    groups = by_status(board)
    parts = [
        f"{len(groups[status])} {status.value if status is Status.OFF else 'not measurable yet'}: "
        + ", ".join(groups[status])
        for status in (Status.OFF, Status.UNKNOWN)
        if groups[status]
    ]
    return "; ".join(parts) if parts else "every target met"


def interval_text(name: str, entry: dict[str, Any]) -> str:
    """The lift (as a percentage) or ratio (as a multiple) with its CI."""
    value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    if not _finite(value):
        return "not measurable yet"
    spec, unit = ("+.1%", "") if name == "ctr_lift" else (".2f", "x")
    ci = f" (95% CI {low:{spec}} to {high:{spec}})" if _finite(low) and _finite(high) else ""
    return f"{value:{spec}}{unit}{ci}"


def _text(value: Any, spec: str) -> str:
    return format(value, spec) if _finite(value) else "-"


def guardrails(
    rating: dict[str, float], lists: dict[str, dict[str, float]], ab: ABSettings
) -> dict[str, dict[str, Any]]:
    """Treatment may not be worse than control by more than the margin; unknown when a side is missing.

    ``rating`` is the mean observed rating per variant, ``lists`` the list metrics per variant.
    """
    margins = {
        ABMetric.MEAN_RATING.value: ab.guardrail_rating_drop,
        ABMetric.LONG_TAIL_SHARE.value: ab.guardrail_long_tail_drop,
        ABMetric.GENRES_PER_LIST.value: ab.guardrail_genres_drop,
        ABMetric.COVERAGE.value: ab.guardrail_coverage_drop,
    }
    out: dict[str, dict[str, Any]] = {}
    for name, margin in margins.items():
        if name == ABMetric.MEAN_RATING.value:
            ctl, trt = rating.get(Variant.CONTROL.value), rating.get(Variant.TREATMENT.value)
        else:
            ctl = lists.get(Variant.CONTROL.value, {}).get(name)
            trt = lists.get(Variant.TREATMENT.value, {}).get(name)
        known = _finite(ctl) and _finite(trt)
        passed = (trt >= ctl - margin) if known else None  # type: ignore[operator]
        out[name] = {"control": _num(ctl), "treatment": _num(trt), "margin": margin, "pass": passed}
    return out


def decide(result: TestResult, rails: dict[str, dict[str, Any]], ab: ABSettings) -> tuple[Verdict, str]:
    """The verdict and one plain-language sentence explaining it (rules in the module docstring)."""
    cmp_ = result.comparison
    if result.srm_mismatch:
        return Verdict.INVALID, (
            f"Sample ratio mismatch (chi-square p = {result.srm_p_value:.2g} < {ab.srm_alpha}): the observed "
            "user split does not match the design, so the comparison cannot be trusted. Check the "
            "assignment and the feedback logging before reading any result."
        )
    users = {v: e.n_users for v, e in result.estimates.items()}
    if not result.enough_users:
        return Verdict.KEEP_RUNNING, (
            f"Not enough exposed users yet ({users}; need {ab.min_users_per_variant} per variant)."
        )
    lift_txt = _lift_text(cmp_, ab.alpha)
    if result.p_value <= ab.alpha and cmp_.diff > 0:
        failed = [name for name, rail in rails.items() if rail["pass"] is False]
        if failed:
            return Verdict.KEEP_RUNNING, (
                f"Treatment is ahead on CTR ({lift_txt}, always-valid p = {result.p_value:.3g}) but fails "
                f"the guardrail(s) {', '.join(failed)}; do not ship it as is."
            )
        return Verdict.TREATMENT_WINS, (
            f"Treatment wins: {lift_txt}, always-valid p = {result.p_value:.3g} <= {ab.alpha}; "
            "guardrails hold."
        )
    if result.p_value <= ab.alpha and cmp_.diff < 0:
        return Verdict.CONTROL_WINS, (
            f"Control wins: {lift_txt}, always-valid p = {result.p_value:.3g} <= {ab.alpha}."
        )
    return Verdict.KEEP_RUNNING, (
        f"No significant difference yet ({lift_txt}, always-valid p = {result.p_value:.3g} > {ab.alpha}); "
        "keep running."
    )


def _lift_text(cmp_: Comparison, alpha: float) -> str:
    if not math.isfinite(cmp_.lift):
        return "lift not measurable yet"
    level = round(100 * (1 - alpha))
    ci = f"{level}% CI {cmp_.lift_ci_low:+.1%} to {cmp_.lift_ci_high:+.1%}"
    return f"relative CTR lift {cmp_.lift:+.1%} ({ci})"


# ----------------------------------------------------------------------------- list guardrails
def list_metrics(lists: pd.DataFrame, items: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per variant: long-tail share, mean distinct genres per (user, daypart) list, catalog coverage.

    coverage = |distinct items in the variant's lists| / |catalog|.
    """
    out: dict[str, dict[str, float]] = {}
    catalog = max(int(items[C.ITEM_ID].nunique()), 1) if not items.empty else 0
    genres = items[[C.ITEM_ID, C.GENRES]].explode(C.GENRES).dropna() if not items.empty else None
    for variant in VARIANTS:
        rows = lists[lists[C.VARIANT] == variant]
        if rows.empty:
            continue
        metrics = {
            ABMetric.LISTS.value: float(rows.groupby([C.USER_ID, C.DAYPART]).ngroups),
            ABMetric.LONG_TAIL_SHARE.value: float(rows[C.IS_LONG_TAIL].astype(bool).mean()),
            ABMetric.COVERAGE.value: rows[C.ITEM_ID].nunique() / catalog if catalog else math.nan,
        }
        if genres is not None:
            merged = rows[[C.USER_ID, C.DAYPART, C.ITEM_ID]].merge(genres, on=C.ITEM_ID, how="left")
            per_list = merged.groupby([C.USER_ID, C.DAYPART])[C.GENRES].nunique()
            metrics[ABMetric.GENRES_PER_LIST.value] = float(per_list.mean())
        out[variant] = metrics
    return out


# ----------------------------------------------------------------------------- the step
def ab_analysis(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """Analyse the A/B test on the feedback up to ``run_date``; write ``eval/ab(D)``; return a summary.

    ``run_date`` may be ISO text (the DAG passes ``ds``).
    """
    run_date = as_run_date(run_date)
    lake = Lake(settings.home)
    # tonight's feedback was served from the lists assigned on the previous run date
    experiment = state_for(settings, run_date - timedelta(days=1), lake)
    ab = experiment.ab_settings(settings.ab)
    lake.require_inputs(run_date, Dataset.FEEDBACK_EVENTS, Dataset.ITEMS, missing_ok=True)
    feedback = _read_feedback(lake, run_date)
    ignored = 0
    if not experiment.running:
        frozen = _freeze(lake, run_date, experiment, len(feedback))
        if frozen is not None:
            return frozen
        # ended before any night was analysed: nothing was measured, and nothing will be
        ignored, feedback = len(feedback), FEEDBACK_SCHEMA.empty_table().to_pandas()
    items = _read_items(lake, run_date)
    today = user_totals(feedback, niche_item_ids(items, settings.rerank.niche_genres))
    prev_state, previous_p, looks = _previous_state(lake, run_date, ab)
    today_totals, moved = drop_moved_users(
        prev_state, today.totals.assign(**{C.TREATMENT_SHARE: ab.treatment_share})
    )
    totals = combine_totals(prev_state, today_totals)
    result = run_test(totals, ab, previous_p)
    niche = niche_test(totals, ab.alpha)

    rating = {v: _mean_rating(totals, v) for v in VARIANTS}
    lists_date, lists = _shown_lists(lake, run_date)
    list_stats = list_metrics(lists, items) if not lists.empty else {}
    rails = guardrails(rating, list_stats, ab)
    board = scoreboard(result, niche, rating, list_stats, settings)
    verdict, message = decide(result, rails, ab)
    cmp_ = result.comparison
    if verdict is not Verdict.KEEP_RUNNING or looks == 0:
        log.info("ab_analysis %s: %s", run_date, message)

    summary = _summary_rows(run_date, ab.experiment, today_totals, totals, rating, list_stats)
    record = {
        "run_date": run_date.isoformat(),
        "experiment": ab.experiment,
        **_final_fields(experiment, run_date, None),
        "treatment_share": ab.treatment_share,
        "design_treatment_share": result.design_share,
        "verdict": verdict.value,
        "message": message,
        "p_value": result.p_value,
        "alpha": ab.alpha,
        "msprt_tau2": ab.msprt_tau2,
        "looks": looks + 1,
        "enough_users": result.enough_users,
        "diff": cmp_.diff,
        "diff_ci_low": cmp_.diff_ci_low,
        "diff_ci_high": cmp_.diff_ci_high,
        "lift": cmp_.lift,
        "ci_low": cmp_.lift_ci_low,
        "ci_high": cmp_.lift_ci_high,
        "z_p_value_fixed_horizon": cmp_.z_p_value,
        "srm_p_value": result.srm_p_value,
        "srm_chi2": result.srm_chi2,
        "srm_mismatch": result.srm_mismatch,
        "ctr": {v: e.as_dict() for v, e in result.estimates.items()},
        "guardrails": rails,
        "niche": niche.as_dict(),
        "scoreboard": board,
        "lists_run_date": lists_date.isoformat() if lists_date else None,
        "night_events": len(feedback),
        "unlabelled_events": today.unlabelled_events,
        "crossover_users": today.crossover_users,
        "moved_users": moved,
        "ignored_events": ignored,
    }
    record = json_safe(record)
    _write_night(lake, run_date, totals, summary, record)
    return _step_result(record)


def _write_night(
    lake: Lake, run_date: date, totals: pd.DataFrame, summary: pa.Table, record: dict[str, Any]
) -> None:
    lake.write_table(
        Dataset.AB_RESULTS,
        run_date,
        pa.Table.from_pandas(totals, schema=USER_TOTALS_SCHEMA, preserve_index=False),
        STATE_PART,
    )
    lake.write_table(Dataset.AB_RESULTS, run_date, summary, SUMMARY_PART)
    lake.write_json(Dataset.AB_RESULTS, run_date, VERDICT_FILE, record)
    lake.mark_all_complete()


def _final_fields(experiment: ExperimentState, run_date: date, since: str | None) -> dict[str, Any]:
    """Status fields of a verdict record: running, or ended with the decision and the frozen verdict."""
    if experiment.running:
        return {"status": RunStatus.RUNNING.value, "final": False, "decision": None, "final_since": None}
    stopped = experiment.status is RunStatus.STOPPED
    decision = "stopped" if stopped else f"shipped {experiment.shipped_variant}"
    return {
        "status": experiment.status.value,
        "final": True,
        "decision": decision,
        "final_since": since or run_date.isoformat(),
    }


def _freeze(
    lake: Lake, run_date: date, experiment: ExperimentState, night_events: int
) -> dict[str, Any] | None:
    """Carry the ended experiment's last analysed night forward to ``run_date`` unchanged (verdict,
    p-value, totals, summary); None when the experiment has no analysed night to carry."""
    prev = lake.latest_before(Dataset.AB_RESULTS, run_date)
    if prev is None or not lake.exists(Dataset.AB_RESULTS, prev, VERDICT_FILE):
        return None
    record = lake.read_json(Dataset.AB_RESULTS, prev, VERDICT_FILE)
    if record.get("experiment") != experiment.experiment:
        return None
    totals = _typed_totals(lake.read_df(Dataset.AB_RESULTS, prev, parts=[STATE_PART]))
    summary = lake.read_df(Dataset.AB_RESULTS, prev, parts=[SUMMARY_PART]).assign(**{C.RUN_DATE: run_date})
    record |= _final_fields(experiment, run_date, record.get("final_since"))
    record |= {"run_date": run_date.isoformat(), "night_events": night_events}
    record |= {"ignored_events": night_events, "moved_users": 0}
    if record["final_since"] == run_date.isoformat():
        log.info("ab_analysis %s: %s %s; final verdict %r", run_date, experiment.experiment,
                 record["decision"], record["verdict"])  # fmt: skip
    summary_table = pa.Table.from_pandas(summary, schema=AB_SUMMARY_SCHEMA, preserve_index=False)
    _write_night(lake, run_date, totals, summary_table, record)
    return _step_result(record)


def _step_result(record: dict[str, Any]) -> dict[str, Any]:
    """The step's small return value, from its verdict record."""
    return {
        "run_date": record["run_date"],
        "experiment": record["experiment"],
        "final": record["final"],
        "verdict": record["verdict"],
        "p_value": record["p_value"],
        "lift": record["lift"],
        "ci_low": record["ci_low"],
        "ci_high": record["ci_high"],
        "srm_p_value": record["srm_p_value"],
        "users": {v: e["n_users"] for v, e in record["ctr"].items()},
        "night_events": record["night_events"],
        "scoreboard_met": {name: entry["met"] for name, entry in record["scoreboard"].items()},
    }


def read_verdict(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """The ``verdict.json`` written by :func:`ab_analysis` for ``run_date`` (reports, the simulator)."""
    return Lake(settings.home).read_json(Dataset.AB_RESULTS, as_run_date(run_date), VERDICT_FILE)


def _read_feedback(lake: Lake, run_date: date) -> pd.DataFrame:
    try:
        return lake.read_df(Dataset.FEEDBACK_EVENTS, run_date)
    except MissingDataError:
        # No app traffic yet (the first night of a deployment): an empty look, nothing to add.
        log.info("ab_analysis %s: no canonical feedback events for this night", run_date)
        return FEEDBACK_SCHEMA.empty_table().to_pandas()


def _previous_state(lake: Lake, run_date: date, ab: ABSettings) -> tuple[pd.DataFrame, float, int]:
    """Running totals, p-value and number of looks of the latest analysed night before ``run_date``."""
    prev = lake.latest_before(Dataset.AB_RESULTS, run_date)
    if prev is None or not lake.exists(Dataset.AB_RESULTS, prev, VERDICT_FILE):
        return _empty_totals(), 1.0, 0
    record = lake.read_json(Dataset.AB_RESULTS, prev, VERDICT_FILE)
    if record.get("experiment") != ab.experiment:
        log.warning(
            "ab_analysis %s: experiment changed (%r on %s -> %r); starting a new sequential test",
            run_date,
            record.get("experiment"),
            prev,
            ab.experiment,
        )
        return _empty_totals(), 1.0, 0
    totals = lake.read_df(Dataset.AB_RESULTS, prev, parts=[STATE_PART])
    for name in (C.NICHE_IMPRESSIONS, C.NICHE_CLICKS):
        if name not in totals.columns:  # state written before niche counts existed: they start tonight
            totals[name] = 0
    p = record.get("p_value")
    return totals, float(p) if p is not None else 1.0, int(record.get("looks", 0))


def _shown_lists(lake: Lake, run_date: date) -> tuple[date | None, pd.DataFrame]:
    """The lists users saw on ``run_date``: served_lists of the previous run date (else tonight's)."""
    cols = [C.USER_ID, C.DAYPART, C.ITEM_ID, C.VARIANT, C.IS_LONG_TAIL]
    for candidate in (lake.latest_before(Dataset.SERVED_LISTS, run_date), run_date):
        if candidate is not None and lake.has(Dataset.SERVED_LISTS, candidate):
            return candidate, lake.read_df(Dataset.SERVED_LISTS, candidate, columns=cols)
    return None, pd.DataFrame(columns=cols)


def _read_items(lake: Lake, run_date: date) -> pd.DataFrame:
    for candidate in (run_date, lake.latest_before(Dataset.ITEMS, run_date)):
        if candidate is not None and lake.has(Dataset.ITEMS, candidate):
            return lake.read_df(Dataset.ITEMS, candidate, columns=[C.ITEM_ID, C.GENRES])
    return pd.DataFrame(columns=[C.ITEM_ID, C.GENRES])


def _mean_rating(totals: pd.DataFrame, variant: str) -> float:
    rows = totals[totals[C.VARIANT] == variant]
    count = int(rows[C.RATING_COUNT].sum())
    return float(rows[C.RATING_SUM].sum()) / count if count else math.nan


def _summary_rows(
    run_date: date,
    experiment: str,
    night: pd.DataFrame,
    cumulative: pd.DataFrame,
    rating: dict[str, float],
    list_stats: dict[str, dict[str, float]],
) -> pa.Table:
    from deepcuts.models.abtest.ab_stats import per_user_mean, user_ctr

    rows: list[tuple[str, str, str, float]] = []
    for scope, frame in ((Scope.NIGHT, night), (Scope.CUMULATIVE, cumulative)):
        for variant in VARIANTS:
            part = frame[frame[C.VARIANT] == variant]
            est = user_ctr(part[C.CLICKS].to_numpy(), part[C.IMPRESSIONS].to_numpy())
            niche = per_user_mean(part.loc[part[C.IMPRESSIONS] > 0, C.NICHE_CLICKS].to_numpy())
            ratings = int(part[C.RATING_COUNT].sum())
            mean_rating = (
                rating[variant]
                if scope is Scope.CUMULATIVE
                else (float(part[C.RATING_SUM].sum()) / ratings if ratings else math.nan)
            )
            values = {
                ABMetric.USERS: est.n_users,
                ABMetric.IMPRESSIONS: est.impressions,
                ABMetric.CLICKS: est.clicks,
                ABMetric.CTR: est.ctr,
                ABMetric.CTR_SE: est.se,
                ABMetric.RATINGS: ratings,
                ABMetric.MEAN_RATING: mean_rating,
                ABMetric.NICHE_IMPRESSIONS: int(part[C.NICHE_IMPRESSIONS].sum()),
                ABMetric.NICHE_CLICKS: int(part[C.NICHE_CLICKS].sum()),
                ABMetric.NICHE_CLICKS_PER_USER: niche.ctr,
            }
            rows += [(scope.value, variant, m.value, float(v)) for m, v in values.items()]
    for variant, metrics in sorted(list_stats.items()):
        rows += [(Scope.LISTS.value, variant, m, float(v)) for m, v in sorted(metrics.items())]
    frame = pd.DataFrame(rows, columns=[C.SCOPE, C.VARIANT, C.METRIC, C.VALUE])
    # NaN (e.g. no rating yet) is stored as null by Arrow's pandas conversion
    frame.insert(0, C.EXPERIMENT, experiment)
    frame.insert(0, C.RUN_DATE, run_date)
    return pa.Table.from_pandas(frame, schema=AB_SUMMARY_SCHEMA, preserve_index=False)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def _num(x: Any) -> float | None:
    return float(x) if _finite(x) else None
