"""Nightly step ``bandit_update``: posterior(D) = update(posterior(D-1), feedback_events(D)).

Attribution rule (docs/bandit.md has the full text and the reasons):

- unit (one Bernoulli trial): one list impression = one ``(user_id, daypart, list_version, service
  day)`` key of the treatment variant (the service day runs from the morning start hour to the next,
  so a night list never splits); its context is the logged (segment, daypart), its arm the logged arm;
- reward: 1 if any ``click`` event carries the same key, else 0; positions are logged but do not weight
  the reward; ``rating`` events and control-variant events do not train the bandit;
- duplicates: events are de-duplicated by ``event_id`` across the look-back window (the first arrival
  counts), so a replayed or duplicated log line can never count twice;
- arrival: a key counts as a trial on the first run date whose partition holds any of its events, with
  the reward seen in that partition. A click arriving on a later day D for a key already counted as a
  failure on day D-k converts that failure: ``alpha += d**k``, ``beta -= d**k`` — exactly the posterior
  the click would have produced on time, since the failure has been discounted ``k`` times since.
  Clicks are looked up ``settings.ingest.late_window_days + 1`` days back (older keys are unseen and
  their clicks count as new successful trials).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from deepcuts.contracts import C, Dataset, EventType, Variant
from deepcuts.models.policy.bandit import (
    BanditConfig,
    discount_toward_prior,
    pool_snapshot_with,
    pool_with,
    selection_probabilities,
)
from deepcuts.models.policy.context import (
    CONTEXTS,
    DAYPARTS,
    category_codes,
    context_arm_frame,
    context_index,
    pooling_groups,
)
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.progress import get_logger
from deepcuts.settings import Settings

log = get_logger(__name__)

_EVENT_COLUMNS = [
    C.EVENT_ID,
    C.EVENT_TS,
    C.USER_ID,
    C.EVENT_TYPE,
    C.ARM,
    C.LIST_VERSION,
    C.VARIANT,
    C.SEGMENT,
    C.DAYPART,
    C.PROPENSITY,
]
#: Column of the per-key frame: days between the run date and the partition of the key's first event.
FIRST_OFFSET = "first_offset"
#: Column: days between the run date and the partition of the key's first click (-1 = no click).
CLICK_OFFSET = "click_offset"
#: Column: the service day of a list impression (days since 1970-01-01, see :func:`service_day`).
SERVICE_DAY = "service_day"
CONTEXT = "context"
ARM_INDEX = "arm_index"
REWARD = "reward"


@dataclass(frozen=True)
class Evidence:
    """The day's evidence per (context, arm) and how it was attributed."""

    trials: np.ndarray  # contexts x arms: new list impressions counted on D
    successes: np.ndarray  # contexts x arms: their clicks + late-click corrections (weights d**k)
    stats: dict[str, int | float]


def read_feedback_window(lake: Lake, run_date: date, days_back: int) -> pd.DataFrame:
    """Feedback events of partitions ``run_date - days_back`` .. ``run_date`` with an ``offset`` column.

    ``offset`` = days between ``run_date`` and the event's partition (0 = arrived on ``run_date``).
    Missing partitions are empty days.
    """
    frames = []
    for offset in range(days_back, -1, -1):
        day = run_date - timedelta(days=offset)
        try:
            frame = lake.read_df(Dataset.FEEDBACK_EVENTS, day, columns=_EVENT_COLUMNS)
        except MissingDataError:
            continue
        frames.append(frame.assign(offset=offset))
    if not frames:
        return pd.DataFrame({col: pd.Series(dtype=object) for col in [*_EVENT_COLUMNS, "offset"]})
    return pd.concat(frames, ignore_index=True)


def service_day(event_ts: pd.Series, day_start_hour: int) -> np.ndarray:
    """Days since 1970-01-01 of the "service day" of each timestamp: the day runs from
    ``day_start_hour`` (the morning start) to the same hour the next day, so the night daypart
    (23:00-06:00 by default) belongs to the evening before and never splits across two days."""
    ts = pd.to_datetime(event_ts, utc=True)
    micros = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    shifted = micros.to_numpy(np.int64) - day_start_hour * 3_600_000_000
    return np.floor_divide(shifted, 86_400_000_000)


def attribute_list_impressions(
    events: pd.DataFrame, arms: tuple[str, ...], day_start_hour: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per treatment list impression, with its context, arm, propensity and click offsets.

    A list impression is a ``(user_id, daypart, list_version, service day)`` key (the app may keep a
    list version for several days when a publish is held back: each day's showing is its own trial).
    ``events`` are feedback rows with an ``offset`` column (see :func:`read_feedback_window`). Returns
    (frame with ``user_id, daypart, list_version, service_day, context, arm_index, propensity,
    first_offset, click_offset``, sorted by key; counters of what was dropped and why).
    """
    stats: dict[str, int] = {"events_in": len(events)}
    if events.empty:
        empty = pd.DataFrame(
            {
                C.USER_ID: np.empty(0, np.int64),
                C.DAYPART: np.empty(0, object),
                C.LIST_VERSION: np.empty(0, object),
                SERVICE_DAY: np.empty(0, np.int64),
                CONTEXT: np.empty(0, np.int64),
                ARM_INDEX: np.empty(0, np.int64),
                C.PROPENSITY: np.empty(0, np.float64),
                FIRST_OFFSET: np.empty(0, np.int64),
                CLICK_OFFSET: np.empty(0, np.int64),
            }
        )
        return empty, stats | {"duplicate_events": 0, "unattributable_events": 0, "control_events": 0}
    frame = events
    # earliest arrival first, impressions before clicks, then time: "first" is well defined
    frame = frame.assign(_is_click=(frame[C.EVENT_TYPE] == EventType.CLICK.value))
    # (a stable sort keeps the read order, which is deterministic, among exact ties)
    frame = frame.sort_values(
        ["offset", "_is_click", C.EVENT_TS],
        ascending=[False, True, True],
        kind="stable",
    )
    before = len(frame)
    frame = frame.drop_duplicates(C.EVENT_ID, keep="first")
    stats["duplicate_events"] = before - len(frame)
    is_treatment = frame[C.VARIANT] == Variant.TREATMENT.value
    stats["control_events"] = int((~is_treatment).sum())
    relevant = frame[C.EVENT_TYPE].isin([EventType.IMPRESSION.value, EventType.CLICK.value])
    frame = frame[is_treatment & relevant].copy()
    frame[CONTEXT] = context_index(frame[C.SEGMENT], frame[C.DAYPART])
    frame[ARM_INDEX] = category_codes(frame[C.ARM], arms)
    propensity = frame[C.PROPENSITY].to_numpy(np.float64, na_value=np.nan)
    ok = (
        (frame[CONTEXT] >= 0)
        & (frame[ARM_INDEX] >= 0)
        & frame[C.LIST_VERSION].notna()
        & (propensity > 0)
        & (propensity <= 1)
    )
    stats["unattributable_events"] = int((~ok).sum())
    frame = frame[ok]
    # group on integers only (strings are slow to hash at millions of rows): the daypart is the
    # context's daypart, the list version its rank among the sorted distinct versions
    versions, version_names = pd.factorize(frame[C.LIST_VERSION], sort=True)
    frame = frame.assign(
        _click_off=np.where(frame["_is_click"], frame["offset"], -1),
        _daypart=frame[CONTEXT].to_numpy(np.int64) % len(DAYPARTS),
        _version=versions,
        **{SERVICE_DAY: service_day(frame[C.EVENT_TS], day_start_hour)},
    )
    keys = [C.USER_ID, "_daypart", "_version", SERVICE_DAY]
    grouped = frame.groupby(keys, sort=True)
    out = grouped.agg(
        **{
            CONTEXT: (CONTEXT, "first"),
            ARM_INDEX: (ARM_INDEX, "first"),
            C.PROPENSITY: (C.PROPENSITY, "first"),
            FIRST_OFFSET: ("offset", "max"),
            CLICK_OFFSET: ("_click_off", "max"),
            "_arms": (ARM_INDEX, "nunique"),
        }
    ).reset_index()
    stats["keys_with_conflicting_arms"] = int((out.pop("_arms") > 1).sum())
    out.insert(1, C.DAYPART, np.asarray(DAYPARTS, dtype=object)[out.pop("_daypart").to_numpy(np.int64)])
    names = np.asarray(version_names, dtype=object)
    out.insert(2, C.LIST_VERSION, names[out.pop("_version").to_numpy(np.int64)])
    out[C.USER_ID] = out[C.USER_ID].astype(np.int64)
    for col in (SERVICE_DAY, CONTEXT, ARM_INDEX, FIRST_OFFSET, CLICK_OFFSET):
        out[col] = out[col].astype(np.int64)
    out[C.PROPENSITY] = out[C.PROPENSITY].astype(np.float64)
    return out, stats


def daily_evidence(keys: pd.DataFrame, n_arms: int, discount: float) -> Evidence:
    """Trials and successes per (context, arm) that arrive on the run date (offset 0), by the rule above."""
    shape = (len(CONTEXTS), n_arms)
    first = keys[FIRST_OFFSET].to_numpy(np.int64)
    click = keys[CLICK_OFFSET].to_numpy(np.int64)
    ctx = keys[CONTEXT].to_numpy(np.int64)
    arm = keys[ARM_INDEX].to_numpy(np.int64)
    new = first == 0
    success = new & (click == 0)
    late = (first > 0) & (click == 0)
    trials = np.zeros(shape)
    successes = np.zeros(shape)
    np.add.at(trials, (ctx[new], arm[new]), 1.0)
    np.add.at(successes, (ctx[success], arm[success]), 1.0)
    np.add.at(successes, (ctx[late], arm[late]), discount ** first[late].astype(np.float64))
    stats: dict[str, int | float] = {
        "trials": int(new.sum()),
        "clicked_trials": int(success.sum()),
        "late_click_corrections": int(late.sum()),
    }
    return Evidence(trials=trials, successes=successes, stats=stats)


def posterior_frame(
    alpha: np.ndarray,
    beta: np.ndarray,
    arms: tuple[str, ...],
    run_date: date,
    trials: np.ndarray | None = None,
    successes: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long table (contexts x arms rows, canonical order) following BANDIT_POSTERIOR_SCHEMA."""
    zeros = np.zeros_like(alpha)
    return context_arm_frame(
        arms,
        run_date,
        {
            C.ALPHA: alpha,
            C.BETA: beta,
            C.TRIALS: zeros if trials is None else trials,
            C.SUCCESSES: zeros if successes is None else successes,
        },
    )


def posterior_arrays(
    frame: pd.DataFrame, arms: tuple[str, ...], config: BanditConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) as contexts x arms arrays; (context, arm) pairs absent from ``frame`` get the prior."""
    alpha = np.full((len(CONTEXTS), len(arms)), config.prior_alpha)
    beta = np.full((len(CONTEXTS), len(arms)), config.prior_beta)
    if frame.empty:
        return alpha, beta
    ctx = context_index(frame[C.SEGMENT].to_numpy(object), frame[C.DAYPART].to_numpy(object))
    arm = category_codes(frame[C.ARM].to_numpy(object), arms)
    ok = (ctx >= 0) & (arm >= 0)
    alpha[ctx[ok], arm[ok]] = frame[C.ALPHA].to_numpy(np.float64)[ok]
    beta[ctx[ok], arm[ok]] = frame[C.BETA].to_numpy(np.float64)[ok]
    return alpha, beta


def policy_probabilities(
    alpha: np.ndarray,
    beta: np.ndarray,
    config: BanditConfig,
    rng: np.random.Generator,
    snapshot: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, beta used for the choice, Thompson probabilities, selection probabilities) per context
    and arm: the stored posterior, pooled across contexts when ``bandit.pooling`` asks for it. With
    ``snapshot`` (the (alpha, beta) that ``alpha``/``beta`` add the day's evidence to: an intraday
    refresh, ``intraday.refresh_pooling = snapshot``) only the snapshot is pooled
    (:func:`pool_snapshot_with`)."""
    groups = pooling_groups(config.pooling)
    if snapshot is None:
        a_eff, b_eff, caps = pool_with(config, alpha, beta, groups)
    else:
        a_eff, b_eff, caps = pool_snapshot_with(config, snapshot[0], snapshot[1], alpha, beta, groups)
    if caps:
        log.info(
            "bandit policy: %s pooling, %s rule, pseudo-trials borrowed at most %s per group",
            config.pooling,
            config.pooling_rule,
            {k: round(v, 1) for k, v in caps.items()},
        )
    thompson, selection = selection_probabilities(a_eff, b_eff, config, rng)
    return a_eff, b_eff, thompson, selection


def load_posterior(
    lake: Lake, run_date: date, arms: tuple[str, ...], config: BanditConfig
) -> tuple[np.ndarray, np.ndarray, date | None]:
    """The newest posterior snapshot strictly before ``run_date`` (prior if none), as arrays, and its date."""
    previous = lake.latest_before(Dataset.BANDIT_POSTERIOR, run_date)
    if previous is None:
        alpha, beta = posterior_arrays(pd.DataFrame(), arms, config)
        return alpha, beta, None
    alpha, beta = posterior_arrays(lake.read_df(Dataset.BANDIT_POSTERIOR, previous), arms, config)
    return alpha, beta, previous


def day_prior(
    lake: Lake, run_date: date, arms: tuple[str, ...], config: BanditConfig
) -> tuple[np.ndarray, np.ndarray, date | None]:
    """What ``run_date``'s evidence is added to: the newest earlier snapshot discounted once per day
    since it (the prior if none), as arrays over ``arms``, and the snapshot's date."""
    alpha, beta, previous = load_posterior(lake, run_date, arms, config)
    if previous is None:
        log.info("bandit_update %s: no earlier posterior snapshot, starting from the prior", run_date)
        gap = 1
    else:
        gap = (run_date - previous).days
        if gap > 1:
            log.warning(
                "bandit_update %s: newest earlier posterior is from %s (%d days back); the feedback of "
                "the days in between was not counted (run bandit_update for them first to include it)",
                run_date,
                previous,
                gap,
            )
    alpha, beta = discount_toward_prior(
        alpha, beta, config.prior_alpha, config.prior_beta, config.discount, gap
    )
    return alpha, beta, previous


@dataclass(frozen=True)
class PosteriorUpdate:
    """``posterior(D)`` computed from the previous snapshot and attributed events (not yet written)."""

    alpha: np.ndarray
    beta: np.ndarray
    evidence: Evidence
    stats: dict[str, int]
    previous: date | None
    clipped: int


def update_from_events(
    settings: Settings, lake: Lake, run_date: date, events: pd.DataFrame
) -> PosteriorUpdate:
    """The posterior of ``run_date`` from the newest earlier snapshot and ``events`` (feedback rows with
    an ``offset`` column, :func:`read_feedback_window`): the arithmetic of :func:`bandit_update`, shared
    with the intraday refreshes (pipelines/intraday.py) so both count a trial the same way."""
    cfg = settings.bandit
    config = BanditConfig.from_settings(cfg)
    arms = tuple(cfg.arms)
    alpha, beta, previous = day_prior(lake, run_date, arms, config)
    keys, stats = attribute_list_impressions(events, arms, cfg.daypart_starts[0])
    evidence = daily_evidence(keys, len(arms), config.discount)

    alpha = alpha + evidence.successes
    beta = beta + evidence.trials - evidence.successes
    clipped = int((beta < config.prior_beta - 1e-12).sum())
    if clipped:
        # only possible when a late click converts a failure whose snapshot was never written
        log.warning(
            "bandit_update %s: %d beta values below the prior after late corrections, clipped",
            run_date,
            clipped,
        )
        beta = np.maximum(beta, config.prior_beta)
    return PosteriorUpdate(alpha, beta, evidence, stats, previous, clipped)


def bandit_update(settings: Settings, run_date: date) -> dict[str, Any]:
    """Update the Beta posteriors with the feedback that arrived on ``run_date``; write the snapshot.

    ``alpha(D) = a0 + d**g (alpha(P) - a0) + successes(D)``, ``beta(D) = b0 + d**g (beta(P) - b0) +
    trials(D) - successes(D)``, where ``P`` is the newest earlier snapshot and ``g = D - P`` in days
    (``g = 1`` normally; the prior when no snapshot exists). Idempotent: the output depends only on the
    lake's inputs, so a rerun writes the same bytes.
    """
    arms = tuple(settings.bandit.arms)
    lake = Lake(settings.home)
    feedback_today = lake.has(Dataset.FEEDBACK_EVENTS, run_date)
    if not feedback_today:
        log.warning(
            "bandit_update %s: no feedback_events partition for this date; no evidence added", run_date
        )
    lake.require_inputs(run_date, Dataset.FEEDBACK_EVENTS, missing_ok=True)
    events = read_feedback_window(lake, run_date, settings.ingest.late_window_days + 1)
    update = update_from_events(settings, lake, run_date, events)
    alpha, beta, evidence, stats = update.alpha, update.beta, update.evidence, update.stats
    previous, clipped = update.previous, update.clipped

    frame = posterior_frame(alpha, beta, arms, run_date, evidence.trials, evidence.successes)
    path = lake.write_table(Dataset.BANDIT_POSTERIOR, run_date, frame)
    lake.mark_all_complete()
    trials_today = evidence.stats["trials"]
    result: dict[str, Any] = {
        "run_date": run_date.isoformat(),
        "previous_snapshot": previous.isoformat() if previous else None,
        "feedback_partition_present": feedback_today,
        **stats,
        **evidence.stats,
        "clipped_beta": clipped,
        "observed_ctr": (evidence.stats["clicked_trials"] / trials_today) if trials_today else None,
        "path": path,
    }
    log.info(
        "bandit_update %s: %d trials, %d clicks, %d late corrections, %d duplicate events dropped",
        run_date,
        evidence.stats["trials"],
        evidence.stats["clicked_trials"],
        evidence.stats["late_click_corrections"],
        stats.get("duplicate_events", 0),
    )
    return result
