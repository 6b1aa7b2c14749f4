"""LightFM hybrid factorisation trained with the WARP loss (Kula, 2015; Weston et al., 2011).

An item is represented by the sum of the embeddings of its features: its identity feature plus, when
``use_genre_features`` is on, one feature per genre (weight ``genre_feature_weight``), each item row
L1-normalised as LightFM recommends. Users have identity features only. With user embedding ``p_u``,
item feature matrix ``F`` (items x features), feature embeddings ``E`` and biases ``b``:

    q_i = F_i E,   b_i = F_i b,   score(u, i) = p_u . q_i + b_i

(the user bias is constant per user and dropped: it does not change a ranking). Positives are the
interactions with rating >= ``positive_threshold``; WARP samples up to ``max_sampled`` negatives per
positive until one is ranked above it. Epochs are capped at ``max_updates / n_positives`` (at least 1)
so large histories fit the nightly window. Training uses LightFM's Cython SGD (Hogwild with ``threads`` > 1,
which is faster but not bit-reproducible; 1 thread is exact for a seed). Scoring is one batched
``(batch x d) @ (d x items)`` product on the item representations cached after fitting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepcuts.contracts import C
from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Recommender
from deepcuts.settings import LightFMSettings


def genre_feature_matrix(
    items: pd.DataFrame, item_ids: IntArray, genre_weight: float, use_genres: bool = True
) -> tuple[sp.csr_matrix, list[str]]:
    """Item features ``[I | w * G]``, rows L1-normalised; returns the matrix and the genre vocabulary.

    Rows follow ``item_ids``; items missing from ``items`` (rated but not in the catalog) get their
    identity feature only. ``G`` is the 0/1 item x genre indicator matrix (genres sorted by name).
    """
    n = item_ids.size
    identity = sp.identity(n, dtype=np.float32, format="csr")
    if not use_genres or genre_weight == 0 or C.GENRES not in items.columns:
        return identity, []
    catalog = items[[C.ITEM_ID, C.GENRES]].drop_duplicates(C.ITEM_ID, keep="last")
    cols = np.searchsorted(item_ids, catalog[C.ITEM_ID].to_numpy(np.int64))
    cols = np.minimum(cols, max(n - 1, 0))
    present = item_ids[cols] == catalog[C.ITEM_ID].to_numpy(np.int64) if n else np.zeros(0, bool)
    exploded = (
        pd.DataFrame({"row": cols[present], C.GENRES: catalog[C.GENRES].to_numpy()[present]})
        .explode(C.GENRES)
        .dropna()
    )
    vocab = sorted(exploded[C.GENRES].astype(str).unique().tolist())
    if not vocab:
        return identity, []
    genre_col = np.searchsorted(np.asarray(vocab, dtype=object), exploded[C.GENRES].astype(str).to_numpy())
    genres = sp.csr_matrix(
        (np.full(len(exploded), genre_weight, np.float32), (exploded["row"].to_numpy(), genre_col)),
        shape=(n, len(vocab)),
    )
    genres.data[:] = genre_weight  # duplicated genres in one row count once
    features = sp.hstack([identity, genres], format="csr", dtype=np.float32)
    row_sums = np.asarray(features.sum(axis=1)).ravel()
    features = sp.diags(1.0 / np.maximum(row_sums, 1e-12)).astype(np.float32) @ features
    return sp.csr_matrix(features, dtype=np.float32), vocab


def epochs_within_budget(epochs: int, max_updates: int, positives: int) -> int:
    """The epochs a fit runs: ``epochs``, capped so that epochs x positives stays within the update
    budget on large histories (the nightly window is fixed), and at least one."""
    return max(1, min(epochs, max_updates // max(positives, 1)))


class LightFMRecommender(Recommender):
    """LightFM WARP with identity + genre item features."""

    name = "lightfm"
    config: LightFMSettings

    def __init__(
        self, config: LightFMSettings | None = None, seed: int = 42, batch_users: int = 1024
    ) -> None:
        super().__init__(config or LightFMSettings(), seed, batch_users)
        self.user_embeddings_: FloatArray | None = None
        self.item_embeddings_: FloatArray | None = None
        self.item_biases_: FloatArray | None = None
        self.genre_vocabulary_: list[str] = []
        self.epochs_run_ = 0

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        from lightfm import LightFM  # heavy Cython import only when this arm trains

        c = self.config
        positives = data.ratings.tocoo()
        keep = positives.data >= c.positive_threshold
        interactions = sp.coo_matrix(
            (np.ones(int(keep.sum()), np.float32), (positives.row[keep], positives.col[keep])),
            shape=positives.shape,
        )
        features, self.genre_vocabulary_ = genre_feature_matrix(
            items, data.item_ids, c.genre_feature_weight, c.use_genre_features
        )
        model = LightFM(
            no_components=c.components,
            loss=c.loss,
            learning_rate=c.learning_rate,
            item_alpha=c.item_alpha,
            user_alpha=c.user_alpha,
            max_sampled=c.max_sampled,
            random_state=np.random.RandomState(self.seed),
        )
        self.epochs_run_ = epochs_within_budget(c.epochs, c.max_updates, interactions.nnz)
        model.fit(interactions, item_features=features, epochs=self.epochs_run_, num_threads=c.threads)
        biases, embeddings = model.get_item_representations(features)
        self.item_embeddings_ = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.item_biases_ = np.asarray(biases, dtype=np.float32)
        self.user_embeddings_ = np.ascontiguousarray(model.user_embeddings, dtype=np.float32)

    def _score(self, user_rows: IntArray) -> FloatArray:
        assert self.user_embeddings_ is not None and self.item_embeddings_ is not None
        assert self.item_biases_ is not None
        out = self.user_embeddings_[user_rows] @ self.item_embeddings_.T
        out += self.item_biases_[None, :]
        return out.astype(np.float32, copy=False)
