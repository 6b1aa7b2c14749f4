"""Top-k accuracy metrics on long frames, following the Microsoft Recommenders definitions.

Inputs are long frames: recommendations ``(user_id, item_id, rank)`` (rank 1 = best) and the ground
truth ``(user_id, item_id)`` of relevant items (every test rating is relevant). Nothing loops over users
in Python: every metric is a groupby/numpy reduction.

Notation for one user ``u``: ``L_u`` is the top-k list (positions ``1..k``, a list may be shorter),
``R_u`` the set of relevant items, ``hit(u, p) = 1`` when the item at position ``p`` is in ``R_u``.

Evaluated users: by default the users that have both a list and at least one relevant item (the
``common users`` of Recommenders' ``merge_ranking_true_pred``); pass ``users=`` to score a given set,
in which case a user without a list scores 0 on every metric. Each metric is the plain mean over the
evaluated users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts.contracts import C

#: Columns of the per-user frame returned by :func:`per_user_accuracy`.
N_RELEVANT = "n_relevant"
HITS = "hits"
PRECISION = "precision"
RECALL = "recall"
NDCG = "ndcg"
AVERAGE_PRECISION = "average_precision"


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} frame is missing columns {missing} (has {list(frame.columns)}); "
            f"pass a long frame with columns {columns}"
        )


def top_k_lists(recs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Normalise recommendations to at most ``k`` distinct items per user, positions ``1..n``.

    Rows are ordered by ``rank`` within each user (ties by item id); a repeated (user, item) keeps its
    best rank; ``rank`` is rewritten as the contiguous position, so gaps in the input ranks do not
    change any discount. Returns ``(user_id, item_id, rank)`` sorted by user then rank.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    _require(recs, [C.USER_ID, C.ITEM_ID, C.RANK], "recommendations")
    if _is_normalised(recs, k):
        # lists read back from the lake (and lists this function returned) already are: skip the sort
        return recs[[C.USER_ID, C.ITEM_ID, C.RANK]].astype({C.RANK: np.int32}).reset_index(drop=True)
    frame = _sorted_by_user_rank_item(recs[[C.USER_ID, C.ITEM_ID, C.RANK]])
    frame = frame.drop_duplicates([C.USER_ID, C.ITEM_ID], keep="first")
    position = frame.groupby(C.USER_ID, sort=False).cumcount().to_numpy() + 1
    frame = frame.assign(**{C.RANK: position.astype(np.int32)})
    return frame[frame[C.RANK] <= k].reset_index(drop=True)


def _sorted_by_user_rank_item(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.sort_values([user, rank, item], kind="stable")``; with plain integer columns (lists as
    the steps write them) NumPy's stable lexsort gives the same order without pandas' per-key
    factorizing."""
    columns = (C.USER_ID, C.RANK, C.ITEM_ID)
    if all(isinstance(frame[c].dtype, np.dtype) and frame[c].dtype.kind in "iu" for c in columns):
        users, ranks, items = (frame[c].to_numpy() for c in columns)
        return frame.take(np.lexsort((items, ranks, users)))
    return frame.sort_values(list(columns), kind="stable")


def _is_normalised(recs: pd.DataFrame, k: int) -> bool:
    """True when ``recs`` is already what :func:`top_k_lists` returns for ``k``: rows sorted by user,
    ranks ``1..n`` (``n <= k``) in order within each user, no (user, item) pair twice."""
    users = recs[C.USER_ID].to_numpy()
    ranks = recs[C.RANK].to_numpy()
    if users.size == 0 or users.dtype.kind not in "iu" or ranks.dtype.kind not in "iu":
        return False
    if (users[1:] < users[:-1]).any():
        return False
    index = np.arange(users.size)
    starts = np.r_[True, users[1:] != users[:-1]]
    position = index - np.maximum.accumulate(np.where(starts, index, 0)) + 1
    if not np.array_equal(ranks, position) or int(position.max()) > k:
        return False
    items = recs[C.ITEM_ID].to_numpy()
    order = np.lexsort((items, users))
    same = (users[order][1:] == users[order][:-1]) & (items[order][1:] == items[order][:-1])
    return not same.any()


def relevant_pairs(truth: pd.DataFrame) -> pd.DataFrame:
    """Distinct relevant (user_id, item_id) pairs of a ground-truth frame."""
    _require(truth, [C.USER_ID, C.ITEM_ID], "ground-truth")
    return truth[[C.USER_ID, C.ITEM_ID]].drop_duplicates().reset_index(drop=True)


def mark_hits(lists: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Boolean per row of ``lists``: is (user, item) a relevant pair of ``truth``?"""
    pairs = relevant_pairs(truth)
    if lists.empty or pairs.empty:
        return pd.Series(np.zeros(len(lists), dtype=bool), index=lists.index)
    # One int64 key per pair: membership is then a sorted search, not a Python loop.
    lk, tk = _pair_keys(lists, pairs)
    return pd.Series(np.isin(lk, tk), index=lists.index)


def _pair_keys(a: pd.DataFrame, b: pd.DataFrame) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Encode (user, item) pairs of two frames as comparable int64 keys (dense item codes)."""
    items = np.unique(np.concatenate([a[C.ITEM_ID].to_numpy(np.int64), b[C.ITEM_ID].to_numpy(np.int64)]))
    users = np.unique(np.concatenate([a[C.USER_ID].to_numpy(np.int64), b[C.USER_ID].to_numpy(np.int64)]))
    n_items = np.int64(items.size)

    def keys(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
        u = np.searchsorted(users, frame[C.USER_ID].to_numpy(np.int64)).astype(np.int64)
        i = np.searchsorted(items, frame[C.ITEM_ID].to_numpy(np.int64)).astype(np.int64)
        return u * n_items + i

    return keys(a), keys(b)


def discount_prefix(k: int) -> npt.NDArray[np.float64]:
    """``IDCG(n) = sum_{p=1..n} 1 / log2(p + 1)`` for ``n = 0..k`` (index n)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64)))])


def per_user_accuracy(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    k: int,
    users: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Precision, recall, nDCG and average precision per evaluated user (index ``user_id``).

    For user ``u`` with ``h_u = sum_{p<=k} hit(u, p)`` and ``|R_u|`` relevant items:

    - ``precision_u = h_u / k`` (Recommenders/Spark: a list shorter than k cannot reach 1);
    - ``recall_u = h_u / |R_u|``;
    - ``ndcg_u = DCG_u / IDCG_u`` with ``DCG_u = sum_p hit(u, p) / log2(p + 1)`` and
      ``IDCG_u = sum_{p=1..min(|R_u|, k)} 1 / log2(p + 1)`` (binary relevance);
    - ``average_precision_u = (1 / |R_u|) * sum_{p: hit(u, p)} P_u(p)`` with ``P_u(p)`` the precision
      of the first ``p`` items (hits up to p divided by p): Recommenders' ``map()``, normalised by all
      relevant items, not by ``min(|R_u|, k)``.
    """
    lists = top_k_lists(recs, k)
    pairs = relevant_pairs(truth)
    n_rel = pairs.groupby(C.USER_ID).size()
    if users is None:
        evaluated = np.intersect1d(n_rel.index.to_numpy(np.int64), lists[C.USER_ID].to_numpy(np.int64))
    else:
        evaluated = np.unique(np.asarray(users, dtype=np.int64))
        evaluated = evaluated[np.isin(evaluated, n_rel.index.to_numpy(np.int64))]
    index = pd.Index(evaluated, name=C.USER_ID)
    lists = lists[lists[C.USER_ID].isin(evaluated)]
    hit_rows = lists[mark_hits(lists, pairs).to_numpy()]
    positions = hit_rows[C.RANK].to_numpy(np.float64)
    # i-th hit of the user (1-based) at position p contributes precision i / p to the AP sum
    nth_hit = hit_rows.groupby(C.USER_ID, sort=False).cumcount().to_numpy() + 1
    per_hit = pd.DataFrame(
        {
            C.USER_ID: hit_rows[C.USER_ID].to_numpy(),
            "gain": 1.0 / np.log2(positions + 1.0),
            "prec": nth_hit / positions,
        }
    )
    sums = per_hit.groupby(C.USER_ID).agg(hits=("gain", "size"), dcg=("gain", "sum"), ap=("prec", "sum"))
    sums = sums.reindex(index, fill_value=0)
    relevant = n_rel.reindex(index).to_numpy(np.float64)
    hits = sums["hits"].to_numpy(np.float64)
    idcg = discount_prefix(k)[np.minimum(relevant, k).astype(np.int64)]
    return pd.DataFrame(
        {
            N_RELEVANT: relevant.astype(np.int64),
            HITS: hits.astype(np.int64),
            PRECISION: hits / k,
            RECALL: hits / relevant,
            NDCG: sums["dcg"].to_numpy(np.float64) / idcg,
            AVERAGE_PRECISION: sums["ap"].to_numpy(np.float64) / relevant,
        },
        index=index,
    )


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else 0.0


def precision_at_k(
    recs: pd.DataFrame, truth: pd.DataFrame, k: int, users: npt.ArrayLike | None = None
) -> float:
    """``Precision@k = mean_u |L_u ∩ R_u| / k``."""
    return _mean(per_user_accuracy(recs, truth, k, users)[PRECISION])


def recall_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int, users: npt.ArrayLike | None = None) -> float:
    """``Recall@k = mean_u |L_u ∩ R_u| / |R_u|``."""
    return _mean(per_user_accuracy(recs, truth, k, users)[RECALL])


def ndcg_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int, users: npt.ArrayLike | None = None) -> float:
    """``nDCG@k = mean_u [sum_p hit(u,p) / log2(p+1)] / [sum_{p<=min(|R_u|,k)} 1 / log2(p+1)]``."""
    return _mean(per_user_accuracy(recs, truth, k, users)[NDCG])


def map_recommenders(
    recs: pd.DataFrame, truth: pd.DataFrame, k: int, users: npt.ArrayLike | None = None
) -> float:
    """Microsoft Recommenders ``map()``: ``MAP = mean_u (1/|R_u|) sum_{p<=k: hit(u,p)} hits(u,≤p) / p``.

    Average precision is taken over the top-k list but divided by the number of relevant items
    ``|R_u|`` (not ``min(|R_u|, k)``), so a user with many test ratings caps below 1.
    """
    return _mean(per_user_accuracy(recs, truth, k, users)[AVERAGE_PRECISION])


@dataclass(frozen=True)
class AccuracySummary:
    """The four accuracy metrics computed from one per-user pass."""

    k: int
    n_users: int
    precision: float
    recall: float
    ndcg: float
    map: float

    def as_dict(self) -> dict[str, float]:
        """Keys as in the ``deepcuts evaluate`` JSON: ``precision@k``, ``recall@k``, ``ndcg@k``, ``map``."""
        return {
            f"precision@{self.k}": self.precision,
            f"recall@{self.k}": self.recall,
            f"ndcg@{self.k}": self.ndcg,
            "map": self.map,
        }


def accuracy_summary(
    recs: pd.DataFrame, truth: pd.DataFrame, k: int, users: npt.ArrayLike | None = None
) -> AccuracySummary:
    """All four accuracy metrics at once (one pass over the lists)."""
    per_user = per_user_accuracy(recs, truth, k, users)
    return AccuracySummary(
        k=k,
        n_users=len(per_user),
        precision=_mean(per_user[PRECISION]),
        recall=_mean(per_user[RECALL]),
        ndcg=_mean(per_user[NDCG]),
        map=_mean(per_user[AVERAGE_PRECISION]),
    )
