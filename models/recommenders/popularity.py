"""Popularity baseline: every user gets the items with the most interactions.

``score(u, i) = n_i / N`` (the item's share of all interactions), the same for every user; seen items
are removed by the base class, ties broken by catalog order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Recommender


class PopularityRecommender(Recommender):
    """The baseline every relevance arm must beat."""

    name = "popularity"

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        # popularity_ is computed by the base class in fit(); nothing else to learn.
        assert self.popularity_ is not None

    def _score(self, user_rows: IntArray) -> FloatArray:
        assert self.popularity_ is not None
        return np.broadcast_to(self.popularity_, (user_rows.size, self.popularity_.size)).copy()

    def _uniform_scores(self) -> FloatArray | None:
        # every user's row is the popularity vector: the base class selects from its order
        return self.popularity_
