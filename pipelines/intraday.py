"""Intraday refreshes: the cheap part of learning (posterior and arm assignment) many times a day.

The nightly run stays the full retrain. Between two nights, refresh slot ``s`` of day ``E`` (slot ``s``
covers the events stamped before ``(s + 1) * 24 h / intraday.refreshes_per_day`` of ``E``) runs four
steps, one function each (DAG ``deepcuts_intraday``, one run per slot):

``ingest_refresh``  validate every landing file of ``E`` seen so far with the nightly ingest's own
                    rules (:func:`deepcuts.pipelines.ingest.rules_for`: late window, known users and
                    items, ids accepted on earlier nights, rating scale); keep the valid events
                    stamped before the slot's end -> ``intraday/feedback_events(E)`` part ``slot-NNNN``
``update_refresh``  ``posterior(E, s)`` = the nightly arithmetic (:func:`deepcuts.pipelines.bandit_update.
                    update_from_events`) on the newest nightly snapshot and the feedback window whose
                    day-``E`` partition is the slot's events -> ``intraday/posterior(E)``
``assign_refresh``  when the day's evidence changed since the newest earlier refreshed slot: the
                    policy of ``posterior(E, s)`` over the arms the night served (``intraday.
                    refresh_pooling = snapshot``: only the night's discounted snapshot is pooled
                    across contexts, the day's evidence is added unpooled), and a fresh draw of
                    the treatment arms of the night's assignments (users, segments, variants kept) ->
                    ``intraday/{policy,assignments,served_lists}(E)`` (the served lists are each
                    assignment's pick among the night's ``arm_lists``: no list is recomputed)
``publish_refresh`` the re-assignment as a new serving version of the night's run date
                    (:func:`deepcuts.pipelines.publish.publish` with ``PublishInputs`` without lists):
                    only the assignments and the policy are loaded, the version reads the night's lists
                    already in the serving DB; same gates, pin and atomic switch; its ``list_version``
                    is what the app logs on every impression.

No double counting: every slot is computed from the nightly snapshot plus the day's *cumulative*
feedback, never from an earlier slot, and the nightly ``bandit_update`` of ``E`` ignores the slots. A slot
whose feedback is complete equals the nightly posterior of ``E`` (tested). So a rerun of a slot rewrites
the same bytes, a missed slot is caught up by the next one, and the trial counts, the OPE inputs and the
A/B analysis of ``E`` do not depend on the cadence (they read ``canonical/feedback_events(E)``; every
event carries the exact propensity and the ``list_version`` of the refresh that chose its list).

Exact propensities: each refresh draws the treatment arms afresh (``derive_seed(bandit.seed, E,
"bandit.intraday_assign.slot-NNNN")``, counter-based per (user, daypart)), independent of everything
the policy was computed from, so the probability that a list was chosen is exactly the logged selection
probability of the refresh's policy.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.fs as pafs

from deepcuts.contracts import C, Dataset, Variant
from deepcuts.models.policy.bandit import BanditConfig, sample_arms, uniform_hash
from deepcuts.models.policy.context import DAYPARTS, category_codes, context_index
from deepcuts.pipelines.assign import policy_table, served_from_arm_lists
from deepcuts.pipelines.bandit_update import (
    _EVENT_COLUMNS,
    day_prior,
    policy_probabilities,
    posterior_arrays,
    posterior_frame,
    read_feedback_window,
    update_from_events,
)
from deepcuts.pipelines.storage import Lake, MissingDataError, as_run_date
from deepcuts.progress import get_logger
from deepcuts.seeds import derive_seed, rng_for
from deepcuts.settings import Settings

log = get_logger(__name__)

#: Intraday steps in the order the DAG runs them.
STEP_NAMES: tuple[str, ...] = ("ingest", "update", "assign", "publish")


# ----------------------------------------------------------------------------- slots
def slot_part(slot: int) -> str:
    """Part name of a slot's outputs (zero-padded: parts sort in slot order)."""
    return f"slot-{slot:04d}"


def slot_minutes(settings: Settings) -> int:
    return 1440 // settings.intraday.refreshes_per_day


def slot_end(settings: Settings, day: date, slot: int) -> pd.Timestamp:
    """End (exclusive, UTC) of slot ``slot`` of ``day``: events stamped before it belong to the slot."""
    _check_slot(settings, slot)
    start = pd.Timestamp(day.isoformat(), tz="UTC")
    return start + pd.Timedelta(minutes=(slot + 1) * slot_minutes(settings))


def slot_at(settings: Settings, moment: datetime) -> tuple[date, int]:
    """(day, slot) of the last slot that has ended at ``moment`` (a DAG run's data interval end):
    the run at 13:00 refreshes the slot 12:00-13:00; the run at 00:00 the previous day's last slot."""
    ts = pd.Timestamp(moment)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    last = ts - pd.Timedelta(microseconds=1)
    minute = last.hour * 60 + last.minute
    return last.date(), minute // slot_minutes(settings)


def _check_slot(settings: Settings, slot: int) -> None:
    n = settings.intraday.refreshes_per_day
    if not 0 <= slot < n:
        raise ValueError(f"refresh slot must lie in [0, {n}) (intraday.refreshes_per_day), got {slot}")


def _summary_name(slot: int, step: str) -> str:
    return f"{slot_part(slot)}.{step}.json"


def _write_summary(lake: Lake, day: date, slot: int, step: str, summary: dict[str, Any]) -> None:
    lake.write_json(Dataset.INTRADAY_SUMMARY, day, _summary_name(slot, step), summary)


def read_summaries(lake: Lake, day: date) -> dict[int, dict[str, Any]]:
    """Slot -> {step: summary} of every refresh of ``day`` that wrote one (report, monitoring)."""
    folder = lake.partition_dir(Dataset.INTRADAY_SUMMARY, day)
    if lake.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for info in lake.fs.get_file_info(pafs.FileSelector(folder)):
        name = info.base_name
        if not (name.startswith("slot-") and name.endswith(".json")):
            continue
        part, step, _ = name.split(".")
        slot = int(part.removeprefix("slot-"))
        out.setdefault(slot, {})[step] = lake.read_json(Dataset.INTRADAY_SUMMARY, day, name)
    return dict(sorted(out.items()))


def _earlier_slots(lake: Lake, dataset: Dataset, day: date, slot: int) -> list[int]:
    """Slots before ``slot`` of ``day`` that have a part of ``dataset``, newest first."""
    names = lake.parts(dataset, day) if lake.has(dataset, day) else []
    slots = sorted((int(n.removeprefix("slot-")) for n in names if n.startswith("slot-")), reverse=True)
    return [s for s in slots if s < slot]


def _nightly_base(lake: Lake, day: date, dataset: Dataset, what: str) -> date:
    base = lake.latest_before(dataset, day)
    if base is None:
        raise MissingDataError(
            f"intraday refresh of {day}: no nightly {dataset.value} before this day; a refresh needs a "
            f"completed nightly run ({what})"
        )
    if base != day - timedelta(days=1):
        log.warning(
            "intraday refresh of %s: newest nightly %s is from %s, not the day before", day, dataset, base
        )
    return base


# ----------------------------------------------------------------------------- monitoring
def refresh_warnings(
    settings: Settings, day: date, slot: int, events_in_slot: int, previous_events: int, newest: str | None
) -> list[dict[str, Any]]:
    """Warnings of one refresh, in the monitor's alert shape (check_name, category, severity, value,
    threshold, message): ``intraday_no_feedback`` when no event arrived since the newest earlier
    refresh of the day, ``intraday_feedback_lag`` when the newest valid event is older than
    ``intraday.max_feedback_lag_minutes`` before the slot's end. Never critical: a quiet hour must not
    block a publish."""
    alerts: list[dict[str, Any]] = []
    new = events_in_slot - previous_events
    if new <= 0:
        alerts.append(
            {
                "check_name": "intraday_no_feedback",
                "category": "intraday",
                "severity": "warning",
                "value": float(new),
                "threshold": "> 0 new events",
                "message": f"refresh {day} {slot_part(slot)}: no feedback arrived since the previous "
                "refresh (the app's log export or the transfer may be stalled)",
            }
        )
    end = slot_end(settings, day, slot)
    lag_limit = pd.Timedelta(minutes=settings.intraday.max_feedback_lag_minutes)
    if newest is not None and end - pd.Timestamp(newest) > lag_limit:
        lag = (end - pd.Timestamp(newest)).total_seconds() / 60
        alerts.append(
            {
                "check_name": "intraday_feedback_lag",
                "category": "intraday",
                "severity": "warning",
                "value": round(lag, 1),
                "threshold": f"<= {settings.intraday.max_feedback_lag_minutes} minutes",
                "message": f"refresh {day} {slot_part(slot)}: the newest feedback event is {lag:.0f} "
                f"minutes older than the slot's end ({newest})",
            }
        )
    for alert in alerts:
        alert["run_date"] = day.isoformat()
    return alerts


# ----------------------------------------------------------------------------- steps
def ingest_refresh(settings: Settings, day: date | str, slot: int) -> dict[str, Any]:
    """Validate the landing files of ``day`` seen so far; keep the valid events of slots ``0..slot``."""
    from deepcuts.pipelines.alerting import send_alerts
    from deepcuts.pipelines.ingest import SUMMARY_FILE, previous_seen, read_landing, rules_for
    from deepcuts.pipelines.validation import Kind, discard_results, validate_frame

    day = as_run_date(day)
    _check_slot(settings, slot)
    lake = Lake(settings.home)
    base = _nightly_base(lake, day, Dataset.INTERACTIONS, "ingest")
    users = lake.read_table(Dataset.INTERACTIONS, base, columns=[C.USER_ID]).column(C.USER_ID)
    known_users = pc.unique(users).to_numpy()
    known_items = lake.read_df(Dataset.ITEMS, base, columns=[C.ITEM_ID])[C.ITEM_ID].to_numpy(np.int64)
    rating_min, rating_max = lake.read_json(Dataset.VALIDATION, base, SUMMARY_FILE)["rating_scale"]
    # the same rules as the nightly ingest, without the volume floor (a slot is part of a day) and with
    # an empty slot allowed (the quiet hours)
    rules = rules_for(
        settings,
        Kind.FEEDBACK,
        day,
        (float(rating_min), float(rating_max)),
        known_items=known_items,
        known_users=known_users,
        seen_event_ids=previous_seen(lake, day),
        first_night=True,
    )
    landing = read_landing(lake, day)
    try:
        outcome = validate_frame(
            landing.frame, Kind.FEEDBACK, rules, name=f"landing {day} {slot_part(slot)}", run_date=day
        )
    finally:
        discard_results()  # no Data Docs every hour; the nightly ingest renders the day's
    valid = outcome.valid
    end = slot_end(settings, day, slot)
    in_slot = valid[pd.to_datetime(valid[C.EVENT_TS], utc=True) < end] if len(valid) else valid
    lake.write_table(Dataset.INTRADAY_FEEDBACK, day, in_slot, part=slot_part(slot))

    done = read_summaries(lake, day)
    earlier = [s for s in done if s < slot and "ingest" in done[s]]
    previous_events = int(done[earlier[-1]]["ingest"]["events"]) if earlier else 0
    newest = pd.to_datetime(in_slot[C.EVENT_TS], utc=True).max() if len(in_slot) else None
    newest_iso = newest.isoformat() if newest is not None else None
    alerts = refresh_warnings(settings, day, slot, len(in_slot), previous_events, newest_iso)
    if alerts:
        send_alerts(settings, alerts)
    summary = {
        "day": day.isoformat(),
        "slot": slot,
        "slot_end": end.isoformat(),
        "nightly_base": base.isoformat(),
        "landing_files": landing.files,
        "rows_in": outcome.rows_in,
        "accepted": outcome.accepted,
        "quarantined": outcome.quarantined,
        "quarantine_reasons": outcome.summary().get("reasons", {}),
        "after_slot_end": int(len(valid) - len(in_slot)),
        "events": len(in_slot),
        "new_events": len(in_slot) - previous_events,
        "newest_event_ts": newest_iso,
        "alerts": alerts,
    }
    _write_summary(lake, day, slot, "ingest", summary)
    log.info(
        "intraday ingest %s %s: %d events (%d new)", day, slot_part(slot), len(in_slot), summary["new_events"]
    )
    return summary


def refresh_events(lake: Lake, settings: Settings, day: date, slot: int) -> pd.DataFrame:
    """The feedback window of ``day`` as the nightly ``bandit_update`` would read it, with the day's
    own partition replaced by the slot's validated events (``offset`` 0)."""
    today = lake.read_df(Dataset.INTRADAY_FEEDBACK, day, parts=[slot_part(slot)], columns=_EVENT_COLUMNS)
    window = read_feedback_window(lake, day - timedelta(days=1), settings.ingest.late_window_days)
    window = window.assign(offset=window["offset"].astype(np.int64) + 1)
    frames = [f for f in (window, today.assign(offset=0)) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else today.assign(offset=0)


def update_refresh(settings: Settings, day: date | str, slot: int) -> dict[str, Any]:
    """``posterior(E, s)``: the newest nightly snapshot, discounted, plus the day's evidence so far."""
    day = as_run_date(day)
    _check_slot(settings, slot)
    lake = Lake(settings.home)
    _nightly_base(lake, day, Dataset.BANDIT_POSTERIOR, "bandit_update")
    update = update_from_events(settings, lake, day, refresh_events(lake, settings, day, slot))
    ev = update.evidence
    frame = posterior_frame(
        update.alpha, update.beta, tuple(settings.bandit.arms), day, ev.trials, ev.successes
    )
    lake.write_table(Dataset.INTRADAY_POSTERIOR, day, frame, part=slot_part(slot))
    summary = {
        "day": day.isoformat(),
        "slot": slot,
        "previous_snapshot": update.previous.isoformat() if update.previous else None,
        **update.stats,
        **ev.stats,
        "clipped_beta": update.clipped,
    }
    _write_summary(lake, day, slot, "update", summary)
    return summary


def redraw_arms(assignments: pd.DataFrame, selection: np.ndarray, arms: list[str], seed: int) -> pd.DataFrame:
    """The night's assignments with every treatment (user, daypart) given an arm drawn afresh from its
    context's ``selection`` row (``u = splitmix64(seed, 4 * user_id + daypart_index)``) and that arm's
    probability as propensity; control rows, segments and variants unchanged."""
    out = assignments.copy()
    treated = (out[C.VARIANT] == Variant.TREATMENT.value).to_numpy()
    day_idx = category_codes(out[C.DAYPART].to_numpy(object), DAYPARTS)
    ctx = context_index(out[C.SEGMENT].to_numpy(object), out[C.DAYPART].to_numpy(object))
    if ((day_idx < 0) | (ctx < 0))[treated].any():
        raise ValueError("assignments with an unknown segment or daypart cannot be redrawn")
    keys = out[C.USER_ID].to_numpy(np.int64) * len(DAYPARTS) + day_idx
    arm_idx = sample_arms(selection, np.maximum(ctx, 0), uniform_hash(keys, seed))
    arm = np.where(treated, np.asarray(arms, dtype=object)[arm_idx], out[C.ARM].to_numpy(object))
    propensity = np.where(
        treated, selection[np.maximum(ctx, 0), arm_idx], out[C.PROPENSITY].to_numpy(np.float64)
    )
    return out.assign(**{C.ARM: arm, C.PROPENSITY: propensity.astype(np.float64)})


def _served_arms(settings: Settings, policy: pd.DataFrame) -> list[str]:
    """The arms the night's policy served, in ``bandit.arms`` order (a refresh never adds an arm)."""
    present = set(policy[C.ARM].unique())
    return [a for a in settings.bandit.arms if a in present]


def _evidence(lake: Lake, day: date, slot: int) -> pd.DataFrame:
    frame = lake.read_df(Dataset.INTRADAY_POSTERIOR, day, parts=[slot_part(slot)])
    return frame[[C.SEGMENT, C.DAYPART, C.ARM, C.TRIALS, C.SUCCESSES]]


def evidence_changed(lake: Lake, day: date, slot: int) -> tuple[bool, int | None]:
    """(the day's evidence at ``slot`` differs from that of the newest earlier re-assigned slot, that
    slot); with no earlier re-assignment, whether the day has any evidence at all."""
    now = _evidence(lake, day, slot)
    for earlier in _earlier_slots(lake, Dataset.INTRADAY_ASSIGNMENTS, day, slot):
        if lake.has(Dataset.INTRADAY_POSTERIOR, day, slot_part(earlier)):
            return not now.equals(_evidence(lake, day, earlier)), earlier
    return bool((now[C.TRIALS] != 0).any() or (now[C.SUCCESSES] != 0).any()), None


def assign_refresh(settings: Settings, day: date | str, slot: int) -> dict[str, Any]:
    """Re-assign the treatment arms from ``posterior(E, s)`` when the day's evidence changed."""
    day = as_run_date(day)
    _check_slot(settings, slot)
    lake = Lake(settings.home)
    part = slot_part(slot)
    run_date = _nightly_base(lake, day, Dataset.ASSIGNMENTS, "assign")
    changed, since = evidence_changed(lake, day, slot)
    summary: dict[str, Any] = {"day": day.isoformat(), "slot": slot, "run_date": run_date.isoformat()}
    if not changed:
        for dataset in (Dataset.INTRADAY_POLICY, Dataset.INTRADAY_ASSIGNMENTS, Dataset.INTRADAY_SERVED_LISTS):
            _delete_part(lake, dataset, day, part)  # a rerun after the inputs changed stays consistent
        summary.update(status="no_change", same_evidence_as_slot=since)
        _write_summary(lake, day, slot, "assign", summary)
        log.info("intraday assign %s %s: evidence unchanged since slot %s; nothing to do", day, part, since)
        return summary

    cfg = settings.bandit
    config = BanditConfig.from_settings(cfg)
    arms = _served_arms(settings, lake.read_df(Dataset.BANDIT_POLICY, run_date, columns=[C.ARM]))
    posterior = lake.read_df(Dataset.INTRADAY_POSTERIOR, day, parts=[part])
    alpha, beta = posterior_arrays(posterior, tuple(arms), config)
    # "snapshot": pool only the night's snapshot (discounted as update_refresh discounts it) and add the
    # day's evidence unpooled; a part of a day neither re-estimates the pooling caps nor reaches the
    # neighbours (docs/bandit.md, "Intraday refreshes")
    snapshot = None
    if settings.intraday.refresh_pooling == "snapshot":
        snapshot = day_prior(lake, day, tuple(arms), config)[:2]
    a_eff, b_eff, thompson, selection = policy_probabilities(
        alpha, beta, config, rng_for(cfg.seed, day, f"bandit.selection_mc.{part}"), snapshot
    )
    policy = policy_table(a_eff, b_eff, thompson, selection, arms, run_date)
    nightly = lake.read_df(Dataset.ASSIGNMENTS, run_date)
    assignments = redraw_arms(
        nightly, selection, arms, derive_seed(cfg.seed, day, f"bandit.intraday_assign.{part}")
    )

    # what the app will see (the simulator serves from it): each assignment's pick among the night's lists
    lists, missing = served_from_arm_lists(assignments, lake.read_df(Dataset.ARM_LISTS, run_date), run_date)
    lake.write_table(Dataset.INTRADAY_POLICY, day, policy, part=part)
    lake.write_table(Dataset.INTRADAY_ASSIGNMENTS, day, assignments, part=part)
    lake.write_table(Dataset.INTRADAY_SERVED_LISTS, day, lists, part=part)
    treated = (assignments[C.VARIANT] == Variant.TREATMENT.value).to_numpy()
    moved = int((assignments[C.ARM].to_numpy(object) != nightly[C.ARM].to_numpy(object))[treated].sum())
    summary.update(
        status="assigned",
        since_slot=since,
        arms=arms,
        treatment_assignments=int(treated.sum()),
        arm_changed_vs_night=moved,
        assignments_without_list=int(missing),
        selection_probability={
            f"{seg}/{dp}": {
                arm: round(float(p), 4) for arm, p in grp[[C.ARM, C.SELECTION_PROBABILITY]].values
            }
            for (seg, dp), grp in policy.groupby([C.SEGMENT, C.DAYPART], sort=False)
        },
    )
    _write_summary(lake, day, slot, "assign", summary)
    log.info(
        "intraday assign %s %s: %d of %d treatment arms differ from the night's",
        day,
        part,
        moved,
        treated.sum(),
    )
    return summary


def _delete_part(lake: Lake, dataset: Dataset, day: date, part: str) -> None:
    if lake.has(dataset, day, part):
        lake.fs.delete_file(lake.file_path(dataset, day, part + ".parquet"))


def publish_refresh(settings: Settings, day: date | str, slot: int) -> dict[str, Any]:
    """Publish the slot's re-assignment as a new version of the night's run date (gates, pin, switch)."""
    from deepcuts.pipelines.publish import PublishInputs, publish

    day = as_run_date(day)
    _check_slot(settings, slot)
    lake = Lake(settings.home)
    part = slot_part(slot)
    summary: dict[str, Any] = {"day": day.isoformat(), "slot": slot}
    done = read_summaries(lake, day)
    live = ("published", "unchanged")
    later = [s for s in done if s > slot and done[s].get("publish", {}).get("status") in live]
    if not settings.intraday.publish:
        summary["status"] = "disabled"
    elif not lake.has(Dataset.INTRADAY_ASSIGNMENTS, day, part):
        summary["status"] = "no_change"
    elif later:
        # a rerun of an old slot must not put an older policy back live
        summary.update(status="superseded", later_slots=later)
    else:
        # assignments and policy only: the version reads the night's lists already in the serving DB
        inputs = PublishInputs(
            assignments=lake.read_df(Dataset.INTRADAY_ASSIGNMENTS, day, parts=[part]),
            policy=lake.read_df(Dataset.INTRADAY_POLICY, day, parts=[part]),
        )
        run_date = inputs.assignments[C.RUN_DATE].iloc[0]
        result = publish(settings, as_run_date(run_date), inputs=inputs)
        keep = (
            "status",
            "version",
            "list_version",
            "lists_version",
            "run_date",
            "checksum",
            "changed_share",
        )
        summary.update({k: result.get(k) for k in keep})
    _write_summary(lake, day, slot, "publish", summary)
    log.info("intraday publish %s %s: %s", day, part, summary["status"])
    return summary


def refresh(settings: Settings, day: date | str, slot: int) -> dict[str, Any]:
    """All four steps of one refresh in one process (the simulator, tests, ``deepcuts intraday``)."""
    day = as_run_date(day)
    return {
        "ingest": ingest_refresh(settings, day, slot),
        "update": update_refresh(settings, day, slot),
        "assign": assign_refresh(settings, day, slot),
        "publish": publish_refresh(settings, day, slot),
    }


def now_slot(settings: Settings) -> tuple[date, int]:
    """(day, slot) of the newest slot that has ended now (manual runs)."""
    return slot_at(settings, datetime.now(UTC))
