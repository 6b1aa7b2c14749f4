"""The closed-loop simulator: the real nightly steps, then a simulated app and simulated users, N times.

Night ``k`` (1..N) has run date ``D_k = first_night + (k - 1)``:

1. ``run_night(settings, D_k)`` runs every step of the registry (ingest of ``landing/feedback_events(D_k)``
   written by the previous day of the simulation, train, candidates, score, bandit update, assign, the
   evaluations, monitor, publish, report);
2. the app serves day ``S = D_k + 1``: each visiting user gets the *live* list for their daypart — the
   served lists of the last run date whose publish succeeded (what the serving DB's
   ``current_recommendations`` view returns; if publish rejects a night, yesterday's lists stay live);
3. users respond (a :class:`SimWorld`): in the synthetic world from the ground truth
   (``deepcuts.pipelines.world.TruthModel``: visits per daypart, clicks with position bias, novelty appetite
   and day-to-day noise, ratings of clicked items); in MovieLens mode by replay (an item of the shown list
   that the user rates ``>= replay_click_rating`` within ``replay_window_days`` days after ``S`` counts as
   a click, with that rating);
4. the feedback is written as ``FEEDBACK_SCHEMA`` rows to ``landing/feedback_events(S)``: an impression
   per shown position, a click per clicked position, a rating per rated click; arm, variant, segment and
   propensity from the live assignment; deterministic event ids. Night ``k + 1`` ingests it, so it goes
   through the same validation as real logs.

Per night the simulator records (``sim.json``, docs/simulator.md): impressions, clicks, CTR, mean
rating, long-tail share and genres per list by variant (from what was served on ``S``); the arm share
per context (``"segment/daypart"``) of treatment traffic; in the synthetic world the share of each
context's treatment traffic on its true best arm and the cumulative regret; and the A/B verdict of the
night. Truth-based quantities use the bandit's reward unit, a list impression with at least one click:
``reward(list) = 1 - prod_k (1 - P(click at position k))``. The true best arm of a context is the arm
whose re-ranked lists have the highest mean expected reward over the context's treatment population
(every treatment (user, daypart) of the context, weighted by its visit probability); the regret of a visit is
the value of the context's best arm minus the value of the served arm (pseudo-regret), summed over visits.

This module is the loop (nights, the served day, intraday slots); the worlds and the feedback rows are
:mod:`deepcuts.pipelines.simulate_worlds`, the metrics and the summary
:mod:`deepcuts.pipelines.simulate_summary`.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Executor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepcuts.contracts import FEEDBACK_SCHEMA, C, Dataset, Variant
from deepcuts.formulas import daypart_hours
from deepcuts.jsonsafe import json_safe
from deepcuts.pipelines.ab_analysis import niche_item_ids, targets
from deepcuts.pipelines.nightly import resolve_workers, run_night, step_pool
from deepcuts.pipelines.simulate_summary import (
    VARIANTS,
    arm_shares,
    by_variant_metrics,
    plot_simulation,
    summarise,
    truth_metrics,
)
from deepcuts.pipelines.simulate_worlds import (
    VISIT_MINUTE,
    SimWorld,
    WorldKind,
    context_key,
    feedback_events,
    prepare_world,
)
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.progress import get_logger, progress
from deepcuts.seeds import rng_for
from deepcuts.settings import Settings

log = get_logger(__name__)


# ================================================================================== the loop
def simulate(
    settings: Settings,
    world: WorldKind,
    days: int,
    out: str | Path | None = None,
    n_shards: int | None = None,
) -> dict[str, Any]:
    """Run ``days`` nights in a closed loop; write ``out`` (sim.json) and a PNG next to it; return it."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    started = time.monotonic()
    sim_world = prepare_world(settings, world)
    lake = Lake(settings.home)
    first = sim_world.first_night
    record: dict[str, Any] = {
        "world": world,
        "days": days,
        "seed": settings.seed,
        "first_night": first.isoformat(),
        "home": settings.home,
        "planted_arms": getattr(sim_world, "planted", {}) or None,
        "planted_arm_lift": settings.simulator.planted_arm_lift if world == "synthetic" else None,
        # the scoreboard's targets (deepcuts.pipelines.ab_analysis.targets), drawn as bands by the plot
        "targets": {
            name: {"low": t.low, "high": t.high, "text": t.text} for name, t in targets(settings).items()
        },
        "nights": [],
    }
    with step_pool(resolve_workers(settings.simulator.workers)) as pool:
        _simulate_nights(settings, sim_world, lake, record, first, days, out, n_shards, pool)
    record["total_seconds"] = round(time.monotonic() - started, 1)
    record["summary"] = summarise(record)
    if out is not None:
        path = Path(out)
        _write_json_atomic(path, record)
        if settings.simulator.plot:
            record["plot"] = str(plot_simulation(record, path.with_suffix(".png")))
            _write_json_atomic(path, record)
    return record


def _simulate_nights(
    settings: Settings,
    sim_world: SimWorld,
    lake: Lake,
    record: dict[str, Any],
    first: date,
    days: int,
    out: str | Path | None,
    n_shards: int | None,
    pool: Executor | None,
) -> None:
    live: tuple[date, str] | None = None
    cumulative_regret = 0.0
    for k in progress(range(1, days + 1), desc="simulated nights", logger=log, log_every_s=0.0):
        run_date = first + timedelta(days=k - 1)
        t0 = time.monotonic()
        night, live, publish_note = _run_night_keep_live(settings, run_date, n_shards, live, pool)
        if live is None:
            raise RuntimeError(
                f"night {k} ({run_date}): nothing has ever been published, so the app has no lists to "
                "serve; see the publish gate above (or set simulator.acknowledge_critical_alerts)"
            )
        entry = serve_day(settings, sim_world, k, run_date, live)
        live = (live[0], entry["list_version_end"])  # an intraday refresh may have moved it
        if entry.get("regret") is not None:
            cumulative_regret += entry["regret"]
            entry["cumulative_regret"] = cumulative_regret
        entry["ab"] = _ab_entry(lake, run_date)
        entry["publish"] = publish_note
        entry["skipped_steps"] = night.get("skipped", {})
        entry["step_seconds"] = night.get("seconds", {})
        entry["night_seconds"] = round(time.monotonic() - t0, 3)
        record["nights"].append(json_safe(entry))
        log.info(
            "night %d/%d %s: CTR control %s treatment %s, verdict %s",
            k,
            days,
            run_date,
            _fmt(entry["ctr"][Variant.CONTROL.value]),
            _fmt(entry["ctr"][Variant.TREATMENT.value]),
            entry["ab"].get("verdict"),
        )
        if out is not None:
            _write_json_atomic(Path(out), record)  # partial results survive an interrupted run


def serve_day(
    settings: Settings, world: SimWorld, night: int, run_date: date, live: tuple[date, str]
) -> dict[str, Any]:
    """Serve day ``run_date + 1`` with the live lists, let the users respond, land their feedback.

    ``night`` is ``k`` (the world's day index of the served day); ``live`` is (run date, list_version)
    of the lists the app serves (:func:`live_lists` reads it from the serving DB). Writes
    ``landing/feedback_events(run_date + 1)`` and returns the night's record without the A/B entry and
    timings; ``regret`` is the night's own regret (the caller accumulates it). The Airflow demo calls
    this between DAG runs; :func:`simulate` calls it after ``run_night``.
    """
    lake = Lake(settings.home)
    served_day = run_date + timedelta(days=1)
    trajectory: list[dict[str, Any]] = []
    if settings.simulator.refreshes_per_day > 1:
        shown, visits, clicked, ratings, events, live_end = _serve_in_slots(
            settings, world, lake, night, served_day, live, trajectory
        )
    else:
        live_end = live
        shown, visits = _serve(lake, world, live, night, served_day, settings)
        clicked, ratings = world.respond(
            shown, night, served_day, rng_for(settings.seed, served_day, "sim/respond")
        )
        events = feedback_events(
            shown,
            clicked,
            ratings,
            served_day,
            {d: start for d, (start, _) in daypart_hours(settings.bandit.daypart_starts).items()},
            rng_for(settings.seed, served_day, "sim/times"),
        )
        lake.write_table(Dataset.LANDING_FEEDBACK, served_day, events)
    items = _genres(lake, run_date)
    niche = niche_item_ids(items, settings.rerank.niche_genres)
    metrics = by_variant_metrics(shown, clicked, ratings, items, niche)
    treatment = shown[shown[C.VARIANT] == Variant.TREATMENT.value].drop_duplicates([C.USER_ID, C.DAYPART])
    entry: dict[str, Any] = {
        "night": night,
        "run_date": run_date.isoformat(),
        "served_day": served_day.isoformat(),
        "live_run_date": live[0].isoformat(),
        "list_version": live[1],
        "list_version_end": live_end[1],
        "visits": len(visits),
        "visits_without_list": int(len(visits) - shown.groupby([C.USER_ID, C.DAYPART]).ngroups),
        "events": len(events),
    }
    for name in (
        "impressions",
        "clicks",
        "ctr",
        "lists",
        "mean_rating",
        "long_tail_share",
        "genres_per_list",
        "exposed_users",
        "niche_impressions",
        "niche_clicks",
    ):
        entry[name] = {v: metrics[v][name] for v in VARIANTS}
    entry["arm_share"] = arm_shares(treatment)
    entry["context_visits"] = {
        context_key(seg, dp): int(n)
        for (seg, dp), n in treatment.groupby([C.SEGMENT, C.DAYPART]).size().items()
    }
    if world.has_truth:
        truth = truth_metrics(
            world, treatment, _arm_lists(lake, live[0], settings), _population(lake, live[0]), night
        )
        entry["best_arm"] = truth.best_arm
        entry["best_arm_share"] = truth.best_arm_share
        entry["best_arm_probability"] = _best_arm_probability(lake, live, truth.best_arm)
        # the policy in force when the day ends (the last refresh's; the night's without refreshes)
        entry["best_arm_probability_end"] = _best_arm_probability(lake, live_end, truth.best_arm)
        for step in trajectory:
            probs = _best_arm_probability(lake, (live[0], step["list_version"]), truth.best_arm)
            step["min_best_arm_probability"] = min(probs.values(), default=None)
        entry["expected_reward"] = truth.expected_reward
        entry["regret"] = truth.regret
    else:
        entry["best_arm_share"] = None
        entry["best_arm_probability"] = None
        entry["best_arm_probability_end"] = None
        entry["regret"] = None
        entry["cumulative_regret"] = None
    if trajectory:
        entry["intraday"] = trajectory
    return entry


def _serve_in_slots(
    settings: Settings,
    world: SimWorld,
    lake: Lake,
    night: int,
    served_day: date,
    live: tuple[date, str],
    trajectory: list[dict[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame, tuple[date, str]]:
    """Serve ``served_day`` in ``simulator.refreshes_per_day`` slots of whole hours: a visit belongs to
    the slot of its start minute (``world.visit_timing``; a world that draws none starts every visit in
    its daypart's first hour); the visits of a slot see the version live at its start, their feedback
    lands as ``landing/feedback_events`` part ``slot-NNNN``, then an intraday refresh
    (:func:`deepcuts.pipelines.intraday.refresh`) may publish a new version for the next slot. No
    refresh after the last slot (the night runs next) nor after a slot without visits (nothing new to
    learn). Appends one entry per refresh to ``trajectory``; returns the day's shown rows, visits,
    clicks, ratings and events (concatenated) and the version live at its end.
    """
    from deepcuts.pipelines import intraday
    from deepcuts.pipelines.publish import PublishRejectedError

    n = settings.simulator.refreshes_per_day
    refresh_settings = settings.model_copy(
        update={"intraday": settings.intraday.model_copy(update={"refreshes_per_day": n})}
    )
    hours = {d: start for d, (start, _) in daypart_hours(settings.bandit.daypart_starts).items()}
    visits = _visits(settings, world, night, served_day)
    if VISIT_MINUTE in visits.columns:
        slot_of = visits[VISIT_MINUTE].to_numpy(np.int64) // (1440 // n)
    else:
        slot_of = visits[C.DAYPART].map(hours).to_numpy(np.int64) * n // 24
    shown_parts, clicked_parts, rating_parts, event_parts = [], [], [], []
    for slot in range(n):
        part = intraday.slot_part(slot)
        mine = visits[slot_of == slot]
        if mine.empty:
            continue
        shown = _shown_rows(lake, mine, live)
        clicked, ratings = world.respond(
            shown, night, served_day, rng_for(settings.seed, served_day, f"sim/respond/{part}")
        )
        events = feedback_events(
            shown,
            clicked,
            ratings,
            served_day,
            hours,
            rng_for(settings.seed, served_day, f"sim/times/{part}"),
        )
        lake.write_table(Dataset.LANDING_FEEDBACK, served_day, events, part=part)
        shown_parts.append(shown)
        clicked_parts.append(clicked)
        rating_parts.append(ratings)
        event_parts.append(events)
        if slot == n - 1:
            break
        try:
            out = intraday.refresh(refresh_settings, served_day, slot)
        except PublishRejectedError as exc:
            log.warning(
                "served day %s %s: intraday publish rejected, the lists stay: %s", served_day, part, exc
            )
            trajectory.append({"slot": slot, "status": "rejected", "list_version": live[1]})
            continue
        pub = out["publish"]
        if pub["status"] in ("published", "unchanged"):
            live = (date.fromisoformat(pub["run_date"]), str(pub["list_version"]))
        trajectory.append(
            {
                "slot": slot,
                "events": out["ingest"]["events"],
                "trials": out["update"]["trials"],
                "status": pub["status"],
                "list_version": live[1],
            }
        )
    if not shown_parts:
        empty = _shown_rows(lake, visits.iloc[:0], live)
        return empty, visits, np.zeros(0, bool), np.zeros(0), FEEDBACK_SCHEMA.empty_table().to_pandas(), live
    return (
        pd.concat(shown_parts, ignore_index=True),
        visits,
        np.concatenate(clicked_parts),
        np.concatenate(rating_parts),
        pd.concat(event_parts, ignore_index=True),
        live,
    )


def live_lists(settings: Settings) -> tuple[date, str] | None:
    """(run date, list_version) of the version the serving DB's views point at, or None."""
    from deepcuts.pipelines import serving

    engine = serving.serving_engine(settings, writer=True)  # ensure_schema may create the empty schema
    try:
        serving.ensure_schema(engine)
        with engine.connect() as conn:
            info = serving.live_version(conn)
    finally:
        engine.dispose()
    if info is None or info.list_version is None:
        return None
    return info.run_date, info.list_version


def _run_night_keep_live(
    settings: Settings,
    run_date: date,
    n_shards: int | None,
    live: tuple[date, str] | None,
    pool: Executor | None = None,
) -> tuple[dict[str, Any], tuple[date, str] | None, dict[str, Any]]:
    """Run the night; return its result, the (run date, list version) now live, and a publish note.

    The steps before publish run through ``run_night``; publish is called here so that a rejection can
    be handled as production would: yesterday's lists stay live. With
    ``simulator.acknowledge_critical_alerts`` the simulated operator first acknowledges the night's
    alerts (``deepcuts.pipelines.serving.acknowledge_alerts``, the documented operator route) and publishes
    again; a rejection by a data gate stands. The steps after publish (report) run last.
    """
    from deepcuts.pipelines.nightly import STEP_NAMES, STEPS, resolve

    skip = list(settings.simulator.skip_steps)
    cut = STEP_NAMES.index("publish")
    before, after = STEP_NAMES[:cut], STEP_NAMES[cut + 1 :]
    night = run_night(settings, run_date, n_shards, skip=[*skip, *STEP_NAMES[cut:]], pool=pool)
    for name in STEP_NAMES[cut:]:
        if name not in skip:  # they run below
            night["skipped"].pop(name, None)
    publish = resolve(STEPS[cut])
    if "publish" in skip:
        rest = run_night(settings, run_date, n_shards, skip=[*skip, *before])
        _merge_night(night, rest)
        return night, (run_date, f"{run_date.isoformat()}.v0"), {"status": "not run"}

    from deepcuts.pipelines.publish import PublishRejectedError

    t0 = time.monotonic()
    note: dict[str, Any]
    new_live = live
    try:
        pub = publish(settings, run_date)
        note = {"status": pub.get("status"), "version": pub.get("version")}
        if pub.get("status") in ("published", "unchanged"):
            new_live = (run_date, str(pub["list_version"]))
    except PublishRejectedError as exc:
        note = {"status": "rejected", "detail": str(exc)}
        if settings.simulator.acknowledge_critical_alerts:
            new_live = _acknowledge_and_publish(settings, run_date, note, live)
        else:
            log.warning("night %s: publish rejected, yesterday's lists stay live: %s", run_date, exc)
    night["seconds"]["publish"] = round(time.monotonic() - t0, 3)
    night["results"]["publish"] = note
    if any(step not in skip for step in after):
        _merge_night(night, run_night(settings, run_date, n_shards, skip=[*skip, *before, "publish"]))
    return night, new_live, note


def _acknowledge_and_publish(
    settings: Settings, run_date: date, note: dict[str, Any], live: tuple[date, str] | None
) -> tuple[date, str] | None:
    from deepcuts.pipelines import serving
    from deepcuts.pipelines.publish import PublishRejectedError, publish

    engine = serving.serving_engine(settings, writer=True)
    try:
        note["acknowledged_alerts"] = serving.acknowledge_alerts(engine, run_date, by="simulator")
    finally:
        engine.dispose()
    try:
        pub = publish(settings, run_date)
    except PublishRejectedError as again:
        log.warning("night %s: publish rejected even after acknowledging alerts: %s", run_date, again)
        note["detail"] = str(again)
        return live
    log.warning(
        "night %s: publish was rejected (%s); the simulated operator acknowledged %d alert(s) and published",
        run_date,
        note["detail"],
        note["acknowledged_alerts"],
    )
    note.update(status="published after acknowledging alerts", version=pub.get("version"))
    return (run_date, str(pub["list_version"]))


def _merge_night(night: dict[str, Any], rest: dict[str, Any]) -> None:
    """Add a later ``run_night`` call's results; a step keeps the first reason it was skipped for."""
    night["results"].update(rest["results"])
    night["seconds"].update(rest["seconds"])
    for name, reason in rest["skipped"].items():
        if name not in night["results"] and name not in night["skipped"]:
            night["skipped"][name] = reason


def _serve(
    lake: Lake, world: SimWorld, live: tuple[date, str], k: int, served_day: date, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shown rows (one per position of every visit that has a live list) and all visits."""
    visits = _visits(settings, world, k, served_day)
    return _shown_rows(lake, visits, live), visits


def _visits(settings: Settings, world: SimWorld, k: int, served_day: date) -> pd.DataFrame:
    """Who visits on ``served_day`` in which daypart, with the start minute when the world draws one
    (its own random stream: the visits themselves do not depend on the timing)."""
    visits = world.visits(k, served_day, rng_for(settings.seed, served_day, "sim/visits"))
    minutes = world.visit_minutes(visits, rng_for(settings.seed, served_day, "sim/visit-minutes"))
    return visits if minutes is None else visits.assign(**{VISIT_MINUTE: minutes})


def _live_source(lake: Lake, live: tuple[date, str]) -> tuple[date, list[str] | None]:
    """Where the lake holds the tables of the live version: (partition, None) for a nightly publish of
    that run date, (day after it, [slot part]) for an intraday refresh (pipelines/intraday.py)."""
    from deepcuts.pipelines.intraday import read_summaries, slot_part

    live_date, version = live
    day = live_date + timedelta(days=1)
    for slot, steps in reversed(read_summaries(lake, day).items()):
        if steps.get("publish", {}).get("list_version") == version:
            return day, [slot_part(slot)]
    return live_date, None


def _read_live(lake: Lake, live: tuple[date, str], dataset: Dataset, columns: list[str]) -> pd.DataFrame:
    intraday_of = {
        Dataset.SERVED_LISTS: Dataset.INTRADAY_SERVED_LISTS,
        Dataset.ASSIGNMENTS: Dataset.INTRADAY_ASSIGNMENTS,
        Dataset.BANDIT_POLICY: Dataset.INTRADAY_POLICY,
    }
    key, parts = _live_source(lake, live)
    if parts is None:
        return lake.read_df(dataset, key, columns=columns)
    return lake.read_df(intraday_of[dataset], key, parts=parts, columns=columns)


def _shown_rows(lake: Lake, visits: pd.DataFrame, live: tuple[date, str]) -> pd.DataFrame:
    """One row per position of every visit that has a list in the live version."""
    live_date, version = live
    lists = _read_live(
        lake,
        live,
        Dataset.SERVED_LISTS,
        [C.USER_ID, C.DAYPART, C.RANK, C.ITEM_ID, C.ARM, C.VARIANT, C.IS_LONG_TAIL],
    )
    assignments = _read_live(lake, live, Dataset.ASSIGNMENTS, [C.USER_ID, C.DAYPART, C.SEGMENT, C.PROPENSITY])
    shown = (
        visits.merge(lists, on=[C.USER_ID, C.DAYPART], how="inner")
        .merge(assignments, on=[C.USER_ID, C.DAYPART], how="left")
        .sort_values([C.USER_ID, C.DAYPART, C.RANK], ignore_index=True)
    )
    shown[C.LIST_VERSION] = version
    if shown[C.PROPENSITY].isna().any():
        raise ValueError(f"served_lists({live_date}) has (user, daypart) pairs without an assignment")
    return shown


def _arm_lists(lake: Lake, live_date: date, settings: Settings) -> pd.DataFrame:
    """Re-ranked lists of every bandit arm for the live run date (for the truth metrics)."""
    try:
        frame = lake.read_df(Dataset.RERANKED, live_date, columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.ARM])
    except MissingDataError:
        return pd.DataFrame(columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.ARM])
    keep = frame[C.ARM].isin(settings.bandit.arms) & (frame[C.RANK] <= settings.rerank.list_length)
    return frame[keep].reset_index(drop=True)


def _best_arm_probability(lake: Lake, live: tuple[date, str], best_arm: dict[str, str]) -> dict[str, float]:
    """Context -> the live policy's selection probability of the context's true best arm: the share of
    the context's traffic the policy puts there, free of the noise of one night's few visits."""
    cols = [C.SEGMENT, C.DAYPART, C.ARM, C.SELECTION_PROBABILITY]
    try:
        policy = _read_live(lake, live, Dataset.BANDIT_POLICY, cols)
    except MissingDataError:
        return {}
    prob = {
        (context_key(seg, dp), arm): float(p)
        for seg, dp, arm, p in policy[cols].itertuples(index=False, name=None)
    }
    return {ctx: prob.get((ctx, arm), 0.0) for ctx, arm in sorted(best_arm.items())}


def _population(lake: Lake, live_date: date) -> pd.DataFrame:
    """Treatment assignments (``user_id``, ``daypart``, ``segment``) of the live run date."""
    frame = lake.read_df(Dataset.ASSIGNMENTS, live_date, columns=[C.USER_ID, C.DAYPART, C.SEGMENT, C.VARIANT])
    return frame[frame[C.VARIANT] == Variant.TREATMENT.value].drop(columns=[C.VARIANT])


def _genres(lake: Lake, run_date: date) -> pd.DataFrame:
    for day in (run_date, lake.latest_before(Dataset.ITEMS, run_date)):
        if day is not None and lake.has(Dataset.ITEMS, day):
            return lake.read_df(Dataset.ITEMS, day, columns=[C.ITEM_ID, C.GENRES])
    return pd.DataFrame(columns=[C.ITEM_ID, C.GENRES])


def _ab_entry(lake: Lake, run_date: date) -> dict[str, Any]:
    from deepcuts.pipelines.ab_analysis import VERDICT_FILE

    keys = ("verdict", "p_value", "lift", "ci_low", "ci_high", "srm_p_value", "scoreboard")
    if not lake.exists(Dataset.AB_RESULTS, run_date, VERDICT_FILE):
        return dict.fromkeys(keys)
    verdict = lake.read_json(Dataset.AB_RESULTS, run_date, VERDICT_FILE)
    return {k: verdict.get(k) for k in keys}


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, allow_nan=False))
    tmp.replace(path)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
