"""Deep-cut score math: per-candidate scores and per-list metrics, vectorised over users.

Notation: ``H_u`` is user ``u``'s history (rated items), ``g_i`` the multi-hot genre vector of item
``i`` and ``p(g|i) = g_i / |g_i|_1`` its genre distribution; ``x^ = x / |x|_2`` is a unit vector (the
zero vector stays zero, so its cosine with anything is 0).

Per candidate (user ``u``, item ``i``):

- novelty ``-log2 max(share_i, 1/N)``: self-information of the item's share of interactions
  (Zhou et al. 2010); an item nobody rated counts as rated once (``N`` = number of interactions);
- relevance: the arm's score min-max normalised over the user's candidates (1 when all tie);
- genre unexpectedness ``1 - g^_i . mean_{j in H_u} g^_j``: the mean cosine distance between the item's
  genres and those of the history items (Kaminskas & Bridge 2016); 1 for a user without history;
- embedding unexpectedness ``(1 - e^_i . mean_{j in H_u} e^_j) / 2`` on item factors ``e`` (cosine
  distance halved into [0, 1]);
- unexpectedness ``(1 - w) * genre + w * embedding`` (``w = rerank.embedding_weight``; genre only when no
  embeddings are available) and serendipity ``relevance * unexpectedness`` (Ge et al. 2010);
- niche flag: the item has at least one genre of ``rerank.niche_genres`` (case-insensitive).

Per list (``n`` items):

- intra-list diversity ``ILD = 1/(n(n-1)) sum_{i != j} (1 - g^_i . g^_j)`` (Ziegler et al. 2005),
  computed as ``1 - (|sum_i g^_i|^2 - sum_i |g^_i|^2) / (n(n-1))``; undefined (NaN) for ``n < 2``;
- distinct genres, long-tail share, mean quality;
- calibration ``KL(p_u || q~)`` with ``p_u(g) = mean_{j in H_u} p(g|j)``, ``q(g) = mean_{i in list}
  p(g|i)`` and ``q~ = (1 - a) q + a p_u`` (Steck 2018, ``a = rerank.calibration_alpha``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from deepcuts.metrics import GenreMatrix

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# ----------------------------------------------------------------------------------- catalog
def genre_matrix(items: pd.DataFrame, item_ids: npt.ArrayLike) -> tuple[FloatArray, tuple[str, ...]]:
    """Dense multi-hot ``(len(item_ids), G)`` genre matrix in the order of ``item_ids``, and genre names.

    Built with :class:`deepcuts.metrics.GenreMatrix` (the evaluation's genre matrix), so scores and
    offline metrics see the same genres; an item missing from ``items`` gets a zero row.
    """
    genres = GenreMatrix.from_items(items)
    dense = genres.rows_for(np.asarray(item_ids, dtype=np.int64)).toarray().astype(np.float32)
    return dense, genres.genres


def unit_rows(matrix: npt.ArrayLike) -> FloatArray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float32)
    norm = np.linalg.norm(m, axis=-1, keepdims=True)
    return np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)


def genre_distribution(genres: npt.ArrayLike) -> FloatArray:
    """``p(g|i) = g_i / |g_i|_1`` per row; zero rows stay zero."""
    g = np.asarray(genres, dtype=np.float32)
    total = g.sum(axis=-1, keepdims=True)
    return np.divide(g, total, out=np.zeros_like(g), where=total > 0)


def niche_flags(genres: npt.ArrayLike, genre_names: Sequence[str], niche_genres: Iterable[str]) -> BoolArray:
    """True for items with at least one niche genre (names compared case-insensitively)."""
    wanted = {name.casefold() for name in niche_genres}
    cols = [j for j, name in enumerate(genre_names) if name.casefold() in wanted]
    g = np.asarray(genres)
    if not cols:
        return np.zeros(g.shape[0], dtype=bool)
    return g[:, cols].max(axis=1) > 0


def novelty(popularity_share: npt.ArrayLike, n_interactions: int) -> FloatArray:
    """``-log2 max(share, 1/N)``: self-information of an item's share of the ``N`` interactions."""
    share = np.asarray(popularity_share, dtype=np.float64)
    floor = 1.0 / max(int(n_interactions), 1)
    return (-np.log2(np.maximum(share, floor))).astype(np.float32)


# ----------------------------------------------------------------------------------- users
def history_means(history: sp.csr_matrix, item_vectors: npt.ArrayLike) -> FloatArray:
    """``mean_{j in H_u} v_j`` per user row of a binary ``(users x items)`` history matrix.

    Users without history get a zero row.
    """
    h = sp.csr_matrix(history, dtype=np.float32)
    h.data = np.ones_like(h.data)
    counts = np.asarray(h.sum(axis=1), dtype=np.float32).ravel()
    sums = np.asarray(h @ np.asarray(item_vectors, dtype=np.float32), dtype=np.float32)
    return np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)


def genre_profiles(history: sp.csr_matrix, genres: npt.ArrayLike) -> FloatArray:
    """Steck's genre profile ``p_u(g) = mean_{j in H_u} p(g|j)``, renormalised to sum to 1.

    Renormalisation only matters when some history items have no genre; a user whose history has no
    genres at all (or who has no history) gets a zero row.
    """
    prof = history_means(history, genre_distribution(genres))
    return genre_distribution(prof)


# ----------------------------------------------------------------------------------- candidates
def normalise_relevance(scores: npt.ArrayLike, valid: npt.ArrayLike) -> FloatArray:
    """Per-row min-max scaling of ``(U, K)`` scores over the valid entries: ``(s - min) / (max - min)``.

    Rows where every valid score ties get 1; invalid entries get 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(s)
    lo = np.where(ok, s, np.inf).min(axis=1, keepdims=True)
    hi = np.where(ok, s, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    flat = ~(span > 0)
    out = np.divide(s - lo, span, out=np.ones_like(s), where=~flat & ok)
    return np.where(ok, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)


def cosine_unexpectedness(user_mean_unit: npt.ArrayLike, item_unit: npt.ArrayLike) -> FloatArray:
    """Mean cosine distance to the history: ``1 - e^_i . mean_{j in H_u} e^_j`` for aligned rows.

    ``user_mean_unit`` (``(n, d)``, the mean of the user's unit history vectors) and ``item_unit``
    (``(n, d)`` unit vectors) are row-aligned (one row per candidate). Result in [0, 2].
    """
    dot = np.einsum("nd,nd->n", np.asarray(user_mean_unit, np.float32), np.asarray(item_unit, np.float32))
    return (1.0 - dot).astype(np.float32)


def cosine_unexpectedness_rows(user_mean_unit: npt.ArrayLike, item_unit: npt.ArrayLike) -> FloatArray:
    """:func:`cosine_unexpectedness` of each user's ``(d,)`` row against their ``K`` items, ``(U, K)``
    from ``(U, d)`` and ``(U, K, d)``: the user's row is broadcast instead of copied ``K`` times, and
    each dot product is the same float32 sum over ``d`` (tests/models/reranking/test_deepcut_scores.py)."""
    dot = np.einsum("ud,ukd->uk", np.asarray(user_mean_unit, np.float32), np.asarray(item_unit, np.float32))
    return (1.0 - dot).astype(np.float32)


def combined_unexpectedness(
    genre: npt.ArrayLike, embedding: npt.ArrayLike | None, embedding_weight: float
) -> FloatArray:
    """``(1 - w) * genre + w * embedding``; the genre distance alone when ``embedding`` is None."""
    g = np.asarray(genre, dtype=np.float32)
    if embedding is None:
        return g
    e = np.asarray(embedding, dtype=np.float32)
    return ((1.0 - embedding_weight) * g + embedding_weight * e).astype(np.float32)


# ----------------------------------------------------------------------------------- lists
def intra_list_diversity(genre_unit: npt.ArrayLike, mask: npt.ArrayLike) -> FloatArray:
    """ILD per list from ``(U, L, G)`` unit genre vectors and a ``(U, L)`` mask of real entries.

    ``ILD = 1 - (|sum_i v_i|^2 - sum_i |v_i|^2) / (n (n - 1))``; NaN for lists with fewer than 2 items
    (no pairs), so that the mean over lists equals :func:`deepcuts.metrics.intra_list_distance`.
    """
    v = np.asarray(genre_unit, dtype=np.float64) * np.asarray(mask, dtype=np.float64)[:, :, None]
    n = np.asarray(mask, dtype=np.float64).sum(axis=1)
    total = v.sum(axis=1)
    pair_sum = (total * total).sum(axis=1) - (v * v).sum(axis=(1, 2))
    pairs = n * (n - 1)
    ild = np.divide(pair_sum, pairs, out=np.zeros_like(n), where=pairs > 0)
    return np.where(pairs > 0, 1.0 - ild, np.nan).astype(np.float32)


def distinct_genres(genres: npt.ArrayLike, mask: npt.ArrayLike) -> IntArray:
    """Number of genres present in each list, from ``(U, L, G)`` multi-hot vectors and a mask."""
    g = np.asarray(genres) * np.asarray(mask, dtype=bool)[:, :, None]
    return (g.max(axis=1, initial=0) > 0).sum(axis=1).astype(np.int64)


def masked_mean(values: npt.ArrayLike, mask: npt.ArrayLike) -> FloatArray:
    """Mean of ``(U, L)`` values over the masked entries per row (NaN for an empty row)."""
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    n = m.sum(axis=1)
    s = np.where(m, v, 0.0).sum(axis=1)
    return np.divide(s, n, out=np.full(n.shape, np.nan), where=n > 0).astype(np.float32)


def calibration_kl(
    profile: npt.ArrayLike, list_genre_dist: npt.ArrayLike, mask: npt.ArrayLike, alpha: float
) -> FloatArray:
    """Steck's miscalibration ``KL(p || (1 - a) q + a p)`` per list.

    ``profile`` is ``(U, G)`` (``p_u``), ``list_genre_dist`` ``(U, L, G)`` holds ``p(g|i)`` of the list
    items and ``q = mean_i p(g|i)`` over the masked items. Terms with ``p(g) = 0`` are 0; a user with a
    zero profile gets 0. With ``a > 0`` the divergence is finite.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"calibration alpha must be in (0, 1] (got {alpha}); fix rerank.calibration_alpha")
    p = np.asarray(profile, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    d = np.asarray(list_genre_dist, dtype=np.float64) * m[:, :, None]
    n = m.sum(axis=1, keepdims=True)
    q = np.divide(d.sum(axis=1), n, out=np.zeros_like(p), where=n > 0)
    q_tilde = (1.0 - alpha) * q + alpha * p
    safe = p > 0
    terms = np.where(safe, p * (np.log(np.where(safe, p, 1.0)) - np.log(np.where(safe, q_tilde, 1.0))), 0.0)
    return terms.sum(axis=1).astype(np.float32)
