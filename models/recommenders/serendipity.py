"""Serendipity arm: relevance x unexpectedness, under the quality floor.

Relevance ``r_ui in [0, 1]`` is the base model's score min-max normalised over the user's unseen items
(as in :mod:`deepcuts.models.recommenders.long_tail`). Unexpectedness mixes two distances from what the user
already expects (Ge et al., 2010; Kotkov et al., 2016):

- genre distance from the user's history profile: with ``g_i`` the L2-normalised genre indicator vector
  of item ``i`` and ``p_u`` the L2-normalised sum of ``g_j`` over the user's history,
  ``d_ui = 1 - p_u . g_i`` (1 for an item sharing no genre with the history, 1 for items without genres);
- distance from the popularity baseline, which recommends what everybody already knows:
  ``1 - pct_i`` with ``pct_i`` the item's popularity percentile (item_stats.popularity_percentile).

    unexp_ui = (1 - popularity_mix) * d_ui + popularity_mix * (1 - pct_i)   in [0, 1]
    score(u, i) = r_ui * exp(unexpectedness_weight * unexp_ui)   (items below the quality floor ranked last)

The exponential makes the weight a log-odds trade-off: at weight ``w`` an item one unit more unexpected
may be ``e^w`` times less relevant. On the ML-100k split with the EASE^R base (liked-weighted history),
weight 2.15, mix 0.7: nDCG@10 0.336, long-tail share 0.33 (genre distance alone does not move the tail
share: 0.002).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Recommender
from deepcuts.models.recommenders.lightfm_warp import genre_feature_matrix
from deepcuts.models.recommenders.long_tail import QualityFloorMixin, row_chunks
from deepcuts.settings import QualitySettings, SerendipitySettings, Settings


class SerendipityRecommender(QualityFloorMixin, Recommender):
    """Base relevance re-weighted by unexpectedness (genre distance + popularity), quality-floored."""

    name = "serendipity"
    config: SerendipitySettings

    def __init__(
        self,
        config: SerendipitySettings | None = None,
        seed: int = 42,
        batch_users: int = 1024,
        *,
        base: Recommender,
        quality: QualitySettings | None = None,
        rating_scale: tuple[float, float] = (1.0, 5.0),
        head_share: float = 0.8,
    ) -> None:
        super().__init__(config or SerendipitySettings(), seed, batch_users)
        self.base = base
        self.quality = quality or QualitySettings()
        self.rating_scale = (float(rating_scale[0]), float(rating_scale[1]))
        self.head_share = float(head_share)
        self.stats_ = None
        self.below_floor_ = None
        self.genres_: np.ndarray | None = None

    @classmethod
    def _settings_kwargs(cls, settings: Settings) -> dict[str, Any]:
        # the long-tail set is the long_tail arm's (one definition of the head for every arm)
        return {"head_share": settings.arms.long_tail.head_share}

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        self._fit_base(data, items, self.head_share)
        features, vocab = genre_feature_matrix(items, data.item_ids, 1.0)
        genres = features[:, data.n_items :].toarray() if vocab else np.zeros((data.n_items, 0))
        norms = np.linalg.norm(genres, axis=1, keepdims=True)
        self.genres_ = (genres / np.maximum(norms, 1e-12)).astype(np.float32)

    def unexpectedness(self, user_rows: IntArray) -> FloatArray:
        """``unexp_ui`` for a batch of user rows (see the module docstring), shape (batch, n_items)."""
        return self._unexpected_in_place(self._genre_similarity(user_rows), self._popularity_term())

    def _genre_similarity(self, user_rows: IntArray) -> FloatArray:
        """``p_u . g_i`` for a batch of user rows (a new float32 block)."""
        assert self.data is not None and self.genres_ is not None
        history = self.data.binary_rows(user_rows)
        profile = np.asarray(history @ self.genres_, dtype=np.float32)
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        return np.asarray(profile @ self.genres_.T, dtype=np.float32)

    def _popularity_term(self) -> np.ndarray:
        """``popularity_mix * (1 - pct_i)``, one row."""
        assert self.stats_ is not None
        return self.config.popularity_mix * (1.0 - self.stats_.popularity_percentile)[None, :]

    def _unexpected_in_place(self, out: FloatArray, popularity_term: np.ndarray) -> FloatArray:
        """``unexp_ui`` from the genre similarities ``out`` (rows of :meth:`_genre_similarity`), in place:
        the same float32 operations as the formula, without its temporaries."""
        np.subtract(1.0, out, out=out)  # the genre distance
        out *= 1.0 - self.config.popularity_mix
        out += popularity_term
        return np.clip(out, 0.0, 1.0, out=out)

    def _score(self, user_rows: IntArray) -> FloatArray:
        assert self.below_floor_ is not None
        rel, seen = self._relevance(user_rows)
        out = self._genre_similarity(user_rows)
        popularity_term = self._popularity_term()
        # every step is elementwise: chained on cache-sized row chunks (the same values, fewer trips
        # of the whole block through memory)
        for rows in row_chunks(out):
            part = self._unexpected_in_place(out[rows], popularity_term)
            part *= self.config.unexpectedness_weight
            np.exp(part, out=part)
            part *= rel[rows]
        return self._floor_last(out, seen)
