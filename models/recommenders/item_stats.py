"""Per-item statistics shared by the deep-cut arms and the re-ranker.

For item ``i`` with ``n_i`` ratings summing to ``s_i``, over ``N = sum_i n_i`` interactions:

- popularity share ``p_i = n_i / N``;
- quality, the Bayesian (shrunk) mean rating ``q_i = (s_i + m * mu) / (n_i + m)``, where ``mu`` is the
  global mean rating and ``m`` the prior weight (``QualitySettings.prior_weight``): an item with few
  ratings is pulled toward the global mean, so one 5-star rating does not make a masterpiece;
- long-tail flag: sort items by ``n_i`` descending (ties: lower catalog index first); the short head is
  the shortest prefix whose cumulative share reaches ``head_share``; every other item (including items
  nobody rated) is long tail;
- popularity percentile, mid-rank: ``pct_i = (#{j: n_j < n_i} + 0.5 * #{j: n_j = n_i}) / n_items`` in
  ``(0, 1)``; 0.5 for every item when all counts tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts import formulas
from deepcuts.contracts import C
from deepcuts.formulas import long_tail_mask
from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix

BoolArray = npt.NDArray[np.bool_]


def bayesian_mean(
    sums: npt.ArrayLike, counts: npt.ArrayLike, prior_mean: float, prior_weight: float
) -> FloatArray:
    """:func:`deepcuts.formulas.bayesian_mean` as float32 arrays; ``prior_weight`` ``m`` must be > 0
    (with ``m = 0`` an unrated item has no defined mean)."""
    if prior_weight <= 0:
        raise ValueError(f"prior_weight must be > 0 (got {prior_weight}); set arms.quality.prior_weight")
    s = np.asarray(sums, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    return np.asarray(formulas.bayesian_mean(s, n, prior_mean, prior_weight), dtype=np.float32)


def popularity_percentile(counts: npt.ArrayLike) -> FloatArray:
    """Mid-rank percentile of each count among all items, in (0, 1)."""
    n = np.asarray(counts, dtype=np.float64)
    if n.size == 0:
        return np.empty(0, np.float32)
    sorted_counts = np.sort(n)
    below = np.searchsorted(sorted_counts, n, side="left")
    at_or_below = np.searchsorted(sorted_counts, n, side="right")
    return ((below + 0.5 * (at_or_below - below)) / n.size).astype(np.float32)


@dataclass(frozen=True)
class ItemStats:
    """Statistics per catalog column of an :class:`InteractionMatrix` (same order as ``item_ids``)."""

    item_ids: IntArray
    counts: IntArray
    popularity_share: FloatArray
    quality: FloatArray
    is_long_tail: BoolArray
    popularity_percentile: FloatArray
    global_mean: float

    @classmethod
    def from_matrix(cls, data: InteractionMatrix, prior_weight: float, head_share: float) -> ItemStats:
        ratings = data.ratings
        # stored entries per column (an explicit 0 rating counts), without a CSC copy of the matrix
        counts = np.bincount(ratings.indices, minlength=ratings.shape[1]).astype(np.int64)
        sums = np.asarray(ratings.sum(axis=0), dtype=np.float64).ravel()
        return cls.from_counts(data.item_ids, counts, sums, prior_weight, head_share)

    @classmethod
    def from_counts(
        cls,
        item_ids: IntArray,
        counts: IntArray,
        sums: npt.NDArray[np.float64],
        prior_weight: float,
        head_share: float,
    ) -> ItemStats:
        """Statistics from each item's rating count and rating sum (aligned with ``item_ids``): what
        :meth:`from_matrix` computes once it has counted, for callers that count without a matrix (the
        score step's shard-local context, ``deepcuts.pipelines.score.catalog_stats``)."""
        total = int(counts.sum())
        global_mean = float(sums.sum() / total) if total else 0.0
        return cls(
            item_ids=item_ids,
            counts=counts,
            popularity_share=(counts / max(total, 1)).astype(np.float32),
            quality=bayesian_mean(sums, counts, global_mean, prior_weight),
            is_long_tail=long_tail_mask(counts, head_share),
            popularity_percentile=popularity_percentile(counts),
            global_mean=global_mean,
        )

    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None,
        prior_weight: float,
        head_share: float,
    ) -> ItemStats:
        """Statistics from canonical frames (latest rating per (user, item) pair, like the models)."""
        return cls.from_matrix(InteractionMatrix.from_frames(interactions, items), prior_weight, head_share)

    def tail_ids(self, min_quality: float, min_ratings: int = 0) -> IntArray:
        """Ids of the long-tail items with quality >= ``min_quality`` and >= ``min_ratings`` ratings:
        the items a long-tail candidate quota draws from (below the floor they are never served)."""
        ok = self.is_long_tail & (self.quality >= min_quality) & (self.counts >= min_ratings)
        return self.item_ids[ok]

    def to_frame(self) -> pd.DataFrame:
        """One row per item: item_id, rating_count, popularity_share, quality, is_long_tail, percentile."""
        return pd.DataFrame(
            {
                C.ITEM_ID: self.item_ids,
                C.RATING_COUNT: self.counts,
                C.POPULARITY_SHARE: self.popularity_share,
                C.QUALITY: self.quality,
                C.IS_LONG_TAIL: self.is_long_tail,
                C.POPULARITY_PERCENTILE: self.popularity_percentile,
            }
        )
