"""Nightly step ``candidates``: top-``candidates_n`` items per user and enabled arm, for one user shard.

Sharding rule (used by ``score`` and anything else that splits users): a user belongs to shard
``user_id % n_shards`` (:func:`user_shard`). The users of a run date are the users of
``canonical/interactions`` for that date; a user with no history gets no candidates (there is nothing
to personalise, and the app's cold-start list is the popularity baseline).

For each arm in ``settings.arms.enabled`` the model trained for the run date is loaded and the shard's
users are scored ``arms.batch_users`` at a time (one dense ``batch x n_items`` float32 block per arm at
a time), seen items removed, and the rows (user_id, item_id, rank, score, arm, run_date;
``CANDIDATES_SCHEMA``) written to ``candidates/run_date=D/<arm>/shard-NNNN.parquet``. Each user's
``candidates_n`` rows hold at least ``arms.tail_candidates`` long-tail items at or above the per-item
quality floor and ``arms.head_candidates`` head items, the arm's own best-scored ones
(:func:`candidate_quotas`), so the re-ranker can always fill the long-tail band. Peak memory:
one scoring block plus the shard's output rows. Idempotent: a rerun rewrites the same parts with the
same rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from deepcuts.contracts import CANDIDATES_SCHEMA, C, Dataset
from deepcuts.models.recommenders.base import InteractionMatrix, blas_threads, shared_scores
from deepcuts.models.recommenders.item_stats import ItemStats
from deepcuts.models.recommenders.long_tail import scale_floor
from deepcuts.models.recommenders.registry import base_arm
from deepcuts.pipelines.storage import Lake, as_run_date
from deepcuts.pipelines.train import load_model
from deepcuts.progress import get_logger, progress
from deepcuts.settings import Settings

log = get_logger(__name__)


def user_shard(user_ids: npt.ArrayLike, n_shards: int) -> npt.NDArray[np.int64]:
    """Shard of each user id: ``user_id % n_shards`` (always in ``0 .. n_shards - 1``)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1 (got {n_shards}); see settings.arms.user_shards")
    return np.mod(np.asarray(user_ids, dtype=np.int64), n_shards)


def shard_part(arm: str, shard: int) -> str:
    """Part name of one arm's candidates for one shard: ``<arm>/shard-NNNN``."""
    return f"{arm}/shard-{shard:04d}"


def shard_users(lake: Lake, run_date: date, shard: int, n_shards: int) -> npt.NDArray[np.int64]:
    """Sorted ids of the run date's users that fall in ``shard``."""
    users = lake.read_table(Dataset.INTERACTIONS, run_date, columns=[C.USER_ID]).column(C.USER_ID)
    ids = np.unique(users.to_numpy())
    return ids[user_shard(ids, n_shards) == shard]


def candidate_quotas(data: InteractionMatrix, settings: Settings) -> list[tuple[npt.NDArray[np.int64], int]]:
    """The ``(item_ids, count)`` quotas every arm's candidates hold (``Recommender.recommend``):

    - ``arms.tail_candidates`` long-tail items (``arms.long_tail.head_share``) at or above the per-item
      floor the re-ranker applies to long-tail items (``arms.quality.item_floor_5pt``, ``min_ratings``),
      so no quota slot goes to an item it would not serve;
    - ``arms.head_candidates`` head items, for arms whose own top ranks are mostly long tail (the
      serendipity arm's top 100 can hold fewer head items than a served list needs).
    """
    arms = settings.arms
    stats = ItemStats.from_matrix(data, arms.quality.prior_weight, arms.long_tail.head_share)
    scale = (settings.source.rating_min, settings.source.rating_max)
    tail = stats.tail_ids(scale_floor(arms.quality.item_floor_5pt, scale), arms.quality.min_ratings)
    head = stats.item_ids[~stats.is_long_tail]
    return [(tail, arms.tail_candidates), (head, arms.head_candidates)]


def _arm_candidates(
    lake: Lake, day: date, arm: str, users: npt.NDArray[np.int64], shard: int, settings: Settings
) -> int:
    """Write one arm's top-``n`` candidates for the shard's ``users``; returns the rows written."""
    n, batch = settings.arms.candidates_n, settings.arms.batch_users
    lake.require_complete(Dataset.MODELS, day, scope=arm)
    model = load_model(lake, day, arm)
    assert model.data is not None
    quotas = candidate_quotas(model.data, settings)
    parts = []
    batches = [users[i : i + batch] for i in range(0, users.size, batch)]
    for chunk in progress(batches, desc=f"candidates {arm} shard {shard}", total=len(batches)):
        parts.append(model.recommend_columns(chunk, n, quotas=quotas))
    table = _candidates_table(parts, arm, day)
    lake.write_table(Dataset.CANDIDATES, day, table, part=shard_part(arm, shard))
    return table.num_rows


def _candidates_table(parts: list[dict[str, npt.NDArray[Any]]], arm: str, day: date) -> pa.Table:
    """One arm's rows (``CANDIDATES_SCHEMA``) from the batches' columns (``recommend_columns``).

    The constant columns are built from buffers, not from a Python list per row (a list of ~1.7M
    strings and dates per shard cost more than the rest of the table).
    """
    if not parts:
        return CANDIDATES_SCHEMA.empty_table()
    rows = sum(len(part[C.USER_ID]) for part in parts)
    name = arm.encode()
    offsets = np.arange(rows + 1, dtype=np.int32) * np.int32(len(name))
    arms = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(name * rows))
    days = np.full(rows, (day - date(1970, 1, 1)).days, dtype=np.int32)
    return pa.table(
        {
            C.USER_ID: pa.array(np.concatenate([p[C.USER_ID] for p in parts]).astype(np.int64, copy=False)),
            C.ITEM_ID: pa.array(np.concatenate([p[C.ITEM_ID] for p in parts]).astype(np.int64, copy=False)),
            C.RANK: pa.array(np.concatenate([p[C.RANK] for p in parts]).astype(np.int32, copy=False)),
            C.SCORE: pa.array(np.concatenate([p[C.SCORE] for p in parts]).astype(np.float32, copy=False)),
            C.ARM: arms,
            C.RUN_DATE: pa.array(days).view(pa.date32()),
        },
        schema=CANDIDATES_SCHEMA,
    )


def candidates_shard(settings: Settings, run_date: date | str, shard: int, n_shards: int) -> dict[str, Any]:
    """Write every enabled arm's top-N candidates for the users of ``shard`` (see the module docstring)."""
    day = as_run_date(run_date)
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1} (n_shards={n_shards})")
    lake = Lake(settings.home)
    lake.require_inputs(day, Dataset.INTERACTIONS)
    users = shard_users(lake, day, shard, n_shards)
    rows: dict[str, int] = {}
    # the deep-cut arms' base (item_cf) is scored once per user batch, not once per arm using it
    bases = [b for a in settings.arms.enabled if (b := base_arm(a, settings))]
    with blas_threads(settings.arms.blas_threads), shared_scores(bases, settings.arms.score_cache_mb):
        for arm in settings.arms.enabled:
            rows[arm] = _arm_candidates(lake, day, arm, users, shard, settings)
    log.info("candidates %s shard %d/%d: %d users, rows %s", day, shard, n_shards, users.size, rows)
    lake.mark_all_complete(f"shard-{shard:04d}", shards=n_shards)  # score checks it
    return {
        "run_date": day.isoformat(),
        "shard": shard,
        "n_shards": n_shards,
        "users": int(users.size),
        "rows": rows,
    }
