"""Bandit contexts: user segment (new / casual / power) x daypart (morning / afternoon / evening / night).

Rules (thresholds in :class:`deepcuts.settings.BanditSettings`):

- segment, from a user's rating history up to the end of the run date ``D`` (``as_of`` = D+1 00:00 UTC):
  ``new``   if ``n_ratings < new_max_ratings``;
  ``power`` if ``n_ratings >= power_min_ratings`` and the last rating is at most ``power_recency_days``
  days before ``as_of``;
  ``casual`` otherwise (including heavy users who went quiet).
- daypart, from the UTC hour ``h``: the daypart whose start hour is the latest start ``<= h``, wrapping
  around midnight (with the default starts 6/12/18/23: morning [6, 12), afternoon [12, 18),
  evening [18, 23), night [23, 6)).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts.contracts import C, Daypart, Segment
from deepcuts.settings import BanditSettings

#: Contexts in their canonical order: segments outer, dayparts inner (the order of every policy table).
SEGMENTS: tuple[str, ...] = tuple(s.value for s in Segment)
DAYPARTS: tuple[str, ...] = tuple(d.value for d in Daypart)
CONTEXTS: tuple[tuple[str, str], ...] = tuple((s, d) for s in SEGMENTS for d in DAYPARTS)


def context_arm_frame(arms: Sequence[str], run_date: date, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table with one row per (context, arm), contexts in canonical order: segment, daypart, arm,
    each ``(contexts x arms)`` array of ``columns`` raveled, and the run date."""
    n_ctx, n_arms = len(CONTEXTS), len(arms)
    frame: dict[str, Any] = {
        C.SEGMENT: np.repeat([s for s, _ in CONTEXTS], n_arms),
        C.DAYPART: np.repeat([d for _, d in CONTEXTS], n_arms),
        C.ARM: np.tile(np.asarray(arms, dtype=object), n_ctx),
    }
    for name, values in columns.items():
        if values.shape != (n_ctx, n_arms):
            raise ValueError(f"column {name!r} has shape {values.shape}, expected {(n_ctx, n_arms)}")
        frame[name] = values.ravel()
    frame[C.RUN_DATE] = np.full(n_ctx * n_arms, run_date)
    return pd.DataFrame(frame)


def category_codes(
    values: npt.ArrayLike | pd.Series, categories: tuple[str, ...] | list[str]
) -> npt.NDArray[np.int64]:
    """Position of each value in ``categories``; -1 for values not in it (or null).

    Hash-based (``pd.factorize`` then a lookup of the few distinct values), so it stays fast on
    millions of strings.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    index = {name: i for i, name in enumerate(categories)}
    lookup = np.array([index.get(u, -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[codes]  # the sentinel -1 picks the trailing -1


def context_index(
    segments: npt.ArrayLike | pd.Series, dayparts: npt.ArrayLike | pd.Series
) -> npt.NDArray[np.int64]:
    """Index into :data:`CONTEXTS` per (segment, daypart) pair; -1 where either value is unknown or null."""
    seg = category_codes(segments, SEGMENTS)
    day = category_codes(dayparts, DAYPARTS)
    return np.where((seg >= 0) & (day >= 0), seg * len(DAYPARTS) + day, -1)


def end_of_day(run_date: date) -> pd.Timestamp:
    """The first instant after run date ``D`` (D+1 00:00 UTC): history "as of" the nightly run."""
    return pd.Timestamp(datetime.combine(run_date + timedelta(days=1), time(0), tzinfo=UTC))


def segment_of(
    n_ratings: npt.ArrayLike,
    last_ts: pd.Series | npt.ArrayLike,
    as_of: pd.Timestamp,
    cfg: BanditSettings,
) -> npt.NDArray[np.object_]:
    """Segment name per user from the size and recency of the history (rules in the module docstring)."""
    n = np.asarray(n_ratings, dtype=np.int64)
    last = pd.to_datetime(pd.Series(last_ts), utc=True)
    recent = (last >= as_of - pd.Timedelta(days=cfg.power_recency_days)).to_numpy(dtype=bool)
    out = np.full(n.shape, Segment.CASUAL.value, dtype=object)
    out[(n >= cfg.power_min_ratings) & recent] = Segment.POWER.value
    out[n < cfg.new_max_ratings] = Segment.NEW.value
    return out


def user_segments(interactions: pd.DataFrame, run_date: date, cfg: BanditSettings) -> pd.DataFrame:
    """One row per user of ``interactions`` (sorted by user id): ``user_id``, ``segment``.

    Only ratings stamped before the end of ``run_date`` count (the history the night knows about).
    """
    missing = {C.USER_ID, C.TS} - set(interactions.columns)
    if missing:
        raise ValueError(f"user_segments: interactions lack columns {sorted(missing)}")
    as_of = end_of_day(run_date)
    ts = pd.to_datetime(interactions[C.TS], utc=True)
    frame = pd.DataFrame({C.USER_ID: interactions[C.USER_ID].to_numpy(np.int64), C.TS: ts})
    frame = frame[frame[C.TS] < as_of]
    stats = frame.groupby(C.USER_ID, sort=True)[C.TS].agg(["size", "max"])
    segments = segment_of(stats["size"].to_numpy(), stats["max"], as_of, cfg)
    return pd.DataFrame({C.USER_ID: stats.index.to_numpy(np.int64), C.SEGMENT: segments})


def daypart_of_hour(hours: npt.ArrayLike, cfg: BanditSettings) -> npt.NDArray[np.object_]:
    """Daypart name per UTC hour in [0, 24) (rules in the module docstring)."""
    h = np.asarray(hours, dtype=np.int64)
    if h.size and (h.min() < 0 or h.max() > 23):
        raise ValueError(f"hours must lie in [0, 23], got min {h.min()} max {h.max()}")
    starts = np.asarray(cfg.daypart_starts, dtype=np.int64)
    order = np.argsort(starts)
    sorted_starts = starts[order]
    # position of the latest start <= h; -1 (before the first start) wraps to the last one
    pos = np.searchsorted(sorted_starts, h, side="right") - 1
    pos = np.where(pos < 0, len(sorted_starts) - 1, pos)
    names = np.asarray(DAYPARTS, dtype=object)
    return names[order[pos]]


def daypart_of(timestamps: pd.Series | npt.ArrayLike, cfg: BanditSettings) -> npt.NDArray[np.object_]:
    """Daypart name per timestamp (converted to UTC)."""
    ts = pd.to_datetime(pd.Series(timestamps), utc=True)
    return daypart_of_hour(ts.dt.hour.to_numpy(np.int64), cfg)


def pooling_groups(pooling: str) -> npt.NDArray[np.int64] | None:
    """Group id per context of :data:`CONTEXTS` for ``BanditSettings.pooling``: ``segment`` (the four
    dayparts of a segment share), ``global`` (all contexts share) or ``none`` (None)."""
    if pooling == "none":
        return None
    if pooling == "segment":
        return np.asarray([SEGMENTS.index(s) for s, _ in CONTEXTS], dtype=np.int64)
    if pooling == "global":
        return np.zeros(len(CONTEXTS), dtype=np.int64)
    raise ValueError(f"unknown bandit.pooling {pooling!r}; use none, segment or global")
