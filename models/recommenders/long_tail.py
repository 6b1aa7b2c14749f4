"""Long-tail arm: a base relevance model's scores boosted toward long-tail items, under a quality floor.

For user ``u`` the base model's scores over the items the user has not seen are min-max normalised to
``r_ui in [0, 1]`` (so the boost means the same for every base model and every user), then

    score(u, i) = r_ui * tail_boost   if i is long tail     (item_stats.long_tail_mask, head_share)
                  r_ui                otherwise
    score(u, i) -= span_u + 1         if quality_i < floor  (shrunk mean rating, item_stats.bayesian_mean)
                                         or n_i < min_ratings (no evidence: the quality is the prior)

i.e. items under the floor come after every item above it (``QualityFloorMixin._floor_last``), so
they only fill a list when the user has seen everything above the floor.

``floor`` is ``QualitySettings.item_floor_5pt`` mapped linearly onto the rating scale. A large
``tail_boost`` (> 1 / min positive r) restricts the list to the tail. On the ML-100k split with the
EASE^R base (liked-weighted history): boost 2.5 -> nDCG@10 0.373, long-tail share 0.35 (EASE^R alone:
0.4805, 0.001).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepcuts.formulas import scale_5pt
from deepcuts.models.recommenders.base import (
    FloatArray,
    IntArray,
    InteractionMatrix,
    Recommender,
    entry_rows,
)
from deepcuts.models.recommenders.item_stats import ItemStats
from deepcuts.settings import LongTailSettings, QualitySettings, Settings


def scale_floor(floor_5pt: float, rating_scale: tuple[float, float]) -> float:
    """A 5-point floor mapped linearly onto ``[rating_min, rating_max]``: ``lo + (f - 1) (hi - lo) / 4``."""
    lo, hi = rating_scale
    if hi <= lo:
        raise ValueError(f"rating scale {rating_scale} is empty; set source.rating_min < source.rating_max")
    return scale_5pt(floor_5pt, lo, hi)


#: Bytes of a score block that chained elementwise steps process at a time: a chunk of rows this size
#: stays in the CPU cache from one step to the next instead of the whole block (110 MB at 1,024 users x
#: 26,744 items) streaming through memory once per step. Each entry gets the same operations either way.
CHUNK_BYTES = 1 << 20


def row_chunks(block: np.ndarray) -> Iterator[slice]:
    """Slices of consecutive rows of ``block`` holding about ``CHUNK_BYTES`` each (at least one row)."""
    rows = max(1, CHUNK_BYTES // max(1, block.shape[1] * block.itemsize))
    for start in range(0, block.shape[0], rows):
        yield slice(start, start + rows)


#: Where a block's seen entries are: (rows, columns) or a dense boolean mask (:func:`seen_positions`).
SeenPositions = tuple[np.ndarray, np.ndarray] | np.ndarray


def normalise_rows(scores: FloatArray, seen: np.ndarray | sp.csr_matrix | None = None) -> FloatArray:
    """Min-max normalise each row to [0, 1] over its finite, unseen entries; others become -inf.

    ``r = (s - min) / (max - min)``; a constant row becomes all zeros. ``seen`` is a dense boolean
    mask or a CSR matrix whose stored entries are the seen items (no dense copy of it is made).
    """
    return normalise_at(scores, seen_positions(seen))


def normalise_at(scores: FloatArray, at: SeenPositions) -> FloatArray:
    """:func:`normalise_rows` with the seen entries given as an index (:func:`seen_positions`)."""
    out = np.empty(np.shape(scores), dtype=np.float32)
    # copy, bounds and normalisation chained on cache-sized row chunks: one trip through memory
    for rows in row_chunks(out):
        part = out[rows]
        np.copyto(part, scores[rows], casting="unsafe")
        bounds = finite_bounds_outside(part, seen_in(at, rows))
        if bounds is None:
            # some unseen entry is -inf, +inf or NaN: reductions over the finite entries only (where=)
            out = np.array(scores, dtype=np.float32, copy=True)
            out[at] = -np.inf
            return _normalise_finite(out, np.isfinite(out))
        lo, hi = bounds
        lo = np.where(np.isfinite(lo), lo, 0.0)
        span = np.where(np.isfinite(hi), hi - lo, 0.0)
        # every non-finite entry is a seen one, now -inf: (-inf - lo) / span stays -inf (lo finite,
        # span > 0)
        part -= lo
        part /= np.maximum(span, 1e-12)
    return out


def seen_in(at: SeenPositions, rows: slice) -> SeenPositions:
    """The seen positions inside the rows ``rows`` of a block, relative to its first row (the (rows,
    columns) pairs of :func:`seen_positions` come in row order, as a CSR matrix stores them)."""
    if isinstance(at, np.ndarray):
        return at[rows]
    seen_rows, seen_cols = at
    first, last = np.searchsorted(seen_rows, [rows.start, rows.stop])
    return seen_rows[first:last] - rows.start, seen_cols[first:last]


def _normalise_finite(out: FloatArray, finite: np.ndarray) -> FloatArray:
    """:func:`normalise_rows` of ``out`` (seen entries already -inf) in place, for any entries."""
    lo = out.min(axis=1, keepdims=True, where=finite, initial=np.inf)
    hi = out.max(axis=1, keepdims=True, where=finite, initial=-np.inf)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    span = np.where(np.isfinite(hi), hi - lo, 0.0)
    out -= lo
    out /= np.maximum(span, 1e-12)
    np.copyto(out, -np.inf, where=~finite)
    return out


def seen_positions(seen: np.ndarray | sp.csr_matrix | None) -> SeenPositions:
    """``seen`` as an index into a score block: (rows, columns) of a CSR matrix's stored entries, else
    the dense boolean mask itself (no seen items: an empty mask index)."""
    if sp.issparse(seen):
        seen = sp.csr_matrix(seen)  # rows in order (seen_in relies on it)
        return entry_rows(seen), seen.indices
    if seen is None:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    return np.asarray(seen, dtype=bool)


def finite_bounds_outside(scores: FloatArray, seen: SeenPositions) -> tuple[FloatArray, FloatArray] | None:
    """Per-row (min, max) over the finite entries of ``scores`` (keepdims, ``+inf``/``-inf`` for a row
    without any) when every entry outside ``seen`` is finite, else None; sets the seen entries to -inf.

    Plain reductions instead of ``where=`` ones (several times cheaper on a block): with the seen
    entries at ``+inf`` the row min is the min over the others, at ``-inf`` the max is. A finite min
    and max prove every other entry finite; a row whose min is ``+inf`` and max ``-inf`` is all seen.
    The values are those of the ``where=`` reductions (a min or max rounds nothing).
    """
    scores[seen] = np.inf
    lo = scores.min(axis=1, keepdims=True, initial=np.inf)
    scores[seen] = -np.inf
    hi = scores.max(axis=1, keepdims=True, initial=-np.inf)
    all_seen = (lo == np.inf) & (hi == -np.inf)
    # a finite hi - lo also keeps (-inf - lo) / span at -inf on the seen entries (an infinite span
    # would make them NaN, which the where= path turns back into -inf)
    if not (all_seen | np.isfinite(hi - lo)).all():
        return None
    return lo, hi


def same_matrix(a: InteractionMatrix | None, b: InteractionMatrix) -> bool:
    """True when ``a`` holds the same users, items and ratings as ``b``."""
    if a is None:
        return False
    if a is b:
        return True
    return (
        a.ratings.shape == b.ratings.shape
        and np.array_equal(a.user_ids, b.user_ids)
        and np.array_equal(a.item_ids, b.item_ids)
        and a.ratings.nnz == b.ratings.nnz
        and (a.ratings != b.ratings).nnz == 0
    )


class QualityFloorMixin:
    """Shared state of the deep-cut arms: a base model, item statistics and the item quality floor."""

    base: Recommender
    quality: QualitySettings
    rating_scale: tuple[float, float]
    stats_: ItemStats | None
    data: InteractionMatrix | None
    below_floor_: np.ndarray | None

    @classmethod
    def from_settings(
        cls, settings: Settings, config: Any, seed: int, *, base: Recommender | None = None
    ) -> Self:
        """A deep-cut arm re-weights ``base`` (``arms.<arm>.base``, built by
        ``deepcuts.models.recommenders.registry``) and floors items by the shared ``arms.quality`` settings on
        the source's rating scale."""
        if base is None:
            raise ValueError(
                f"{cls.__name__} needs its base model (arms.<arm>.base); build arms with build_recommender"
            )
        return cls(
            config,  # type: ignore[call-arg]
            seed=seed,
            batch_users=settings.arms.batch_users,
            base=base,
            quality=settings.arms.quality,
            rating_scale=(settings.source.rating_min, settings.source.rating_max),
            **cls._settings_kwargs(settings),
        )

    @classmethod
    def _settings_kwargs(cls, settings: Settings) -> dict[str, Any]:
        """Further constructor arguments taken from the settings (none by default)."""
        return {}

    def _fit_base(self, data: InteractionMatrix, items: pd.DataFrame, head_share: float) -> None:
        # A base already fitted on exactly this matrix (the base arm's artefact of the same night) is
        # reused as is; otherwise it is fitted here on the same InteractionMatrix, so columns line up.
        reuse = same_matrix(self.base.data, data)
        # share one matrix and popularity vector with the base (one copy in the artefact, and the same
        # bytes whether the base was reused or fitted here)
        self.base.data = data
        self.base.popularity_ = self.popularity_  # type: ignore[attr-defined]
        if not reuse:
            self.base._fit(data, items)
        self.stats_ = ItemStats.from_matrix(data, self.quality.prior_weight, head_share)
        floor = scale_floor(self.quality.item_floor_5pt, self.rating_scale)
        self.below_floor_ = (self.stats_.quality < floor) | (self.stats_.counts < self.quality.min_ratings)

    def _relevance(self, user_rows: IntArray) -> tuple[FloatArray, SeenPositions]:
        """The normalised base scores of the batch (a new block) and where its seen entries are."""
        assert self.data is not None
        at = seen_positions(self.data.binary_rows(user_rows))
        return normalise_at(self.base.score_block(user_rows), at), at

    def _floor_last(self, scores: FloatArray, seen: SeenPositions | None = None) -> FloatArray:
        """Rank every item under the quality floor after every item above it, in place.

        ``s' = s - (max_row - min_row + 1)`` for items under the floor (finite entries only), so the
        order inside each group is kept. Excluding them instead would leave a user who has seen every
        item above the floor (power users, small catalogs) with a short list that no later step can
        fill; the re-ranker's per-item floor on long-tail items still keeps those out of served lists
        whenever enough good items exist.

        ``seen``: where ``scores`` may hold -inf (the user's seen items); when those are its only
        non-finite entries the row bounds come from plain reductions (:func:`finite_bounds_outside`).
        """
        assert self.below_floor_ is not None
        hi, lo = self._finite_bounds(scores, seen)
        shift = np.where(np.isfinite(hi - lo), hi - lo + 1.0, 0.0).astype(np.float32)
        # shift x 1 on the floored columns and shift x 0 = +0 elsewhere (shift is finite), and
        # s - 0 == s for every float: the same values as a where= subtract, at a fraction of its cost
        floored = self.below_floor_.astype(np.float32)[None, :]
        for rows in row_chunks(scores):
            scores[rows] -= shift[rows] * floored
        return scores

    @staticmethod
    def _finite_bounds(scores: FloatArray, seen: SeenPositions | None) -> tuple[FloatArray, FloatArray]:
        """Per-row (max, min) over the finite entries of ``scores`` (keepdims)."""
        if seen is not None and bool(np.all(scores[seen] == -np.inf)):
            bounds = finite_bounds_outside(scores, seen)  # rewrites the seen entries to -inf: unchanged
            if bounds is not None:
                return bounds[1], bounds[0]
        finite = np.isfinite(scores)
        hi = scores.max(axis=1, keepdims=True, where=finite, initial=-np.inf)
        lo = scores.min(axis=1, keepdims=True, where=finite, initial=np.inf)
        return hi, lo


class LongTailRecommender(QualityFloorMixin, Recommender):
    """Base relevance x long-tail boost, items under the quality floor ranked last."""

    name = "long_tail"
    config: LongTailSettings

    def __init__(
        self,
        config: LongTailSettings | None = None,
        seed: int = 42,
        batch_users: int = 1024,
        *,
        base: Recommender,
        quality: QualitySettings | None = None,
        rating_scale: tuple[float, float] = (1.0, 5.0),
    ) -> None:
        super().__init__(config or LongTailSettings(), seed, batch_users)
        self.base = base
        self.quality = quality or QualitySettings()
        self.rating_scale = (float(rating_scale[0]), float(rating_scale[1]))
        self.stats_ = None
        self.below_floor_: np.ndarray | None = None

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        self._fit_base(data, items, self.config.head_share)

    def _score(self, user_rows: IntArray) -> FloatArray:
        assert self.stats_ is not None and self.below_floor_ is not None
        rel, seen = self._relevance(user_rows)
        boost = np.where(self.stats_.is_long_tail, self.config.tail_boost, 1.0).astype(np.float32)
        rel *= boost[None, :]  # in place: rel is a new block of this call
        return self._floor_last(rel, seen)
