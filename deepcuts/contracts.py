"""Named data contracts: every column name, table name and Arrow schema, defined once.

Code refers to ``C.USER_ID`` rather than ``"user_id"``; the lake refers to ``Dataset.CANDIDATES`` rather
than a path string. docs/data-contracts.md documents each table; ``tests/pipelines/test_validation.py`` checks
that its table of quarantine reasons lists every :class:`Reason`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import pyarrow as pa


class C:
    """Column names."""

    # identities and the rating history
    USER_ID: Final = "user_id"
    ITEM_ID: Final = "item_id"
    RATING: Final = "rating"
    TS: Final = "ts"
    # catalog
    TITLE: Final = "title"
    GENRES: Final = "genres"
    YEAR: Final = "year"
    # feedback events (the app's log)
    EVENT_ID: Final = "event_id"
    EVENT_TS: Final = "event_ts"
    EVENT_TYPE: Final = "event_type"
    POSITION: Final = "position"
    ARM: Final = "arm"
    LIST_VERSION: Final = "list_version"
    VARIANT: Final = "variant"
    SEGMENT: Final = "segment"
    DAYPART: Final = "daypart"
    PROPENSITY: Final = "propensity"
    # pipeline outputs
    RUN_DATE: Final = "run_date"
    RANK: Final = "rank"
    SCORE: Final = "score"
    SHARD: Final = "shard"
    REASON: Final = "reason"
    EXPERIMENT: Final = "experiment"
    QUARANTINE_REASON: Final = "quarantine_reason"
    SOURCE_ROW: Final = "source_row"
    # a CSV line that cannot be parsed as one record: its 1-based line number in its file and its text
    SOURCE_LINE: Final = "source_line"
    RAW_LINE: Final = "raw_line"
    # deep-cut scores carried to serving
    NOVELTY: Final = "novelty"
    IS_LONG_TAIL: Final = "is_long_tail"
    QUALITY: Final = "quality"
    # deep-cut scores per candidate (scored) and per list (list_metrics); docs/deep-cuts.md
    RELEVANCE: Final = "relevance"
    POPULARITY_PERCENTILE: Final = "popularity_percentile"
    POPULARITY_SHARE: Final = "popularity_share"  # n_i / N (deepcuts.models.recommenders.item_stats)
    UNEXPECTEDNESS_GENRE: Final = "unexpectedness_genre"
    UNEXPECTEDNESS_EMBEDDING: Final = "unexpectedness_embedding"
    UNEXPECTEDNESS: Final = "unexpectedness"
    SERENDIPITY: Final = "serendipity"
    IS_NICHE: Final = "is_niche"
    N_ITEMS: Final = "n_items"
    ILD: Final = "ild"
    N_GENRES: Final = "n_genres"
    LONG_TAIL_SHARE: Final = "long_tail_share"
    MEAN_QUALITY: Final = "mean_quality"
    CALIBRATION_KL: Final = "calibration_kl"
    # A/B analysis (eval/ab): long-format summary and the per-user running totals of the experiment
    SCOPE: Final = "scope"
    METRIC: Final = "metric"
    VALUE: Final = "value"
    IMPRESSIONS: Final = "impressions"
    CLICKS: Final = "clicks"
    RATING_SUM: Final = "rating_sum"
    RATING_COUNT: Final = "rating_count"
    NICHE_IMPRESSIONS: Final = "niche_impressions"  # impressions of items with a niche genre
    NICHE_CLICKS: Final = "niche_clicks"  # clicks on items with a niche genre
    # design treatment share in force when an A/B user was first exposed (the SRM check's expectation)
    TREATMENT_SHARE: Final = "treatment_share"
    # offline evaluation (eval/offline)
    LIST_SOURCE: Final = "list_source"
    N_USERS: Final = "n_users"
    # bandit posterior, policy and off-policy evaluation (docs/bandit.md)
    ALPHA: Final = "alpha"
    BETA: Final = "beta"
    MEAN: Final = "mean"
    TRIALS: Final = "trials"
    SUCCESSES: Final = "successes"
    THOMPSON_PROBABILITY: Final = "thompson_probability"
    SELECTION_PROBABILITY: Final = "selection_probability"
    POLICY: Final = "policy"
    ESTIMATOR: Final = "estimator"
    ESTIMATE: Final = "estimate"
    CI_LOW: Final = "ci_low"
    CI_HIGH: Final = "ci_high"
    N_TRIALS: Final = "n_trials"
    ESS: Final = "ess"
    THIN_SUPPORT: Final = "thin_support"
    # monitoring checks and alerts (docs/monitoring.md)
    CHECK_NAME: Final = "check_name"
    CATEGORY: Final = "category"
    STATUS: Final = "status"
    SEVERITY: Final = "severity"
    THRESHOLD: Final = "threshold"
    MESSAGE: Final = "message"


class Reason(StrEnum):
    """Row-level quarantine reason codes (docs/data-contracts.md, "Reasons"). A reason about one column
    is written ``<code>:<column>`` (:meth:`of`); ``malformed_line`` stands alone."""

    MALFORMED_LINE = "malformed_line"
    NULL = "null"
    BAD_TYPE = "bad_type"
    EPOCH_UNIT = "epoch_unit"
    BAD_ENCODING = "bad_encoding"
    DUPLICATE = "duplicate"
    SEEN_BEFORE = "seen_before"
    BAD_VALUE = "bad_value"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN = "unknown"
    ANCIENT = "ancient"
    TOO_OLD = "too_old"
    FUTURE = "future"

    def of(self, column: str) -> str:
        """The reason for ``column``, e.g. ``bad_type:user_id``."""
        return f"{self.value}:{column}"


class EventType(StrEnum):
    IMPRESSION = "impression"
    CLICK = "click"
    RATING = "rating"


class Variant(StrEnum):
    CONTROL = "control"
    TREATMENT = "treatment"


class Segment(StrEnum):
    NEW = "new"
    CASUAL = "casual"
    POWER = "power"


class Daypart(StrEnum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"
    NIGHT = "night"


TS_TYPE: Final = pa.timestamp("us", tz="UTC")

ITEMS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.TITLE, pa.string()),
        pa.field(C.GENRES, pa.list_(pa.string())),
        pa.field(C.YEAR, pa.int32()),
    ]
)

INTERACTIONS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.RATING, pa.float32(), nullable=False),
        pa.field(C.TS, TS_TYPE, nullable=False),
    ]
)

FEEDBACK_SCHEMA: Final = pa.schema(
    [
        pa.field(C.EVENT_ID, pa.string(), nullable=False),
        pa.field(C.EVENT_TS, TS_TYPE, nullable=False),
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.EVENT_TYPE, pa.string(), nullable=False),
        pa.field(C.POSITION, pa.int32()),
        pa.field(C.RATING, pa.float32()),
        pa.field(C.ARM, pa.string()),
        pa.field(C.LIST_VERSION, pa.string()),
        pa.field(C.VARIANT, pa.string()),
        pa.field(C.SEGMENT, pa.string()),
        pa.field(C.DAYPART, pa.string()),
        pa.field(C.PROPENSITY, pa.float64()),
    ]
)

CANDIDATES_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.RANK, pa.int32(), nullable=False),
        pa.field(C.SCORE, pa.float32(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: Final per-arm lists after the deep-cut re-ranker (``score`` step), ``list_length`` rows per user and arm.
RERANKED_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.RANK, pa.int32(), nullable=False),
        pa.field(C.SCORE, pa.float32(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
        pa.field(C.NOVELTY, pa.float32(), nullable=False),
        pa.field(C.IS_LONG_TAIL, pa.bool_(), nullable=False),
        pa.field(C.QUALITY, pa.float32(), nullable=False),
        pa.field(C.REASON, pa.string(), nullable=False),
    ]
)

#: Every candidate of every arm with its deep-cut scores (``score`` step), parts ``{arm}/shard-NNNN``.
#: ``unexpectedness_embedding`` is null when no item embedding (svd artefact) was available.
SCORED_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.RANK, pa.int32(), nullable=False),
        pa.field(C.SCORE, pa.float32(), nullable=False),
        pa.field(C.RELEVANCE, pa.float32(), nullable=False),
        pa.field(C.NOVELTY, pa.float32(), nullable=False),
        pa.field(C.IS_LONG_TAIL, pa.bool_(), nullable=False),
        pa.field(C.POPULARITY_PERCENTILE, pa.float32(), nullable=False),
        pa.field(C.QUALITY, pa.float32(), nullable=False),
        pa.field(C.UNEXPECTEDNESS_GENRE, pa.float32(), nullable=False),
        pa.field(C.UNEXPECTEDNESS_EMBEDDING, pa.float32()),
        pa.field(C.UNEXPECTEDNESS, pa.float32(), nullable=False),
        pa.field(C.SERENDIPITY, pa.float32(), nullable=False),
        pa.field(C.IS_NICHE, pa.bool_(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: One row per (user, arm, list source): ``candidates`` = the arm's own top-L, ``reranked`` = the
#: re-ranker's list. ``ild`` is null for lists with fewer than 2 items.
LIST_METRICS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.LIST_SOURCE, pa.string(), nullable=False),
        pa.field(C.N_ITEMS, pa.int32(), nullable=False),
        pa.field(C.ILD, pa.float32()),
        pa.field(C.N_GENRES, pa.int32(), nullable=False),
        pa.field(C.LONG_TAIL_SHARE, pa.float32(), nullable=False),
        pa.field(C.MEAN_QUALITY, pa.float32(), nullable=False),
        pa.field(C.CALIBRATION_KL, pa.float32(), nullable=False),
        pa.field(C.NOVELTY, pa.float32(), nullable=False),
        pa.field(C.SERENDIPITY, pa.float32(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: Arm and A/B variant per (user, daypart) for the next day, with the bandit's selection probability.
ASSIGNMENTS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.DAYPART, pa.string(), nullable=False),
        pa.field(C.SEGMENT, pa.string(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.PROPENSITY, pa.float64(), nullable=False),
        pa.field(C.VARIANT, pa.string(), nullable=False),
        pa.field(C.EXPERIMENT, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: The lists the serving DB publishes: one list per (user, daypart).
SERVED_LISTS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.DAYPART, pa.string(), nullable=False),
        pa.field(C.RANK, pa.int32(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.VARIANT, pa.string(), nullable=False),
        pa.field(C.SCORE, pa.float32(), nullable=False),
        pa.field(C.NOVELTY, pa.float32(), nullable=False),
        pa.field(C.IS_LONG_TAIL, pa.bool_(), nullable=False),
        pa.field(C.REASON, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: Every list the night may serve, one per (user, variant, arm): the baseline list of each control user and
#: every served bandit arm's re-ranked list of each treatment user. The nightly publish loads them once; the
#: assignments (the night's and every intraday refresh's) pick one per (user, daypart), so a refresh that
#: switches a user's arm loads no list (docs/serving.md).
ARM_LISTS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.USER_ID, pa.int64(), nullable=False),
        pa.field(C.VARIANT, pa.string(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.RANK, pa.int32(), nullable=False),
        pa.field(C.ITEM_ID, pa.int64(), nullable=False),
        pa.field(C.SCORE, pa.float32(), nullable=False),
        pa.field(C.NOVELTY, pa.float32(), nullable=False),
        pa.field(C.IS_LONG_TAIL, pa.bool_(), nullable=False),
        pa.field(C.REASON, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: Beta posterior per (segment, daypart, arm) after run date D's feedback; ``trials``/``successes`` are the
#: evidence added on D (late-click corrections included in ``successes``), before the discount of D+1.
BANDIT_POSTERIOR_SCHEMA: Final = pa.schema(
    [
        pa.field(C.SEGMENT, pa.string(), nullable=False),
        pa.field(C.DAYPART, pa.string(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.ALPHA, pa.float64(), nullable=False),
        pa.field(C.BETA, pa.float64(), nullable=False),
        pa.field(C.TRIALS, pa.float64(), nullable=False),
        pa.field(C.SUCCESSES, pa.float64(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: The policy served on D+1: per context and arm the posterior, its mean, the raw Thompson probability
#: P(arm is the argmax of the Beta draws) and the selection probability after the exploration floor.
BANDIT_POLICY_SCHEMA: Final = pa.schema(
    [
        pa.field(C.SEGMENT, pa.string(), nullable=False),
        pa.field(C.DAYPART, pa.string(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.ALPHA, pa.float64(), nullable=False),
        pa.field(C.BETA, pa.float64(), nullable=False),
        pa.field(C.MEAN, pa.float64(), nullable=False),
        pa.field(C.THOMPSON_PROBABILITY, pa.float64(), nullable=False),
        pa.field(C.SELECTION_PROBABILITY, pa.float64(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: Off-policy estimates of the CTR per list impression: one row per (policy, estimator).
#: ``policy`` is ``logging``, ``posterior`` or ``arm:<name>``; ``estimator`` is ``ips``, ``snips`` or ``dr``.
OPE_SCHEMA: Final = pa.schema(
    [
        pa.field(C.POLICY, pa.string(), nullable=False),
        pa.field(C.ESTIMATOR, pa.string(), nullable=False),
        pa.field(C.ESTIMATE, pa.float64()),
        pa.field(C.CI_LOW, pa.float64()),
        pa.field(C.CI_HIGH, pa.float64()),
        pa.field(C.N_TRIALS, pa.int64(), nullable=False),
        pa.field(C.ESS, pa.float64()),
        pa.field(C.THIN_SUPPORT, pa.bool_(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)


#: Offline evaluation of one run date (``evaluate`` step), long format: one row per (list source, arm,
#: metric). ``list_source`` is ``previous_candidates`` (yesterday's top-k scored against the ratings that
#: arrived today) or ``candidates`` / ``reranked`` (beyond-accuracy metrics of today's top-k lists).
#: ``value`` is null when a metric is undefined (e.g. mean hit rating without any hit).
EVAL_OFFLINE_SCHEMA: Final = pa.schema(
    [
        pa.field(C.LIST_SOURCE, pa.string(), nullable=False),
        pa.field(C.ARM, pa.string(), nullable=False),
        pa.field(C.METRIC, pa.string(), nullable=False),
        pa.field(C.VALUE, pa.float64()),
        pa.field(C.N_USERS, pa.int64(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: One row per monitoring check of a run date (``monitor`` step). ``status`` is ``ok``, ``warning``,
#: ``critical`` or ``skipped`` (not judged: too little data); ``value`` is null when not computable.
MONITOR_CHECKS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.CHECK_NAME, pa.string(), nullable=False),
        pa.field(C.CATEGORY, pa.string(), nullable=False),
        pa.field(C.STATUS, pa.string(), nullable=False),
        pa.field(C.VALUE, pa.float64()),
        pa.field(C.THRESHOLD, pa.string(), nullable=False),
        pa.field(C.MESSAGE, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)

#: The failed checks of a run date (``monitor`` step); ``severity`` is ``warning`` or ``critical``.
#: The same rows go to the serving DB's ``alerts`` table; a critical one blocks the publish.
ALERTS_SCHEMA: Final = pa.schema(
    [
        pa.field(C.CHECK_NAME, pa.string(), nullable=False),
        pa.field(C.CATEGORY, pa.string(), nullable=False),
        pa.field(C.SEVERITY, pa.string(), nullable=False),
        pa.field(C.VALUE, pa.float64()),
        pa.field(C.THRESHOLD, pa.string(), nullable=False),
        pa.field(C.MESSAGE, pa.string(), nullable=False),
        pa.field(C.RUN_DATE, pa.date32(), nullable=False),
    ]
)


class Dataset(StrEnum):
    """Datasets in the lake. The value is the dataset's folder under the lake root.

    Data flows one way, in this order; a step reads only datasets listed before its own outputs.
    """

    LANDING_FEEDBACK = "landing/feedback_events"  # raw app logs dropped by the app, by event date
    ITEMS = "canonical/items"
    INTERACTIONS = "canonical/interactions"
    FEEDBACK_EVENTS = "canonical/feedback_events"
    QUARANTINE_ITEMS = "quarantine/items"
    QUARANTINE_INTERACTIONS = "quarantine/interactions"
    QUARANTINE_FEEDBACK = "quarantine/feedback_events"
    VALIDATION = "validation"  # per-run validation summaries
    MODELS = "models"  # model artefacts, one sub-folder per arm
    CANDIDATES = "candidates"  # per arm and user shard
    SCORED = "scored"  # candidates with deep-cut scores
    RERANKED = "reranked"  # final lists per arm after the re-ranker
    LIST_METRICS = "list_metrics"
    BANDIT_POSTERIOR = "bandit/posterior"
    BANDIT_POLICY = "bandit/policy"
    ASSIGNMENTS = "assignments"
    SERVED_LISTS = "served_lists"  # the list each (user, daypart) is served (the assignments' pick)
    ARM_LISTS = "arm_lists"  # every list the night may serve: what the serving DB loads
    EVAL_OFFLINE = "eval/offline"
    AB_RESULTS = "eval/ab"
    OPE = "eval/ope"
    ALERTS = "monitor/alerts"
    MONITOR_CHECKS = "monitor/checks"
    PUBLISH = "publish"
    REPORTS = "reports"
    EXPERIMENTS = "experiments"  # lake copy of the experiment registry (one file, not by run date)
    TUNING = "tuning"  # the weekly tune step's chosen hyperparameters per arm (tuning.json)
    # intraday refreshes (pipelines/intraday.py): partition = the day the feedback arrives, one part per slot
    INTRADAY_FEEDBACK = "intraday/feedback_events"
    INTRADAY_POSTERIOR = "intraday/posterior"
    INTRADAY_POLICY = "intraday/policy"
    INTRADAY_ASSIGNMENTS = "intraday/assignments"
    INTRADAY_SERVED_LISTS = "intraday/served_lists"
    INTRADAY_SUMMARY = "intraday/summary"


#: Schemas that the storage module enforces on write, per dataset.
SCHEMAS: Final[dict[Dataset, pa.Schema]] = {
    Dataset.ITEMS: ITEMS_SCHEMA,
    Dataset.INTERACTIONS: INTERACTIONS_SCHEMA,
    Dataset.FEEDBACK_EVENTS: FEEDBACK_SCHEMA,
    Dataset.LANDING_FEEDBACK: FEEDBACK_SCHEMA,
    Dataset.CANDIDATES: CANDIDATES_SCHEMA,
    Dataset.RERANKED: RERANKED_SCHEMA,
    Dataset.SCORED: SCORED_SCHEMA,
    Dataset.LIST_METRICS: LIST_METRICS_SCHEMA,
    Dataset.ASSIGNMENTS: ASSIGNMENTS_SCHEMA,
    Dataset.SERVED_LISTS: SERVED_LISTS_SCHEMA,
    Dataset.ARM_LISTS: ARM_LISTS_SCHEMA,
    Dataset.EVAL_OFFLINE: EVAL_OFFLINE_SCHEMA,
    Dataset.BANDIT_POSTERIOR: BANDIT_POSTERIOR_SCHEMA,
    Dataset.BANDIT_POLICY: BANDIT_POLICY_SCHEMA,
    Dataset.OPE: OPE_SCHEMA,
    Dataset.MONITOR_CHECKS: MONITOR_CHECKS_SCHEMA,
    Dataset.ALERTS: ALERTS_SCHEMA,
    Dataset.INTRADAY_FEEDBACK: FEEDBACK_SCHEMA,
    Dataset.INTRADAY_POSTERIOR: BANDIT_POSTERIOR_SCHEMA,
    Dataset.INTRADAY_POLICY: BANDIT_POLICY_SCHEMA,
    Dataset.INTRADAY_ASSIGNMENTS: ASSIGNMENTS_SCHEMA,
    Dataset.INTRADAY_SERVED_LISTS: SERVED_LISTS_SCHEMA,
}
