"""Offline metrics of top-k recommendation lists (formulas in docs/metrics.md).

- :mod:`deepcuts.metrics.accuracy`: precision@k, recall@k, nDCG@k, MAP (Microsoft Recommenders).
- :mod:`deepcuts.metrics.beyond`: catalog coverage, Gini, novelty, intra-list distance, genres per
  list, long-tail share, mean hit rating, serendipity.

:class:`ListContext` holds what every list is scored against (catalog, training popularity, genres,
long-tail set, ground truth, popularity baseline); :func:`score_lists` turns one arm's lists into the
metric dict written by ``deepcuts evaluate`` and the nightly ``evaluate`` step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts.contracts import C
from deepcuts.metrics.accuracy import (
    AccuracySummary,
    accuracy_summary,
    map_recommenders,
    ndcg_at_k,
    per_user_accuracy,
    precision_at_k,
    recall_at_k,
    top_k_lists,
)
from deepcuts.metrics.beyond import (
    GenreMatrix,
    ItemPopularity,
    catalog_coverage,
    genre_metrics,
    genres_per_list,
    gini_index,
    intra_list_distance,
    long_tail_share,
    mean_hit_rating,
    novelty,
    popularity_baseline,
    serendipity,
)

__all__ = [
    "BEYOND_KEYS",
    "AccuracySummary",
    "GenreMatrix",
    "ItemPopularity",
    "ListContext",
    "accuracy_keys",
    "accuracy_summary",
    "beyond_accuracy",
    "catalog_coverage",
    "genre_metrics",
    "genres_per_list",
    "gini_index",
    "intra_list_distance",
    "long_tail_share",
    "map_recommenders",
    "mean_hit_rating",
    "ndcg_at_k",
    "novelty",
    "per_user_accuracy",
    "popularity_baseline",
    "precision_at_k",
    "recall_at_k",
    "score_lists",
    "serendipity",
    "top_k_lists",
]

#: Beyond-accuracy keys, in the order tables print them.
BEYOND_KEYS: tuple[str, ...] = (
    "catalog_coverage",
    "gini",
    "novelty",
    "ild",
    "genres_per_list",
    "long_tail_share",
    "mean_hit_rating",
    "serendipity",
)


def accuracy_keys(k: int) -> tuple[str, ...]:
    return (f"precision@{k}", f"recall@{k}", f"ndcg@{k}", "map")


@dataclass(frozen=True)
class ListContext:
    """Everything lists are scored against, built once per evaluation and shared by all arms.

    ``truth`` (user_id, item_id, rating) is the held-out data; ``None`` for beyond-accuracy only.
    ``baseline`` is the popularity baseline's top-k (for serendipity); built from ``train`` when absent.
    """

    k: int
    catalog_item_ids: npt.NDArray[np.int64]
    popularity: ItemPopularity
    genres: GenreMatrix
    long_tail_item_ids: npt.NDArray[np.int64]
    truth: pd.DataFrame | None = None
    baseline: pd.DataFrame | None = None

    @classmethod
    def build(
        cls,
        *,
        k: int,
        train: pd.DataFrame,
        items: pd.DataFrame,
        head_share: float,
        truth: pd.DataFrame | None = None,
        long_tail_item_ids: npt.ArrayLike | None = None,
        popularity: ItemPopularity | None = None,
    ) -> ListContext:
        """Catalog = items table ∪ items in train; long tail from ``head_share`` unless given.

        With ``truth``, the popularity baseline is built for the users in ``truth``. ``popularity``, when
        given, must be ``train``'s over that catalog (its ``item_ids`` are then the catalog): a caller
        that has the counts already (the nightly step, from its interaction matrix) saves a pass over
        a big history.
        """
        if popularity is None:
            catalog = np.union1d(items[C.ITEM_ID].to_numpy(np.int64), train[C.ITEM_ID].to_numpy(np.int64))
            popularity = ItemPopularity.from_interactions(train, catalog)
        catalog = popularity.item_ids
        tail = (
            np.unique(np.asarray(long_tail_item_ids, np.int64))
            if long_tail_item_ids is not None
            else popularity.long_tail_ids(head_share)
        )
        baseline = None
        if truth is not None:
            users = np.unique(truth[C.USER_ID].to_numpy(np.int64))
            baseline = popularity_baseline(train, users, k, popularity)
        return cls(
            k=k,
            catalog_item_ids=catalog,
            popularity=popularity,
            genres=GenreMatrix.from_items(items),
            long_tail_item_ids=tail,
            truth=truth,
            baseline=baseline,
        )


def beyond_accuracy(lists: pd.DataFrame, ctx: ListContext) -> dict[str, float | None]:
    """Beyond-accuracy metrics of top-k lists (hit-based ones only when ``ctx.truth`` is set)."""
    ild, genres = genre_metrics(lists, ctx.genres)
    out: dict[str, float | None] = {
        "catalog_coverage": catalog_coverage(lists, ctx.catalog_item_ids),
        "gini": gini_index(lists, ctx.catalog_item_ids),
        "novelty": novelty(lists, ctx.popularity),
        "ild": ild,
        "genres_per_list": genres,
        "long_tail_share": long_tail_share(lists, ctx.long_tail_item_ids),
    }
    if ctx.truth is not None:
        out["mean_hit_rating"] = mean_hit_rating(lists, ctx.truth)
        baseline = ctx.baseline if ctx.baseline is not None else lists.iloc[0:0]
        out["serendipity"] = serendipity(lists, ctx.truth, baseline)
    return out


def score_lists(recs: pd.DataFrame, ctx: ListContext, users: npt.ArrayLike | None = None) -> dict[str, Any]:
    """All metrics of one set of lists: accuracy (if ``ctx.truth``) and beyond accuracy.

    ``recs`` is a long frame (user_id, item_id, rank); it is cut to the top ``ctx.k`` first.
    """
    lists = top_k_lists(recs, ctx.k)
    out: dict[str, Any] = {"n_lists": int(lists[C.USER_ID].nunique())}
    if ctx.truth is not None:
        acc = accuracy_summary(lists, ctx.truth, ctx.k, users)
        out.update(acc.as_dict())
        out["n_users"] = acc.n_users
    out.update(beyond_accuracy(lists, ctx))
    return out
