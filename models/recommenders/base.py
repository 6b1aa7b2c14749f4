"""The one base class every recommender implements, and the shared interaction matrix.

A subclass implements ``_fit(data, items)`` and ``_score(user_rows)``; the base class owns everything
else: id mapping, batching, excluding seen items, top-N selection with ``argpartition``, cold users,
and the artefact bytes (``to_bytes``/``from_bytes``; the lake stores them). Scoring is a dense
``(batch x items)`` float32 block per batch of users, so memory is bounded by ``batch_users x n_items``
whatever the number of users.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from deepcuts.contracts import C

if TYPE_CHECKING:
    from deepcuts.settings import Settings

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: Format version of saved artefacts; bump when the pickled state changes shape.
ARTEFACT_VERSION = 1


@dataclass(frozen=True)
class Preference:
    """How much a rating says the user *liked* the item, as the weight of its entry in the history.

    ``w(r) = 1`` for ``r >= liked_threshold`` and ``other_weight`` below it; ``other_weight = 1`` is the
    plain binary history. A history that leans on liked items scores items similar to what the user
    liked above items similar to what they merely watched, which raises the ratings users give to
    what they are recommended (docs/deep-cuts.md, "Quality as users experience it").
    """

    liked_threshold: float
    other_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.other_weight <= 1.0:
            raise ValueError(
                f"other_weight must be in [0, 1] (got {self.other_weight}); fix arms.preference_other_weight"
            )

    @property
    def is_binary(self) -> bool:
        return self.other_weight >= 1.0

    def weigh(self, ratings: sp.csr_matrix) -> sp.csr_matrix:
        """``ratings`` with every stored entry replaced by its weight ``w(r)`` (structure kept)."""
        out = ratings.copy()
        out.data = np.where(out.data >= self.liked_threshold, 1.0, self.other_weight).astype(np.float32)
        return out


@dataclass(frozen=True)
class InteractionMatrix:
    """A users x items sparse rating matrix with the id maps that index it.

    Rows follow ``user_ids`` (sorted), columns follow ``item_ids`` (sorted catalog order). When the same
    (user, item) pair occurs several times, the latest rating wins.
    """

    ratings: sp.csr_matrix
    user_ids: IntArray
    item_ids: IntArray

    @classmethod
    def from_frames(cls, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        ts = interactions[C.TS] if C.TS in interactions.columns else None
        if ts is None or pd.api.types.is_datetime64_any_dtype(ts.dtype) or ts.dtype.kind in "iuf":
            return cls._from_arrays(interactions, items)
        # times as text or objects: pandas orders them
        frame = interactions.sort_values(C.TS, kind="stable")
        frame = frame.drop_duplicates([C.USER_ID, C.ITEM_ID], keep="last")
        return cls._from_arrays(frame.drop(columns=[C.TS]), items)

    @classmethod
    def _from_arrays(cls, interactions: pd.DataFrame, items: pd.DataFrame | None) -> Self:
        """The matrix straight from the id, rating and time arrays (no sorted or deduplicated copy of
        the frame): memory is a few int64 arrays of the history's length, not several frames.

        Latest rating wins: rows sorted by their pair's key ``row * n_items + col`` and then stably by
        time (NaT last, as pandas sorts them), and of every pair the last one; the keys' order is the
        CSR order.
        """
        users = interactions[C.USER_ID].to_numpy(np.int64)
        items_rated = interactions[C.ITEM_ID].to_numpy(np.int64)
        catalog = items[C.ITEM_ID].to_numpy(np.int64) if items is not None else np.empty(0, np.int64)
        item_ids, item_codes = unique_codes(np.concatenate([items_rated, catalog]))
        user_ids, keys = unique_codes(users)
        keys *= max(item_ids.size, 1)
        keys += item_codes[: items_rated.size]
        del users, items_rated, item_codes
        # Usually every (user, item) pair occurs once: then any sort of the keys gives the one order
        # there is, and a plain quicksort is about half the cost of the stable sorts below.
        order = np.argsort(keys)
        keys = keys[order]
        if keys.size > 1 and not (keys[1:] != keys[:-1]).all():
            # repeated pairs: the latest rating wins, so order by pair and then time (stable)
            unsorted = np.empty_like(keys)
            unsorted[order] = keys  # back to the input order
            keys = unsorted
            del unsorted
            if C.TS in interactions.columns:
                ts = interactions[C.TS]
                when = ts.to_numpy() if ts.dtype.kind in "iuf" else _time_order_keys(ts)  # NaN last
                # by pair, then time (lexsort is stable: equal times keep the input order)
                order = np.lexsort((when, keys))
                del when
            else:
                order = np.argsort(keys, kind="stable")
            keys = keys[order]
        boundary = np.empty(keys.size, dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=boundary[:-1])
        boundary[-1:] = True
        last = np.flatnonzero(boundary)  # the latest row of each pair
        del boundary
        unique_keys, picked = keys[last], order[last]
        del keys, order, last
        n_items = max(item_ids.size, 1)
        rows = unique_keys // n_items
        indptr = np.zeros(user_ids.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=user_ids.size), out=indptr[1:])
        # scipy's own choice for a matrix built from coordinates: int32 while everything fits
        index_dtype = np.int32 if max(unique_keys.size, n_items, user_ids.size) < 2**31 - 1 else np.int64
        ratings = sp.csr_matrix(
            (
                interactions[C.RATING].to_numpy(np.float32)[picked],
                (unique_keys % n_items).astype(index_dtype),
                indptr.astype(index_dtype),
            ),
            shape=(user_ids.size, item_ids.size),
        )
        ratings.sum_duplicates()  # none, and the indices are sorted: this records the canonical format
        return cls(ratings=ratings, user_ids=user_ids, item_ids=item_ids)

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    @property
    def binary(self) -> sp.csr_matrix:
        """1 where the user interacted with the item."""
        out = self.ratings.copy()
        out.data = np.ones_like(out.data)
        return out

    def binary_rows(self, rows: npt.ArrayLike) -> sp.csr_matrix:
        """``binary`` restricted to some rows, without copying the whole matrix (for scoring batches).

        Every stored entry counts as an interaction, an explicit 0 rating included.
        """
        out = self.ratings[np.asarray(rows, dtype=np.int64)]
        out.data = np.ones_like(out.data)
        return out

    def weighted(self, preference: Preference | None) -> sp.csr_matrix:
        """The whole matrix weighted by ``preference`` (:class:`Preference`); binary when it is None."""
        if preference is None or preference.is_binary:
            return self.binary
        return preference.weigh(self.ratings)

    def weighted_rows(self, rows: npt.ArrayLike, preference: Preference | None) -> sp.csr_matrix:
        """History rows weighted by ``preference`` (:class:`Preference`); binary when it is None."""
        if preference is None or preference.is_binary:
            return self.binary_rows(rows)
        return preference.weigh(self.ratings[np.asarray(rows, dtype=np.int64)])

    def user_rows(self, user_ids: npt.ArrayLike) -> IntArray:
        """Row index per user id, -1 for users unknown to the matrix."""
        return positions_in(self.user_ids, user_ids)

    def item_columns(self, item_ids: npt.ArrayLike) -> IntArray:
        """Column index per item id, -1 for items not in the catalog."""
        return positions_in(self.item_ids, item_ids)


#: ``unique_codes`` uses a lookup table when the ids span at most this many values per id given (or
#: ``_LOOKUP_MIN_SPAN``): one pass over a small table instead of a hash set and a binary search per id.
_LOOKUP_SPAN_PER_ID = 4
_LOOKUP_MIN_SPAN = 1 << 20


def unique_codes(ids: IntArray) -> tuple[IntArray, IntArray]:
    """``(np.unique(ids), np.searchsorted(np.unique(ids), ids))``, the codes as a new int64 array.

    Ids of a compact range (MovieLens: 1..n) are coded through a table indexed by ``id - min``: at 20M
    ids about 15x cheaper than ``np.unique`` and ``np.searchsorted`` (which is the fallback for sparse
    ranges, where the table would be too big).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        span = hi - lo + 1
        if span <= max(_LOOKUP_SPAN_PER_ID * ids.size, _LOOKUP_MIN_SPAN):
            offset = ids - lo
            present = np.zeros(span, dtype=bool)
            present[offset] = True
            code_of = np.cumsum(present, dtype=np.int64)
            code_of -= 1
            return np.flatnonzero(present) + lo, code_of[offset]
    unique = np.unique(ids)
    return unique, np.searchsorted(unique, ids).astype(np.int64, copy=False)


def positions_in(sorted_ids: IntArray, ids: npt.ArrayLike) -> IntArray:
    """Position of each of ``ids`` in the sorted, distinct ``sorted_ids``; -1 where it is absent.

    A compact id range is looked up in a table indexed by ``id - min`` (a binary search per id costs
    several times more on the 1.7M candidates of a score shard); others by ``np.searchsorted``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = sorted_ids.size
    if n == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
    span = hi - lo + 1
    if span <= max(_LOOKUP_SPAN_PER_ID * ids.size, _LOOKUP_MIN_SPAN):
        table = np.full(span, -1, dtype=np.int64)
        table[sorted_ids - lo] = np.arange(n)
        offset = ids - lo
        inside = (offset >= 0) & (offset < span)
        return np.where(inside, table[np.where(inside, offset, 0)], -1)
    pos = np.searchsorted(sorted_ids, ids)
    pos_clipped = np.minimum(pos, n - 1)
    known = (pos < n) & (sorted_ids[pos_clipped] == ids)
    return np.where(known, pos_clipped, -1).astype(np.int64)


def _time_order_keys(ts: pd.Series) -> npt.NDArray[np.int64]:
    """Sortable int64 of datetimes (tz-aware or naive): NaT becomes the largest value (sorted last)."""
    out = ts.array.asi8  # the int64 ticks themselves (UTC for tz-aware), no copy
    missing = ts.isna().to_numpy()
    if missing.any():  # NaT is the smallest int64: make it the largest, on a copy
        out = out.copy()
        out[missing] = np.iinfo(np.int64).max
    return out


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Cap the BLAS/LAPACK thread pools (OpenBLAS, MKL, ...) of this process at ``threads`` inside the
    block (``settings.arms.blas_threads``); ``0`` leaves the library default."""
    if threads <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def same_state(a: Any, b: Any) -> bool:
    """True when two values (model states: arrays, sparse matrices, dataclasses, settings, plain
    values, dicts and lists of them) hold the same content; arrays compare dtype, shape and values."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if sp.issparse(a):
        a, b = sp.csr_matrix(a), sp.csr_matrix(b)  # no copy for csr; unsorted indices compare unequal
        fields = ("data", "indices", "indptr")
        return a.shape == b.shape and all(same_state(getattr(a, f), getattr(b, f)) for f in fields)
    if isinstance(a, Recommender):
        return same_state(a.__dict__, b.__dict__)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__"):
        return all(same_state(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return bool(a == b)


class _SharedScores:
    """Score blocks kept for reuse by models with the same content (see :func:`shared_scores`)."""

    def __init__(self, names: frozenset[str], max_bytes: int) -> None:
        self.names = names
        self.max_bytes = max_bytes
        self.used = 0
        #: (model, its blocks by user rows); equal models share one blocks dict. The models are kept
        #: alive for the block, so an object identity is never reused for another model.
        self.entries: list[tuple[Recommender, dict[bytes, FloatArray]]] = []

    def blocks_of(self, model: Recommender) -> dict[bytes, FloatArray]:
        """The blocks of models equal to ``model`` (compared by content: no hashing of big arrays)."""
        for known, blocks in self.entries:
            if known is model:
                return blocks
        for known, blocks in list(self.entries):
            if same_state(known, model):
                self.entries.append((model, blocks))  # compared once per model object
                return blocks
        blocks = {}
        self.entries.append((model, blocks))
        return blocks


_SHARED: _SharedScores | None = None


@contextmanager
def shared_scores(names: Sequence[str], max_mb: float) -> Iterator[None]:
    """Inside the block, the score blocks of models named in ``names`` are computed once per user
    batch and reused by any model with the same pickled state, up to ``max_mb`` of blocks.

    The candidates step scores the base arm of long_tail and serendipity (item_cf) three times per
    user batch otherwise: once as itself and once inside each deep-cut arm (docs/benchmarks.md). A
    reused block is the very array computed before (read-only), so outputs are unchanged; a model
    whose state differs gets its own blocks.
    """
    global _SHARED
    previous = _SHARED
    _SHARED = _SharedScores(frozenset(names), int(max_mb * 2**20))
    try:
        yield
    finally:
        _SHARED = previous


#: Every ``TOP_N_STRIDE``-th column is the sample that bounds the n-th largest value from below
#: (:func:`_top_n_sampled`); rows of at least ``TOP_N_SAMPLED_WIDTH * n`` columns are selected that way.
TOP_N_STRIDE = 8
#: Narrower rows take one partition of the whole row (:func:`_top_n_threshold`), which is cheaper there:
#: on 1024-row blocks with n = 100 the sampled path costs 2.4x its CPU at 3,706 columns (ML-1M), 1.5x
#: at 12,000 and the same at 26,744 (ML-20M, which keeps the sampled path); with n = 10 the sampled
#: path is cheaper from about 2,500 columns on (docs/benchmarks.md, ML-1M). Same result either way.
TOP_N_SAMPLED_WIDTH = 32 * TOP_N_STRIDE


def has_nan(scores: FloatArray) -> bool:
    """True when ``scores`` holds a NaN: ``max`` propagates NaN, so one reduction without the
    block-sized boolean array of ``np.isnan(scores).any()``."""
    return scores.size > 0 and bool(np.isnan(scores.max()))


def top_n(scores: FloatArray, n: int, *, nan_free: bool | None = None) -> tuple[IntArray, FloatArray]:
    """Indices and values of the ``n`` largest scores per row, best first.

    Ties are broken by lower index everywhere, also among items tied exactly at the n-th value (the
    list is the first ``n`` of a stable descending sort of the row). ``-inf`` marks excluded entries;
    they are returned only when a row has fewer than ``n`` valid entries and are then dropped by the
    caller. Rows holding NaN go through :func:`_top_n_argpartition` (NaN is no score; kept working).
    Wide rows (the catalog at MovieLens-20M size) first keep only the entries at or above a bound
    from a sample of the columns (:func:`_top_n_sampled`), with the same result. ``nan_free`` is what
    the caller already knows of NaN in ``scores`` (None: look).
    """
    wide = n > 0 and scores.shape[1] >= TOP_N_SAMPLED_WIDTH * n
    if wide and (nan_free if nan_free is not None else not has_nan(scores)):
        return _top_n_sampled(scores, n)
    return _top_n_threshold(scores, n)


def _top_n_sampled(scores: FloatArray, n: int, stride: int = TOP_N_STRIDE) -> tuple[IntArray, FloatArray]:
    """:func:`top_n` of rows without NaN through a lower bound of the n-th largest value.

    ``t`` = the n-th largest of every ``stride``-th column (needs at least ``n`` of them): at least
    ``n`` entries of the row are ``>= t``, so its n-th largest value is too. Hence the top ``n`` are
    the entries ``> t`` when there are ``n`` of them or more, and otherwise all of those plus the
    lowest columns equal to ``t`` (there are enough: ties go to the lower index). Those survivors
    (about ``stride * n`` per row; sparse item-item scores tie at 0, and then only their nonzero
    entries survive) are packed left in column order and go through :func:`_top_n_threshold`, where a
    tie between positions is then a tie between columns: the same result as the whole row, at the
    cost of one partition of the sample, a comparison and a flat scan of the row (a 2-D ``nonzero``
    costs four times a flat one). Rows with a quarter of their entries above ``t`` are selected whole.
    """
    n_rows, n_cols = scores.shape
    sample = np.negative(scores[:, ::stride])
    if sample.shape[1] < n:
        return _top_n_threshold(scores, n)
    sample.partition(n - 1, axis=1)
    bound = np.negative(sample[:, n - 1 : n])
    del sample
    flat = np.flatnonzero(scores > bound)
    counts = np.bincount(flat // n_cols, minlength=n_rows)
    whole = counts > n_cols // 4
    if whole.any():  # their survivors are dropped: these rows are selected over the whole width
        flat = flat[~whole[flat // n_cols]]
        counts[whole] = 0
    short = np.flatnonzero((counts < n) & ~whole)
    if short.size:  # the lowest columns tied at the bound complete these rows
        flat = np.sort(np.concatenate([flat, _first_ties(scores, short, bound[short, 0], n - counts[short])]))
        counts[short] = n
    rows = flat // n_cols
    cols = flat - rows * n_cols
    width = max(int(counts.max()), n)
    slot = _run_positions(counts)
    packed = np.full((n_rows, width), -np.inf, dtype=scores.dtype)
    packed_cols = np.zeros((n_rows, width), dtype=np.int64)
    packed[rows, slot] = scores[rows, cols]
    packed_cols[rows, slot] = cols
    pos, val = _top_n_threshold(packed, n)
    idx = np.take_along_axis(packed_cols, pos, axis=1)
    if whole.any():
        idx[whole], val[whole] = _top_n_threshold(scores[whole], n)
    return idx, val


def _run_positions(counts: IntArray) -> IntArray:
    """Each entry's position within its row, for entries grouped by row with ``counts`` per row (a
    repeat of the row starts: a binary search per entry costs ~20 ms on a 1024-row block's 800k
    survivors)."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def entry_rows(matrix: sp.csr_matrix) -> IntArray:
    """The row of each stored entry of a CSR ``matrix``, in storage order (with ``matrix.indices``:
    the (row, column) pairs, e.g. to mark a block's seen entries)."""
    return np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))


def _first_ties(scores: FloatArray, rows: IntArray, value: FloatArray, need: IntArray) -> IntArray:
    """Flat indices of the ``need[i]`` lowest columns of row ``rows[i]`` equal to ``value[i]`` (each row
    has that many). Searched over a widening prefix of the columns: in sparse scores the ties (0) are
    nearly everywhere, so the first few hundred columns hold them."""
    n_cols = scores.shape[1]
    found: list[IntArray] = []
    width = min(n_cols, 4 * int(need.max()))
    while rows.size:
        eq = np.flatnonzero(scores[rows, :width] == value[:, None])
        row_of = eq // width
        per_row = np.bincount(row_of, minlength=rows.size)
        rank = _run_positions(per_row)
        done = per_row >= need
        pick = (rank < need[row_of]) & done[row_of]
        found.append(rows[row_of[pick]] * n_cols + eq[pick] % width)
        rows, value, need = rows[~done], value[~done], need[~done]
        if width == n_cols and rows.size:  # pragma: no cover - the bound guarantees enough ties
            raise AssertionError("fewer entries at the bound than the sample showed")
        width = min(n_cols, 2 * width)
    return np.concatenate(found) if found else np.empty(0, np.int64)


def _top_n_threshold(scores: FloatArray, n: int) -> tuple[IntArray, FloatArray]:
    """:func:`top_n` over the whole width at once: the n-th largest value per row from a partition of
    the values, then every entry above it and the lowest columns tied at it."""
    n_rows, n_cols = scores.shape
    n = min(n, n_cols)
    if n == 0:
        return np.empty((n_rows, 0), np.int64), np.empty((n_rows, 0), np.float32)
    # The n-th largest value per row, from a partition of the values alone: no index array to carry
    # and no indirect compares, ~3x cheaper than argpartition at 27k items (docs/benchmarks.md).
    # Negated, so that kth is near the start of the row (introselect is slow with kth near the end
    # of a row full of ties, and sparse item-item scores are mostly 0).
    neg = np.negative(scores)
    neg.partition(n - 1, axis=1)
    threshold = np.negative(neg[:, n - 1 : n])
    del neg
    keep = scores > threshold
    tied = scores == threshold
    need = n - keep.sum(axis=1)
    # rows with more items tied at the threshold than free places keep the lowest columns among them
    ambiguous = np.flatnonzero(tied.sum(axis=1) > need)
    if ambiguous.size:
        sub = tied[ambiguous]
        sub &= np.cumsum(sub, axis=1) <= need[ambiguous, None]
        tied[ambiguous] = sub
    keep |= tied
    flat = np.flatnonzero(keep)  # row-major: per row exactly n columns, ascending (a flat scan is fast)
    if flat.size != n_rows * n:  # NaN compares false everywhere: fall back to the general path
        return _top_n_argpartition(scores, n)
    idx = (flat - np.repeat(np.arange(n_rows) * n_cols, n)).reshape(n_rows, n)
    vals = np.take_along_axis(scores, idx, axis=1)
    # columns ascend within a row, so a stable sort on descending value breaks ties by lower index
    order = np.argsort(np.negative(vals), axis=1, kind="stable")
    return (
        np.take_along_axis(idx, order, axis=1).astype(np.int64, copy=False),
        np.take_along_axis(vals, order, axis=1).astype(np.float32, copy=False),
    )


def _top_n_argpartition(scores: FloatArray, n: int) -> tuple[IntArray, FloatArray]:
    """:func:`top_n` by ``argpartition`` + ``lexsort`` (the implementation before issue 18): same values,
    but which of several items tied at the n-th value is kept is up to ``argpartition``."""
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: primary key descending score, secondary ascending index for deterministic ties
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(part_scores, order, axis=1).astype(np.float32)


def top_n_with_quotas(
    scores: FloatArray,
    n: int,
    quotas: Sequence[tuple[npt.NDArray[np.bool_], int]],
    *,
    nan_free: bool | None = None,
) -> tuple[IntArray, FloatArray]:
    """The best ``n`` entries per row holding at least ``count`` columns of each ``(mask, count)``.

    Per row, quota by quota: the ``min(count, finite entries left)`` best columns of ``mask`` not taken
    yet; then the best of all remaining columns fill the list to ``n``. The result is ordered by score
    descending (ties: lower index), ``-inf`` padded like :func:`top_n` (the columns of padding entries
    are arbitrary). Quotas adding up to more than ``n`` are the caller's error. ``nan_free`` is what
    the caller already knows of NaN in ``scores`` (None: look).

    Computed from the row's plain top ``n`` (one selection over the whole width): a quota group's
    best columns not taken yet are its first members in that list whenever it holds enough of them,
    so only the rows where it does not are searched over the group's columns; and the fill is always
    the list's first entries not taken (a column outside the list ranks below all ``n`` of them, of
    which at most the taken ones are gone).
    """
    n_rows = scores.shape[0]
    n = min(n, scores.shape[1])
    nan_free = nan_free if nan_free is not None else not has_nan(scores)
    top_idx, top_val = top_n(scores, n, nan_free=nan_free)
    open_ = np.isfinite(top_val)  # list entries neither taken by a quota nor padding
    taken = np.zeros(top_idx.shape, dtype=bool)
    # quota picks outside the list, per row: (row, column, value)
    out_rows: list[IntArray] = []
    out_cols: list[IntArray] = []
    out_vals: list[FloatArray] = []
    for mask, count in quotas:
        c = min(int(count), n)
        if c <= 0:
            continue
        member = open_ & mask[top_idx]
        found = np.cumsum(member, axis=1)
        enough = found[:, -1] >= c
        here = member & (found <= c) & enough[:, None]
        taken |= here
        open_ &= ~here
        short = np.flatnonzero(~enough)
        if short.size:
            picked = _group_top(scores, short, mask, c, top_idx, taken, out_rows, out_cols, nan_free)
            rows, cols, vals = picked
            in_list = (top_idx[rows] == cols[:, None]) & open_[rows]
            hit = in_list.any(axis=1)
            taken[rows[hit], in_list[hit].argmax(axis=1)] = True
            open_[rows[hit], in_list[hit].argmax(axis=1)] = False
            out_rows.append(rows[~hit])
            out_cols.append(cols[~hit])
            out_vals.append(vals[~hit])
    rows_out = np.concatenate(out_rows) if out_rows else np.empty(0, np.int64)
    n_taken = taken.sum(axis=1) + np.bincount(rows_out, minlength=n_rows)
    # the fill: the first (n - taken) open entries of the list
    fill = open_ & (np.cumsum(open_, axis=1) <= (n - n_taken)[:, None])
    keep = taken | fill
    width = n + (int(np.bincount(rows_out).max()) if rows_out.size else 0)
    all_idx = np.zeros((n_rows, width), dtype=np.int64)
    all_val = np.full((n_rows, width), -np.inf, dtype=np.float32)
    all_idx[:, :n] = top_idx
    all_val[:, :n] = np.where(keep, top_val, -np.inf)
    if rows_out.size:
        order = np.argsort(rows_out, kind="stable")
        r = rows_out[order]
        slot = n + _run_positions(np.bincount(r, minlength=n_rows))
        all_idx[r, slot] = np.concatenate(out_cols)[order]
        all_val[r, slot] = np.concatenate(out_vals)[order]
    order = np.lexsort((all_idx, -all_val), axis=1)[:, :n]
    return np.take_along_axis(all_idx, order, axis=1), np.take_along_axis(all_val, order, axis=1)


def _group_top(
    scores: FloatArray,
    rows: IntArray,
    mask: npt.NDArray[np.bool_],
    count: int,
    top_idx: IntArray,
    taken: npt.NDArray[np.bool_],
    out_rows: list[IntArray],
    out_cols: list[IntArray],
    nan_free: bool,
) -> tuple[IntArray, IntArray, FloatArray]:
    """The best ``count`` finite columns of ``mask`` per row of ``rows``, leaving out the columns earlier
    quotas took (in the list: ``taken``; outside it: ``out_rows``/``out_cols``). Returns flat
    (row, column, value) triples of the picks."""
    cols = np.flatnonzero(mask)
    position = np.full(scores.shape[1], -1, dtype=np.int64)
    position[cols] = np.arange(cols.size)
    local = np.full(scores.shape[0], -1, dtype=np.int64)
    local[rows] = np.arange(rows.size)
    r, j = np.nonzero(taken[rows])
    gone_rows, gone_cols = [r], [top_idx[rows][r, j]]
    for earlier_rows, earlier_cols in zip(out_rows, out_cols, strict=True):
        mine = local[earlier_rows] >= 0
        gone_rows.append(local[earlier_rows[mine]])
        gone_cols.append(earlier_cols[mine])
    gr, gc = np.concatenate(gone_rows), np.concatenate(gone_cols)
    in_group = position[gc] >= 0
    gr, gc = gr[in_group], gc[in_group]
    # np.take keeps rows contiguous (scores[rows][:, cols] is column-major: every row-wise pass on it
    # then strides). Most rows lack the group in their top n for relevance arms: then the group's
    # columns of the whole block are cheaper than a copy of the rows first (a fifth of the width
    # at ML-20M), and the few other rows are dropped afterwards.
    if rows.size * 2 >= scores.shape[0]:
        sub = np.take(scores, cols, axis=1)
        if rows.size < scores.shape[0]:
            sub = sub[rows]
    else:
        sub = np.take(scores[rows], cols, axis=1)
    sub[gr, position[gc]] = -np.inf
    sub_idx, val = top_n(sub, count, nan_free=nan_free)
    ok = np.isfinite(val)
    picked_rows = np.broadcast_to(rows[:, None], val.shape)[ok]
    return picked_rows, cols[sub_idx][ok], val[ok]


def top_n_uniform(
    row: FloatArray,
    seen: sp.csr_matrix,
    n: int,
    quotas: Sequence[tuple[npt.NDArray[np.bool_], int]] = (),
) -> tuple[IntArray, FloatArray]:
    """:func:`top_n_with_quotas` (:func:`top_n` without quotas) of the block whose every row is the
    finite ``row`` with ``-inf`` at the row's ``seen`` entries, without building that block.

    Every row ranks the columns in one order (``row`` descending, ties by lower column), so a row's
    top ``n`` lies within the prefix of that order holding ``n`` of its unseen columns, and a quota
    group's picks within the prefix of the group's order holding the quotas' counts up to it (the
    earlier quotas can take at most that many of the group's columns). Selecting over the sorted
    union of those prefixes, seen removed, is therefore the same selection with the same ties; the
    prefixes are a few hundred columns but for users who have seen most popular items, so rows are
    split in two tiers (:func:`_light_rows`) to keep the heavy users' long prefixes out of the rest.
    """
    n_rows, n_cols = seen.shape
    if n_rows == 0:
        return np.empty((0, min(n, n_cols)), np.int64), np.empty((0, min(n, n_cols)), np.float32)
    order = np.argsort(np.negative(row), kind="stable")
    orders, wants = [order], [min(n, n_cols)]
    cumulative = 0
    for mask, count in quotas:
        cumulative += max(int(count), 0)
        orders.append(order[mask[order]])
        wants.append(min(cumulative, n, n_cols))
    needs = np.stack([_prefix_needed(o, seen, w) for o, w in zip(orders, wants, strict=True)])
    light = _light_rows(needs.sum(axis=0))
    idx = np.zeros((n_rows, min(n, n_cols)), dtype=np.int64)
    val = np.full(idx.shape, -np.inf, dtype=np.float32)
    for tier in (np.flatnonzero(light), np.flatnonzero(~light)):
        if tier.size:
            lengths = needs[:, tier].max(axis=1)
            cols = np.unique(np.concatenate([o[:k] for o, k in zip(orders, lengths, strict=True)]))
            idx[tier], val[tier] = _top_n_over(row, seen[tier], cols, n, quotas)
    return idx, val


def _prefix_needed(order: IntArray, seen: sp.csr_matrix, want: int) -> IntArray:
    """Per row, the length of the shortest prefix of ``order`` holding ``want`` columns the row has
    not seen (all of ``order`` when it holds fewer).

    With the row's seen positions in ``order`` sorted, ``p_j - j`` unseen columns precede the j-th;
    it lies inside the prefix exactly when that is below ``want``.
    """
    n_rows, n_cols = seen.shape
    position = np.full(n_cols, -1, dtype=np.int64)
    position[order] = np.arange(order.size)
    pos = position[seen.indices]
    rows = entry_rows(seen)
    inside = pos >= 0
    key = np.sort(rows[inside] * n_cols + pos[inside])
    rows = key // n_cols
    pos = key - rows * n_cols
    j = _run_positions(np.bincount(rows, minlength=n_rows))
    before = np.bincount(rows[pos - j < want], minlength=n_rows)
    return np.minimum(want + before, order.size)


def _light_rows(width: IntArray) -> npt.NDArray[np.bool_]:
    """The rows to select over one narrow block: those of ``width`` at most the threshold that
    minimises ``light rows x threshold + other rows x max width`` (the two blocks' sizes)."""
    ordered = np.sort(width)
    n_light = np.arange(1, ordered.size + 1)
    cost = n_light * ordered + (ordered.size - n_light) * ordered[-1]
    return width <= ordered[int(np.argmin(cost))]


def _top_n_over(
    row: FloatArray,
    seen: sp.csr_matrix,
    cols: IntArray,
    n: int,
    quotas: Sequence[tuple[npt.NDArray[np.bool_], int]],
) -> tuple[IntArray, FloatArray]:
    """The selection of :func:`top_n_uniform` over the ascending columns ``cols`` only."""
    block = np.empty((seen.shape[0], cols.size), dtype=np.float32)
    block[:] = row[cols]
    local = np.full(seen.shape[1], -1, dtype=np.int64)
    local[cols] = np.arange(cols.size)
    at = local[seen.indices]
    rows = entry_rows(seen)
    block[rows[at >= 0], at[at >= 0]] = -np.inf
    if quotas:
        idx, val = top_n_with_quotas(block, n, [(mask[cols], count) for mask, count in quotas])
    else:
        idx, val = top_n(block, n)
    return cols[idx], val


class Recommender(ABC):
    """Fit on canonical interactions + items; recommend top-N unseen items for a batch of users.

    Subclasses set ``name`` and implement ``_fit`` and ``_score``. ``_score`` returns a dense float32
    ``(len(user_rows), n_items)`` block of relevance scores (higher is better) for known users;
    items a user must not get may be set to ``-inf``. Seen items are removed by the base class, in
    place when the block is a new array of its own (not a view and not kept by the model: the
    base class may overwrite it).
    """

    name: ClassVar[str]
    #: True for models that score from a user's history row: ``deepcuts.models.recommenders.registry`` then
    #: sets ``preference`` from ``arms.preference_*``.
    uses_preference: ClassVar[bool] = False

    def __init__(self, config: Any = None, seed: int = 42, batch_users: int = 1024) -> None:
        self.config = config
        self.seed = int(seed)
        self.batch_users = int(batch_users)
        self.data: InteractionMatrix | None = None
        self.popularity_: FloatArray | None = None
        #: History weighting of the models that score from a user's history row (None: binary).
        self.preference: Preference | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, config: Any, seed: int, *, base: Recommender | None = None
    ) -> Self:
        """The arm as the night builds it (``deepcuts.models.recommenders.registry.build_recommender``):
        ``config`` is its ``settings.arms`` section (None for an arm without one). Deep-cut arms override this
        to take their ``base`` model and the shared quality settings."""
        if base is not None:
            raise ValueError(f"{cls.__name__} re-weights no base model; pass base only to a deep-cut arm")
        return cls(config, seed=seed, batch_users=settings.arms.batch_users)

    # ------------------------------------------------------------------ API
    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame) -> Self:
        if interactions.empty:
            raise ValueError(f"{self.name}: cannot fit on an empty interactions table")
        self.data = InteractionMatrix.from_frames(interactions, items)
        counts = np.asarray(self.data.binary.sum(axis=0)).ravel().astype(np.float32)
        self.popularity_ = counts / max(float(counts.sum()), 1.0)
        self._fit(self.data, items)
        return self

    def recommend(
        self,
        user_ids: npt.ArrayLike,
        n: int,
        exclude_seen: bool = True,
        *,
        quotas: Sequence[tuple[npt.ArrayLike, int]] = (),
    ) -> pd.DataFrame:
        """Top-``n`` items per user as a long frame (user_id, item_id, rank, score), rank from 1.

        Users unknown to the model get the most popular items (cold start). ``quotas`` are
        ``(item_ids, count)`` pairs: the list is then the best ``n`` items holding at least ``count``
        of each group (as many as the user has unseen), the group's best-scored ones, ranked by score
        (:func:`top_n_with_quotas`). Items scored above every quota-forced item are the plain top-n,
        so a top-k with ``k <= n - sum(counts)`` is unchanged. This is how every arm supplies head and
        long-tail candidates from its own scorer (docs/deep-cuts.md).
        """
        columns = self.recommend_columns(user_ids, n, exclude_seen, quotas=quotas)
        return pd.DataFrame(columns)

    def recommend_columns(
        self,
        user_ids: npt.ArrayLike,
        n: int,
        exclude_seen: bool = True,
        *,
        quotas: Sequence[tuple[npt.ArrayLike, int]] = (),
    ) -> dict[str, npt.NDArray[Any]]:
        """:meth:`recommend` as plain arrays by column name (user_id int64, item_id int64, rank int32,
        score float32): the candidates step writes them to Arrow without a pandas frame per batch."""
        data = self._require_fitted()
        users = np.asarray(user_ids, dtype=np.int64)
        masks = []
        for item_ids, count in quotas:
            cols = data.item_columns(item_ids)
            mask = np.zeros(data.n_items, dtype=bool)
            mask[cols[cols >= 0]] = True
            masks.append((mask, int(count)))
        parts = [self._recommend_batch(data, batch, n, exclude_seen, masks) for batch in self._batches(users)]
        if not parts:
            return _empty_columns()
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def to_bytes(self) -> bytes:
        """The fitted model as one artefact: the train step stores these bytes in the lake
        (``models/<arm>/model.pkl``, written atomically by ``Lake``); models do no file I/O themselves."""
        state = {"version": ARTEFACT_VERSION, "class": type(self).__name__, "state": self.__dict__}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, payload: bytes | memoryview) -> Self:
        """The model of :meth:`to_bytes`'s bytes (or a buffer holding them: the unpickled arrays are
        copies, so the buffer may be released afterwards)."""
        try:
            state = pickle.loads(payload)  # artefacts are written by this pipeline only
        except (ModuleNotFoundError, AttributeError) as exc:
            # A class that moved or was renamed since the artefact was written (e.g. the models/
            # sub-packages): the same situation as a version bump, so the same error.
            raise ValueError(
                f"artefact of another code version ({exc}), expected {cls.__name__} v{ARTEFACT_VERSION}; "
                "retrain the model for this run date"
            ) from exc
        if state.get("version") != ARTEFACT_VERSION or state.get("class") != cls.__name__:
            raise ValueError(
                f"artefact is {state.get('class')} v{state.get('version')}, expected "
                f"{cls.__name__} v{ARTEFACT_VERSION}; retrain the model for this run date"
            )
        obj = cls.__new__(cls)
        obj.__dict__.update(state["state"])
        return obj

    def score_block(self, user_rows: IntArray) -> FloatArray:
        """``_score(user_rows)``, shared between equal models inside :func:`shared_scores` (treat the
        result as read-only)."""
        cache = _SHARED
        if cache is None or self.name not in cache.names:
            return self._score(user_rows)
        blocks = cache.blocks_of(self)
        key = np.ascontiguousarray(user_rows, dtype=np.int64).tobytes()
        block = blocks.get(key)
        if block is None:
            block = self._score(user_rows)
            if cache.used + block.nbytes <= cache.max_bytes:
                block.flags.writeable = False
                blocks[key] = block
                cache.used += block.nbytes
        return block

    # ------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None: ...

    @abstractmethod
    def _score(self, user_rows: IntArray) -> FloatArray: ...

    # ------------------------------------------------------------ internals
    def _require_fitted(self) -> InteractionMatrix:
        if self.data is None:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")
        return self.data

    def _batches(self, users: IntArray) -> Iterator[IntArray]:
        for start in range(0, users.size, self.batch_users):
            yield users[start : start + self.batch_users]

    def _history_rows(self, user_rows: IntArray) -> sp.csr_matrix:
        """The users' history rows as the model scores them (weighted by ``self.preference``)."""
        assert self.data is not None
        return self.data.weighted_rows(user_rows, getattr(self, "preference", None))

    def _uniform_scores(self) -> FloatArray | None:
        """The one score row every user gets before seen items are removed, for models whose scores
        do not depend on the user (popularity); None (the default) when scores are per user. The base
        class then selects from the row's order instead of a dense block (:func:`top_n_uniform`)."""
        return None

    def _recommend_batch(
        self,
        data: InteractionMatrix,
        users: IntArray,
        n: int,
        exclude_seen: bool,
        quotas: Sequence[tuple[npt.NDArray[np.bool_], int]] = (),
    ) -> dict[str, npt.NDArray[Any]]:
        rows = data.user_rows(users)
        known = rows >= 0
        uniform = self._uniform_scores()
        if uniform is not None and np.isfinite(uniform).all():
            idx, vals = top_n_uniform(uniform, self._seen_rows(data, rows, exclude_seen), n, quotas)
        else:
            scores = self._score_rows(data, rows, known)
            seen = self._seen_rows(data, rows, exclude_seen)
            scores[entry_rows(seen), seen.indices] = -np.inf
            if has_nan(scores):
                scores[np.isnan(scores)] = -np.inf
            if quotas:
                idx, vals = top_n_with_quotas(scores, n, quotas, nan_free=True)
            else:
                idx, vals = top_n(scores, n, nan_free=True)
        valid = np.isfinite(vals)
        ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1, dtype=np.int32), idx.shape)
        return {
            C.USER_ID: np.repeat(users, idx.shape[1])[valid.ravel()],
            C.ITEM_ID: data.item_ids[idx[valid]],
            C.RANK: ranks[valid],
            C.SCORE: vals[valid].astype(np.float32, copy=False),
        }

    def _score_rows(
        self, data: InteractionMatrix, rows: IntArray, known: npt.NDArray[np.bool_]
    ) -> FloatArray:
        """A writable float32 score block of the batch (cold users: the popularity row)."""
        if known.all():
            # the usual batch (every user has a history): the block itself, unless it is shared
            block = self.score_block(rows)
            fresh = block.flags.writeable and block.flags.owndata and block.flags.c_contiguous
            return block if fresh and block.dtype == np.float32 else np.array(block, dtype=np.float32)
        scores = np.empty((rows.size, data.n_items), dtype=np.float32)
        if known.any():
            scores[known] = self.score_block(rows[known])
        assert self.popularity_ is not None
        scores[~known] = self.popularity_
        return scores

    @staticmethod
    def _seen_rows(data: InteractionMatrix, rows: IntArray, exclude_seen: bool) -> sp.csr_matrix:
        """The batch's seen items as a ``batch x n_items`` structure (cold users and
        ``exclude_seen=False``: none). Stored entries, not nonzero values: an item rated 0 on a
        0-based scale is seen too."""
        counts = np.zeros(rows.size, dtype=np.int64)
        known = np.flatnonzero(rows >= 0) if exclude_seen else np.empty(0, np.int64)
        indptr = data.ratings.indptr
        counts[known] = indptr[rows[known] + 1] - indptr[rows[known]]
        seen_indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(counts, out=seen_indptr[1:])
        indices = data.ratings[rows[known]].indices if known.size else np.empty(0, np.int32)
        return sp.csr_matrix(
            (np.ones(indices.size, dtype=np.float32), indices, seen_indptr), shape=(rows.size, data.n_items)
        )


def _empty_columns() -> dict[str, npt.NDArray[Any]]:
    return {
        C.USER_ID: np.empty(0, np.int64),
        C.ITEM_ID: np.empty(0, np.int64),
        C.RANK: np.empty(0, np.int32),
        C.SCORE: np.empty(0, np.float32),
    }
