"""Beyond-accuracy metrics of top-k lists: coverage, concentration, novelty, diversity, deep cuts.

Inputs are long frames ``(user_id, item_id, rank)`` already cut to the top k (see
:func:`deepcuts.metrics.accuracy.top_k_lists`); item statistics come in as arrays or frames, so this
module never reads data or imports a model. Per-list metrics are averaged over lists (users) with equal
weight; pooled metrics (mean hit rating, serendipity) say so in their docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from deepcuts.contracts import C
from deepcuts.formulas import gini, long_tail_mask

IntArray = npt.NDArray[np.int64]


def _ids(values: npt.ArrayLike) -> IntArray:
    return np.unique(np.asarray(values, dtype=np.int64))


def _user_codes(lists: pd.DataFrame) -> tuple[IntArray, IntArray]:
    """Sorted distinct user ids and each row's index into them (``np.unique(..., return_inverse=True)``).

    Lists come sorted by user (:func:`deepcuts.metrics.accuracy.top_k_lists`): then the runs of equal
    ids give the same answer in one pass, without np.unique's sort of every row.
    """
    ids = lists[C.USER_ID].to_numpy(np.int64)
    if ids.size and not (ids[1:] < ids[:-1]).any():
        starts = np.r_[True, ids[1:] != ids[:-1]]
        return ids[starts], np.cumsum(starts, dtype=np.int64) - 1
    users, codes = np.unique(ids, return_inverse=True)
    return users, codes.astype(np.int64)


def _per_list_mean(lists: pd.DataFrame, values: npt.ArrayLike) -> float:
    """Mean over lists of the within-list mean of ``values`` (one value per row of ``lists``)."""
    if lists.empty:
        return 0.0
    _, codes = _user_codes(lists)
    v = np.asarray(values, dtype=np.float64)
    sums = np.bincount(codes, weights=v)
    counts = np.bincount(codes)
    return float(np.mean(sums / counts))


# ------------------------------------------------------------------------------------------- catalog
def catalog_coverage(lists: pd.DataFrame, catalog_item_ids: npt.ArrayLike) -> float:
    """``coverage = |(∪_u L_u) ∩ I| / |I|``: share of the catalog ``I`` shown to at least one user."""
    catalog = _ids(catalog_item_ids)
    if catalog.size == 0:
        raise ValueError("catalog_coverage needs a non-empty catalog (items table is empty)")
    shown = _ids(lists[C.ITEM_ID]) if not lists.empty else np.empty(0, np.int64)
    return float(np.isin(catalog, shown).sum() / catalog.size)


def gini_index(lists: pd.DataFrame, catalog_item_ids: npt.ArrayLike) -> float:
    """Gini coefficient of recommendation counts over the whole catalog.

    With ``x_(1) <= ... <= x_(n)`` the number of lists containing each of the ``n`` catalog items
    (items never recommended count as 0), ``G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i)``.
    0: every item recommended equally often; ``(n-1)/n``: one item gets everything. 0 when nothing is
    recommended (no concentration to measure).
    """
    catalog = _ids(catalog_item_ids)
    n = catalog.size
    if n == 0:
        raise ValueError("gini_index needs a non-empty catalog (items table is empty)")
    pos = np.searchsorted(catalog, lists[C.ITEM_ID].to_numpy(np.int64))
    pos_clipped = np.minimum(pos, n - 1)
    inside = catalog[pos_clipped] == lists[C.ITEM_ID].to_numpy(np.int64)
    return gini(np.bincount(pos_clipped[inside], minlength=n))


# ------------------------------------------------------------------------------------------ popularity
@dataclass(frozen=True)
class ItemPopularity:
    """Interaction counts per item id over a reference history (the training data)."""

    item_ids: IntArray  # sorted
    counts: npt.NDArray[np.float64]
    total: float

    @classmethod
    def from_interactions(
        cls, interactions: pd.DataFrame, catalog_item_ids: npt.ArrayLike | None = None
    ) -> ItemPopularity:
        """``n_i`` = number of distinct users who rated item ``i``; ``N = sum_i n_i``."""
        pairs = interactions[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
        rated, counts = np.unique(pairs[C.ITEM_ID].to_numpy(np.int64), return_counts=True)
        catalog = _ids(catalog_item_ids) if catalog_item_ids is not None else rated
        ids = np.union1d(catalog, rated)
        full = np.zeros(ids.size, np.float64)
        full[np.searchsorted(ids, rated)] = counts
        return cls(item_ids=ids, counts=full, total=float(full.sum()))

    def counts_of(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``n_i`` per given item id; 0 for ids never seen."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if self.item_ids.size == 0:
            return np.zeros(ids.size, np.float64)
        pos = np.minimum(np.searchsorted(self.item_ids, ids), self.item_ids.size - 1)
        return np.where(self.item_ids[pos] == ids, self.counts[pos], 0.0)

    def long_tail_ids(self, head_share: float) -> IntArray:
        """Items outside the short head: sort by ``n_i`` descending (ties: lower id first); the head is
        the shortest prefix holding ``head_share`` of ``N``; all other items (unrated ones too) are tail.

        (:func:`deepcuts.formulas.long_tail_mask`; ``item_ids`` are sorted, so ties go by id).
        """
        return self.item_ids[long_tail_mask(self.counts, head_share)]


def novelty(lists: pd.DataFrame, popularity: ItemPopularity) -> float:
    """Mean self-information of recommended items: ``mean_u mean_{i in L_u} -log2(p_i)``.

    ``p_i = max(n_i, 1) / N`` is item i's share of the training interactions (Zhou et al., 2010); an
    item nobody rated is treated as rated once, so its novelty is finite (the maximum, ``log2 N``).
    """
    if lists.empty:
        return 0.0
    if popularity.total <= 0:
        raise ValueError("novelty needs a non-empty interaction history")
    n = np.maximum(popularity.counts_of(lists[C.ITEM_ID]), 1.0)
    return _per_list_mean(lists, -np.log2(n / popularity.total))


def long_tail_share(lists: pd.DataFrame, long_tail_item_ids: npt.ArrayLike) -> float:
    """``mean_u |L_u ∩ T| / |L_u|`` with ``T`` the long-tail items (outside the 80 % short head)."""
    if lists.empty:
        return 0.0
    tail = _ids(long_tail_item_ids)
    return _per_list_mean(lists, np.isin(lists[C.ITEM_ID].to_numpy(np.int64), tail))


# ---------------------------------------------------------------------------------------------- genres
@dataclass(frozen=True)
class GenreMatrix:
    """Binary item x genre matrix; rows follow ``item_ids`` (sorted)."""

    item_ids: IntArray
    genres: tuple[str, ...]
    matrix: sp.csr_matrix

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> GenreMatrix:
        """From a catalog frame whose ``genres`` column holds a list of genre names per item."""
        if C.GENRES not in items.columns or C.ITEM_ID not in items.columns:
            raise ValueError(f"items frame needs columns {[C.ITEM_ID, C.GENRES]} (has {list(items.columns)})")
        frame = items[[C.ITEM_ID, C.GENRES]].drop_duplicates(C.ITEM_ID)
        ids = frame[C.ITEM_ID].to_numpy(np.int64)
        order = np.argsort(ids, kind="stable")
        exploded = frame.iloc[order].explode(C.GENRES)
        exploded = exploded[exploded[C.GENRES].notna() & (exploded[C.GENRES].astype(str) != "")]
        genres, gcodes = np.unique(exploded[C.GENRES].astype(str).to_numpy(), return_inverse=True)
        sorted_ids = ids[order]
        rows = np.searchsorted(sorted_ids, exploded[C.ITEM_ID].to_numpy(np.int64))
        matrix = sp.csr_matrix(
            (np.ones(rows.size, np.float64), (rows, gcodes)), shape=(sorted_ids.size, genres.size)
        )
        matrix.data[:] = 1.0  # duplicates of a genre on one item count once
        return cls(item_ids=sorted_ids, genres=tuple(str(g) for g in genres), matrix=matrix)

    def rows_for(self, item_ids: npt.ArrayLike) -> sp.csr_matrix:
        """Genre rows for the given items in order; an item missing from the catalog has no genres."""
        ids = np.asarray(item_ids, dtype=np.int64)
        n = self.item_ids.size
        if n == 0:
            return sp.csr_matrix((ids.size, len(self.genres)))
        pos = np.minimum(np.searchsorted(self.item_ids, ids), n - 1)
        known = self.item_ids[pos] == ids
        out = self.matrix[pos]
        return sp.diags(known.astype(np.float64)) @ out


def _list_indicator(codes: IntArray, n_lists: int) -> sp.csr_matrix:
    """Sparse lists x rows matrix with a 1 where row r belongs to list l."""
    return sp.csr_matrix(
        (np.ones(codes.size, np.float64), (codes, np.arange(codes.size))), shape=(n_lists, codes.size)
    )


def intra_list_distance(lists: pd.DataFrame, genres: GenreMatrix) -> float:
    """Mean pairwise genre distance within a list (Ziegler et al., 2005), cosine distance.

    ``ILD_u = 2 / (n(n-1)) sum_{i<j in L_u} (1 - cos(g_i, g_j))`` with ``g_i`` the binary genre vector
    (``cos = |G_i ∩ G_j| / sqrt(|G_i| |G_j|)``, 0 when an item has no genre). Computed without pairs:
    with unit vectors ``ĝ_i`` and ``s_u = sum_i ĝ_i``, ``sum_{i<j} cos = (|s_u|^2 - sum_i |ĝ_i|^2) / 2``.
    Lists with fewer than 2 items have no pairs and are left out of the mean.
    """
    if lists.empty:
        return 0.0
    return _ild_of_rows(*_user_codes(lists), genres.rows_for(lists[C.ITEM_ID]))


def _ild_of_rows(users: IntArray, codes: IntArray, rows: sp.csr_matrix) -> float:
    """:func:`intra_list_distance` from the lists' user codes and genre rows (one per list row)."""
    g = rows.tocsr()
    norms = np.sqrt(np.asarray(g.multiply(g).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ g
    summed = _list_indicator(codes, users.size) @ unit
    sq_norm_sum = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    self_sum = np.bincount(codes, weights=(norms > 0).astype(np.float64), minlength=users.size)
    n = np.bincount(codes, minlength=users.size).astype(np.float64)
    ok = n >= 2
    if not ok.any():
        return 0.0
    mean_cos = (sq_norm_sum[ok] - self_sum[ok]) / (n[ok] * (n[ok] - 1))
    return float(np.mean(1.0 - mean_cos))


def genres_per_list(lists: pd.DataFrame, genres: GenreMatrix) -> float:
    """``mean_u |∪_{i in L_u} G_i|``: distinct genres covered by a list, averaged over lists."""
    if lists.empty:
        return 0.0
    return _genres_of_rows(*_user_codes(lists), genres.rows_for(lists[C.ITEM_ID]))


def _genres_of_rows(users: IntArray, codes: IntArray, rows: sp.csr_matrix) -> float:
    """:func:`genres_per_list` from the lists' user codes and genre rows (one per list row)."""
    covered = _list_indicator(codes, users.size) @ rows
    covered = sp.csr_matrix(covered)
    covered.eliminate_zeros()
    return float(np.mean(np.diff(covered.indptr)))


def genre_metrics(lists: pd.DataFrame, genres: GenreMatrix) -> tuple[float, float]:
    """``(intra_list_distance, genres_per_list)`` of the same lists, looking their genres up once."""
    if lists.empty:
        return 0.0, 0.0
    users, codes = _user_codes(lists)
    rows = genres.rows_for(lists[C.ITEM_ID])
    return _ild_of_rows(users, codes, rows), _genres_of_rows(users, codes, rows)


# ------------------------------------------------------------------------------------------- hits
def _hit_rows(lists: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``lists`` whose (user, item) is in ``truth``, with the truth columns joined on."""
    columns = [c for c in (C.USER_ID, C.ITEM_ID, C.RATING) if c in truth.columns]
    t = truth[columns].drop_duplicates([C.USER_ID, C.ITEM_ID], keep="last")
    return lists.merge(t, on=[C.USER_ID, C.ITEM_ID], how="inner")


def mean_hit_rating(lists: pd.DataFrame, truth: pd.DataFrame) -> float | None:
    """Mean held-out rating of recommended items that are hits, pooled over all hits.

    ``mean_{(u,i): i in L_u ∩ R_u} r_ui``; ``None`` when there is no hit (undefined, not zero).
    """
    if C.RATING not in truth.columns:
        raise ValueError(f"mean_hit_rating needs a {C.RATING!r} column in the ground truth")
    hits = _hit_rows(lists, truth)
    return float(hits[C.RATING].mean()) if len(hits) else None


def serendipity(lists: pd.DataFrame, truth: pd.DataFrame, baseline_lists: pd.DataFrame) -> float | None:
    """Share of hits that are unexpected, pooled over all hits.

    Following Ge et al. (2010) (see also Kaminskas & Bridge, 2016), an item is *unexpected* for user u
    when a primitive model would not have recommended it: ``UNEXP_u = L_u \\ PM_u`` with ``PM_u`` the
    popularity baseline's top-k for u (seen items removed). Ge et al.'s usefulness is a hit (a held-out
    rating of any value). We report ``sum_u |UNEXP_u ∩ R_u| / sum_u |L_u ∩ R_u|``: of the hits, the
    share the popularity baseline would not have found. ``None`` when there is no hit.
    """
    hits = _hit_rows(lists[[C.USER_ID, C.ITEM_ID]], truth)
    if hits.empty:
        return None
    expected = baseline_lists[[C.USER_ID, C.ITEM_ID]].drop_duplicates().assign(_expected=True)
    marked = hits.merge(expected, on=[C.USER_ID, C.ITEM_ID], how="left")
    return float(1.0 - marked["_expected"].fillna(False).astype(bool).mean())


def popularity_baseline(
    train: pd.DataFrame, users: npt.ArrayLike, k: int, popularity: ItemPopularity | None = None
) -> pd.DataFrame:
    """The primitive model of :func:`serendipity`: most popular unseen items per user, top k.

    Items ranked by ``n_i`` descending (ties: lower id). For each user the first k items of that order
    that the user has not rated in ``train``. Vectorised over users: a dense users x T block of the top-T
    items, T doubled only for the users who had fewer than k unseen items in it.
    """
    pop = popularity or ItemPopularity.from_interactions(train)
    order = np.lexsort((pop.item_ids, -pop.counts))
    ranked_items = pop.item_ids[order]
    user_ids = _ids(users)
    seen = train[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    seen = seen[seen[C.USER_ID].isin(user_ids)]
    rank_of_item = np.empty(ranked_items.size, np.int64)
    rank_of_item[order] = np.arange(ranked_items.size)
    srows = np.searchsorted(user_ids, seen[C.USER_ID].to_numpy(np.int64))
    spos = np.searchsorted(pop.item_ids, seen[C.ITEM_ID].to_numpy(np.int64))
    known = (spos < pop.item_ids.size) & (
        pop.item_ids[np.minimum(spos, max(pop.item_ids.size - 1, 0))] == seen[C.ITEM_ID].to_numpy(np.int64)
    )
    seen_matrix = sp.csr_matrix(
        (np.ones(int(known.sum()), bool), (srows[known], rank_of_item[spos[known]])),
        shape=(user_ids.size, ranked_items.size),
    )
    frames: list[pd.DataFrame] = []
    todo = np.arange(user_ids.size)
    width = min(2 * k, ranked_items.size)
    while todo.size and width > 0:
        block = ~seen_matrix[todo][:, :width].toarray()
        position = np.cumsum(block, axis=1)
        take = block & (position <= k)
        r, c = np.nonzero(take)
        frames.append(
            pd.DataFrame(
                {
                    C.USER_ID: user_ids[todo[r]],
                    C.ITEM_ID: ranked_items[c],
                    C.RANK: position[r, c].astype(np.int32),
                }
            )
        )
        done = (position[:, -1] >= k) | (width >= ranked_items.size)
        todo = todo[~done]
        width = min(width * 2, ranked_items.size)
    if not frames:
        return pd.DataFrame({C.USER_ID: [], C.ITEM_ID: [], C.RANK: []}).astype(
            {C.USER_ID: np.int64, C.ITEM_ID: np.int64, C.RANK: np.int32}
        )
    out = pd.concat(frames, ignore_index=True)
    # a user redone with a wider block appears twice: keep the widest (complete) pass only
    out = out.drop_duplicates([C.USER_ID, C.ITEM_ID], keep="last")
    return out.sort_values([C.USER_ID, C.RANK], kind="stable").reset_index(drop=True)
