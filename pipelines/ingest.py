"""Nightly ingest: validate the day's new data with GX and publish the canonical tables for run date D.

Inputs: the source (catalog + rating history, ``deepcuts.pipelines.loaders.load_source``) and the app's raw
logs in ``landing/feedback_events(D)``. Outputs for ``D``:

* ``canonical/items(D)``: the validated catalog (re-validated every night; it is small);
* ``canonical/interactions(D) = interactions(P) ∪ new source ratings ∪ rating events of feedback(D)``,
  where ``P`` is the newest earlier partition; the new source ratings are those with
  ``end(P) <= ts < end(D)`` (only this delta is validated, never the history again). On the first night
  (no earlier partition) the delta is every source rating with ``ts < end(D)``;
* ``canonical/feedback_events(D)``: the valid events that *arrived* on D. Late events (``event_ts`` before
  D but within ``ingest.late_window_days``) are accepted and counted on D, the day they arrive; older ones
  are quarantined (``too_old``). Event ids accepted on an earlier day are quarantined (``seen_before``);
* ``quarantine/{items,interactions,feedback_events}(D)``: rejected rows with their reasons;
* ``validation(D)/summary.json`` (counts and reasons) and ``validation(D)/seen_event_ids.parquet``
  (ids accepted up to D whose ``event_ts`` can still be inside a later night's late window);
* GX Data Docs under ``reports/gx/`` when the lake is local.

Table-level failures (schema, empty day, volume collapse, quarantine share) raise
:class:`~deepcuts.pipelines.validation.ValidationFailed` before anything is written. A missing landing
partition is an empty day (a failure) except on the first night. Rerunning D reads only partitions before D,
so it writes the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from deepcuts.contracts import FEEDBACK_SCHEMA, INTERACTIONS_SCHEMA, C, Dataset, EventType
from deepcuts.pipelines.storage import Lake, as_run_date, conform
from deepcuts.pipelines.validation import (
    LINE_COLUMNS,
    Kind,
    Outcome,
    Rules,
    ValidationFailed,
    build_data_docs,
    day_bounds,
    discard_results,
    quarantine_table,
    read_raw,
    validate_chunks,
    validate_frame,
)
from deepcuts.progress import get_logger, progress

if TYPE_CHECKING:
    from deepcuts.pipelines.loaders import SourceData
    from deepcuts.settings import Settings

log = get_logger(__name__)

SUMMARY_FILE = "summary.json"
SEEN_PART = "seen_event_ids"
#: Landing files the ingest reads (others, e.g. ``_SUCCESS`` markers, are ignored).
LANDING_SUFFIXES = (".parquet", ".csv")
_QUARANTINE = {
    Kind.ITEMS: Dataset.QUARANTINE_ITEMS,
    Kind.INTERACTIONS: Dataset.QUARANTINE_INTERACTIONS,
    Kind.FEEDBACK: Dataset.QUARANTINE_FEEDBACK,
}


def ingest(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """The nightly ingest step for ``run_date`` (see the module docstring). Returns counts."""
    from deepcuts.pipelines.loaders import load_source

    return ingest_source(settings, as_run_date(run_date), load_source(settings))


@dataclass
class Landing:
    """The raw feedback logs of one day: all files concatenated, with their names and row offsets."""

    frame: pd.DataFrame
    files: list[str]
    present: bool


def read_landing(lake: Lake, run_date: date) -> Landing:
    """Read every visible ``*.parquet``/``*.csv`` file of ``landing/feedback_events(run_date)``.

    Files are read in name order and concatenated; ``source_row`` is the position in that concatenation.
    Files must agree on their column set (else a table-level failure naming the odd file).
    """
    folder = lake.partition_dir(Dataset.LANDING_FEEDBACK, run_date)
    names: list[str] = []
    if lake.fs.get_file_info(folder).type == pafs.FileType.Directory:
        for info in lake.fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
            rel = info.path[len(folder) + 1 :]
            hidden = any(piece.startswith((".", "_")) for piece in rel.split("/"))
            if info.type == pafs.FileType.File and not hidden and rel.endswith(LANDING_SUFFIXES):
                names.append(rel)
    frames: list[pd.DataFrame] = []
    columns: list[str] | None = None
    for rel in progress(sorted(names), desc=f"landing files {run_date}", logger=log):
        where = f"{folder}/{rel}"
        fmt = "parquet" if rel.endswith(".parquet") else "csv"
        frame = read_raw(lake.read_bytes(Dataset.LANDING_FEEDBACK, run_date, rel), where, fmt)
        if not len(frame.columns):  # a zero-byte file adds no rows
            continue
        # A CSV file with malformed lines has two more columns (their line number and text) for them.
        own = sorted(set(frame.columns) - set(LINE_COLUMNS))
        if columns is None:
            columns = own
        elif own != columns:
            raise ValidationFailed(
                Kind.FEEDBACK.value,
                where,
                [
                    f"columns {own} differ from the day's first file's {columns}; "
                    "every landing file of a day must have the same columns"
                ],
            )
        frames.append(frame)
    if not frames:  # no files, or only zero-byte ones: a day without rows
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in FEEDBACK_SCHEMA.names})
        return Landing(empty, sorted(names), present=bool(names))
    # Text everywhere keeps a mixed day (typed Parquet + CSV) comparable; GX then checks the formats.
    if len(frames) > 1:
        frames = [f.astype(object) for f in frames]
    return Landing(pd.concat(frames, ignore_index=True), sorted(names), present=True)


def ingest_source(settings: Settings, run_date: date, source: SourceData) -> dict[str, Any]:
    """The ingest step on an already loaded source (``ingest`` loads it from the settings)."""
    cfg = settings.ingest
    lake = Lake(settings.home)
    day_start = day_bounds(run_date)[0]
    prev = lake.latest_before(Dataset.INTERACTIONS, run_date)
    first_night = prev is None
    scale = (float(source.rating_min), float(source.rating_max))
    try:
        outcomes = _validate_all(settings, lake, run_date, source, prev, scale)
    finally:
        # Data Docs are rendered for failed batches too: that is when analysts need them.
        if lake.is_local:
            build_data_docs(lake.local_dir(Dataset.REPORTS) / "gx")
        else:
            discard_results()
    items, inter, feedback, history, landing, volume, pending = outcomes

    fb = feedback.valid
    from_feedback = fb.loc[fb[C.EVENT_TYPE] == EventType.RATING.value, [C.USER_ID, C.ITEM_ID, C.RATING]]
    from_feedback = from_feedback.assign(**{C.TS: fb.loc[from_feedback.index, C.EVENT_TS]})
    interactions = _canonical_interactions(history, [inter.valid, from_feedback])
    late = int((fb[C.EVENT_TS] < day_start).sum()) if len(fb) else 0
    seen = _next_seen(lake, run_date, fb, cfg.late_window_days)

    # Everything validated: write. The summary goes last, it marks the night as ingested.
    lake.write_table(Dataset.ITEMS, run_date, items.valid)
    lake.write_table(Dataset.INTERACTIONS, run_date, interactions)
    lake.write_table(Dataset.FEEDBACK_EVENTS, run_date, fb)
    for outcome in (items, inter, feedback):
        lake.write_table(_QUARANTINE[outcome.kind], run_date, quarantine_table(outcome.quarantine))
    lake.write_table(Dataset.VALIDATION, run_date, seen, part=SEEN_PART)
    summary = {
        "run_date": run_date.isoformat(),
        "status": "ok",
        "first_night": first_night,
        "previous_partition": prev.isoformat() if prev else None,
        "source": source.name,
        "rating_scale": list(scale),
        "items": items.summary(),
        "interactions": {
            **inter.summary(),
            "history_rows": history.num_rows,
            "pending_rows": pending,
            "from_feedback": len(from_feedback),
            "total_rows": len(interactions),
        },
        "feedback": {
            **feedback.summary(),
            "landing_present": landing.present,
            "landing_files": landing.files,
            "late_accepted": late,
            "late_window_days": cfg.late_window_days,
            "volume": volume,
        },
    }
    lake.write_json(Dataset.VALIDATION, run_date, SUMMARY_FILE, summary)
    lake.mark_all_complete()  # every partition above: train, candidates, score... check them
    result = {
        "run_date": run_date.isoformat(),
        "first_night": first_night,
        "items": items.accepted,
        "items_quarantined": items.quarantined,
        "new_interactions": inter.accepted,
        "interactions_quarantined": inter.quarantined,
        "interactions_total": len(interactions),
        "feedback_in": feedback.rows_in,
        "feedback_accepted": feedback.accepted,
        "feedback_quarantined": feedback.quarantined,
        "feedback_late_accepted": late,
        "ratings_from_feedback": len(from_feedback),
    }
    log.info("ingest %s: %s", run_date, result)
    return result


def rules_for(
    settings: Settings,
    kind: Kind,
    run_date: date,
    scale: tuple[float, float],
    *,
    known_items: np.ndarray | None = None,
    known_users: np.ndarray | None = None,
    seen_event_ids: np.ndarray | None = None,
    first_night: bool = False,
    min_rows: int = 0,
    min_rows_note: str = "",
) -> Rules:
    """The one rule set for ``kind`` on ``run_date``: the nightly ingest and ``deepcuts validate`` both
    build their rules here (they differ only in where the reference ids come from), so they give the
    same verdict on the same file. ``None`` reference ids switch that check off.
    """
    cfg = settings.ingest
    day_start, day_end = day_bounds(run_date)
    common: dict[str, Any] = {
        "allow_extra_columns": cfg.allow_extra_columns,
        "max_quarantine_share": cfg.max_quarantine_share,
        "rating_min": scale[0],
        "rating_max": scale[1],
    }
    if kind == Kind.ITEMS:
        return Rules(year_max=run_date.year + 1, genre_sep=settings.source.genre_sep, **common)
    window = {
        "ts_min": pd.Timestamp(cfg.min_timestamp, tz="UTC"),
        "ts_max": day_end + pd.Timedelta(minutes=cfg.future_skew_minutes),
        "known_items": known_items,
    }
    if kind == Kind.INTERACTIONS:
        return Rules(allow_empty=True, **window, **common)
    return Rules(
        window_start=day_start - pd.Timedelta(days=cfg.late_window_days),
        known_users=known_users,
        seen_event_ids=seen_event_ids,
        allow_empty=first_night,
        min_rows=min_rows,
        min_rows_note=min_rows_note,
        **window,
        **common,
    )


def _validate_all(
    settings: Settings,
    lake: Lake,
    run_date: date,
    source: SourceData,
    prev: date | None,
    scale: tuple[float, float],
) -> tuple[Outcome, Outcome, Outcome, pa.Table, Landing, dict[str, Any], int]:
    cfg = settings.ingest
    day_end = day_bounds(run_date)[1]
    items = validate_frame(
        source.items,
        Kind.ITEMS,
        rules_for(settings, Kind.ITEMS, run_date, scale),
        name=f"items of {source.name}",
        run_date=run_date,
    )
    known_items = items.valid[C.ITEM_ID].to_numpy(np.int64)

    future_from = max(day_end, now()) + pd.Timedelta(minutes=cfg.future_skew_minutes)
    rows, pending = _source_delta(source.interactions, prev, day_end, future_from)
    inter = validate_chunks(
        source.interactions,
        Kind.INTERACTIONS,
        rules_for(settings, Kind.INTERACTIONS, run_date, scale, known_items=known_items),
        chunk_rows=cfg.validate_chunk_rows,
        name=f"new ratings of {source.name}",
        run_date=run_date,
        positions=rows,
    )
    # The history stays in Arrow: it is the big table (the whole rating history), only appended to.
    history = lake.read_table(Dataset.INTERACTIONS, prev) if prev else INTERACTIONS_SCHEMA.empty_table()
    known_users = np.union1d(
        pc.unique(history.column(C.USER_ID)).to_numpy(), inter.valid[C.USER_ID].to_numpy(np.int64)
    )

    landing = read_landing(lake, run_date)
    first_night = prev is None
    if not landing.present and not first_night:
        raise ValidationFailed(
            Kind.FEEDBACK.value,
            lake.partition_dir(Dataset.LANDING_FEEDBACK, run_date),
            [
                "no feedback landed for this day (missing partition): the app's log export or the "
                "transfer is broken; rerun ingest once the files are there"
            ],
        )
    floor, volume = _volume_floor(lake, run_date, cfg.volume_lookback_days, cfg.volume_min_ratio)
    feedback = validate_frame(
        landing.frame,
        Kind.FEEDBACK,
        rules_for(
            settings,
            Kind.FEEDBACK,
            run_date,
            scale,
            known_items=known_items,
            known_users=known_users,
            seen_event_ids=previous_seen(lake, run_date),
            first_night=first_night,
            min_rows=floor,
            min_rows_note=volume["note"],
        ),
        name=f"landing {run_date}",
        run_date=run_date,
    )
    return items, inter, feedback, history, landing, volume, pending


def now() -> pd.Timestamp:
    """The wall clock (UTC): a source rating dated after it cannot have happened yet (tests patch it)."""
    return pd.Timestamp.now(tz="UTC")


def _source_delta(
    interactions: pd.DataFrame, prev: date | None, day_end: pd.Timestamp, future_from: pd.Timestamp
) -> tuple[np.ndarray, int]:
    """Source ratings to validate on D: those new since the previous partition, ``end(prev) <= ts < end(D)``.

    On the first night every rating with ``ts < end(D)`` plus those without a usable time (they are
    then quarantined with a reason instead of vanishing). Every night also every rating dated at or after
    ``future_from`` (the wall clock, or ``end(D)`` if later, plus the skew): it cannot have happened,
    so it is quarantined (``future:ts``) and counted on each night it is in the source instead of
    waiting forever. Ratings in between are pending: due on a later night, counted, not validated yet.
    Returns the source positions of those rows (they are validated from the source a slice at a
    time, never copied out as a whole) and the number of pending ratings.
    """
    ts = pd.to_datetime(interactions[C.TS], utc=True, errors="coerce", format="ISO8601")
    since = ts >= day_bounds(prev)[1] if prev is not None else ts.isna() | (ts < day_end)
    future = ts >= future_from
    mask = (since & (ts < day_end) | (ts.isna() & (prev is None)) | future).to_numpy(dtype=bool)
    pending = int(((ts >= day_end) & ~future).sum())
    return np.flatnonzero(mask).astype(np.int64), pending


def _canonical_interactions(history: pa.Table, parts: list[pd.DataFrame]) -> pa.Table:
    """Union of history, new source ratings and feedback ratings, in a stable order (ts, user, item)."""
    tables = [history] if history.num_rows else []
    tables += [
        conform(pa.Table.from_pandas(p, preserve_index=False), INTERACTIONS_SCHEMA, "interactions")
        for p in parts
        if len(p)
    ]
    if not tables:
        return INTERACTIONS_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by([(C.TS, "ascending"), (C.USER_ID, "ascending"), (C.ITEM_ID, "ascending")])


def _volume_floor(
    lake: Lake, run_date: date, lookback_days: int, min_ratio: float
) -> tuple[int, dict[str, Any]]:
    """Minimum feedback rows for D: ``ceil(volume_min_ratio * median(rows_in of the lookback days))``.

    The lookback days are the ingested nights in ``[D - volume_lookback_days, D)`` whose feedback had
    rows; with none, there is no floor.
    """
    counts = []
    for day in lake.run_dates(Dataset.VALIDATION):
        if run_date - timedelta(days=lookback_days) <= day < run_date and lake.exists(
            Dataset.VALIDATION, day, SUMMARY_FILE
        ):
            rows_in = int(lake.read_json(Dataset.VALIDATION, day, SUMMARY_FILE)["feedback"]["rows_in"])
            if rows_in > 0:
                counts.append(rows_in)
    if not counts:
        return 0, {"trailing_days": 0, "trailing_median": None, "floor": 0, "note": "no history"}
    median = float(np.median(counts))
    floor = math.ceil(min_ratio * median)
    note = f"{min_ratio:.0%} of the median {median:g} rows of the last {len(counts)} ingested days"
    return floor, {"trailing_days": len(counts), "trailing_median": median, "floor": floor, "note": note}


def previous_seen(lake: Lake, run_date: date) -> np.ndarray:
    """Event ids accepted before D (still inside a late window), from the newest earlier ingest."""
    for day in reversed(lake.run_dates(Dataset.VALIDATION)):
        if day < run_date and lake.has(Dataset.VALIDATION, day, SEEN_PART):
            table = lake.read_table(Dataset.VALIDATION, day, parts=[SEEN_PART], columns=[C.EVENT_ID])
            return np.asarray(table.column(C.EVENT_ID).to_pylist(), dtype=object)
    return np.empty(0, dtype=object)


def _next_seen(lake: Lake, run_date: date, accepted: pd.DataFrame, late_window_days: int) -> pa.Table:
    """``seen(D) = seen(P) ∪ accepted(D)``, keeping only ids with ``event_ts >= start(D) - window``.

    An event older than that is quarantined as ``too_old`` on any later night anyway, so its id need not
    be remembered: the dataset stays the size of a few days of events.
    """
    keep_from = day_bounds(run_date)[0] - pd.Timedelta(days=late_window_days)
    parts = [accepted[[C.EVENT_ID, C.EVENT_TS]]]
    for day in reversed(lake.run_dates(Dataset.VALIDATION)):
        if day < run_date and lake.has(Dataset.VALIDATION, day, SEEN_PART):
            parts.append(lake.read_df(Dataset.VALIDATION, day, parts=[SEEN_PART]))
            break
    seen = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    schema = pa.schema([pa.field(C.EVENT_ID, pa.string()), pa.field(C.EVENT_TS, pa.timestamp("us", "UTC"))])
    if seen is None:
        return schema.empty_table()
    seen = seen[pd.to_datetime(seen[C.EVENT_TS], utc=True) >= keep_from]
    seen = seen.sort_values([C.EVENT_ID, C.EVENT_TS]).drop_duplicates(C.EVENT_ID, keep="first")
    return pa.Table.from_pandas(seen, preserve_index=False).select(schema.names).cast(schema)


__all__ = [
    "Landing",
    "ValidationFailed",
    "ingest",
    "ingest_source",
    "previous_seen",
    "read_landing",
    "rules_for",
]
