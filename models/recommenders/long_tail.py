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

from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepcuts.formulas import scale_5pt
from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Recommender
from deepcuts.models.recommenders.item_stats import ItemStats
from deepcuts.settings import LongTailSettings, QualitySettings, Settings


def scale_floor(floor_5pt: float, rating_scale: tuple[float, float]) -> float:
    """A 5-point floor mapped linearly onto ``[rating_min, rating_max]``: ``lo + (f - 1) (hi - lo) / 4``."""
    lo, hi = rating_scale
    if hi <= lo:
        raise ValueError(f"rating scale {rating_scale} is empty; set source.rating_min < source.rating_max")
    return scale_5pt(floor_5pt, lo, hi)


def normalise_rows(scores: FloatArray, seen: np.ndarray | sp.csr_matrix | None = None) -> FloatArray:
    """Min-max normalise each row to [0, 1] over its finite, unseen entries; others become -inf.

    ``r = (s - min) / (max - min)``; a constant row becomes all zeros. ``seen`` is a dense boolean
    mask or a CSR matrix whose stored entries are the seen items (no dense copy of it is made).
    """
    out = np.array(scores, dtype=np.float32, copy=True)
    if sp.issparse(seen):
        seen = sp.csr_matrix(seen)
        out[np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), seen.indices] = -np.inf
    elif seen is not None:
        out[seen] = -np.inf
    finite = np.isfinite(out)
    # reductions over the finite entries only (where=): no masked copies of the block
    lo = out.min(axis=1, keepdims=True, where=finite, initial=np.inf)
    hi = out.max(axis=1, keepdims=True, where=finite, initial=-np.inf)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    span = np.where(np.isfinite(hi), hi - lo, 0.0)
    out -= lo
    out /= np.maximum(span, 1e-12)
    np.copyto(out, -np.inf, where=~finite)
    return out


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

    def _relevance(self, user_rows: IntArray) -> FloatArray:
        assert self.data is not None
        return normalise_rows(self.base.score_block(user_rows), self.data.binary_rows(user_rows))

    def _floor_last(self, scores: FloatArray) -> FloatArray:
        """Rank every item under the quality floor after every item above it, in place.

        ``s' = s - (max_row - min_row + 1)`` for items under the floor (finite entries only), so the
        order inside each group is kept. Excluding them instead would leave a user who has seen every
        item above the floor (power users, small catalogs) with a short list that no later step can
        fill; the re-ranker's per-item floor on long-tail items still keeps those out of served lists
        whenever enough good items exist.
        """
        assert self.below_floor_ is not None
        finite = np.isfinite(scores)
        hi = scores.max(axis=1, keepdims=True, where=finite, initial=-np.inf)
        lo = scores.min(axis=1, keepdims=True, where=finite, initial=np.inf)
        shift = np.where(np.isfinite(hi - lo), hi - lo + 1.0, 0.0).astype(np.float32)
        # in place on the floored columns only (where=): no gathered copy of them
        np.subtract(scores, shift, out=scores, where=self.below_floor_[None, :])
        return scores


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
        rel = self._relevance(user_rows)
        boost = np.where(self.stats_.is_long_tail, self.config.tail_boost, 1.0).astype(np.float32)
        return self._floor_last(rel * boost[None, :])
