"""Nightly step ``score``: deep-cut scores of every candidate, the re-ranked lists, per-list metrics.

For one user shard and every enabled arm (``arms.enabled``, tonight's plan) with candidates on the run
date:

1. reads ``candidates(D)/<arm>/shard-NNNN``, the catalog ``items(D)`` and the history
   ``interactions(D)`` (a snapshot of the whole history): of every rating only the user_id, item_id and
   rating columns, for catalog-wide item statistics by bincounts, and a history matrix of the shard's own
   users only (:meth:`ScoringContext.build_for_shard`; the same arrays as the whole history's matrix);
2. scores each candidate (:mod:`deepcuts.models.reranking.deepcut_scores`: novelty, long-tail flag, popularity
percentile,
   quality, genre/embedding unexpectedness, serendipity, niche flag) -> ``scored(D)/<arm>/shard-NNNN``;
3. re-ranks each user's candidates (:mod:`deepcuts.models.reranking.rerank`) ->
   ``reranked(D)/<arm>/shard-NNNN`` with a machine-readable reason per item;
4. measures the arm's own top-L and the re-ranked list (ILD, genres, long-tail share, mean quality,
   calibration KL, novelty, serendipity) -> ``list_metrics(D)/<arm>/shard-NNNN``.

Item statistics come from :class:`deepcuts.models.recommenders.item_stats.ItemStats` (the arms' own
definitions of quality and long tail), genres from :class:`deepcuts.metrics.GenreMatrix` (the evaluation's).
The embedding distance uses the item factors of the ``svd`` arm's artefact when the train step left one for
the run date (``models(D)/svd...``); otherwise unexpectedness is the genre distance alone and the
``unexpectedness_embedding`` column is null.

Short candidate lists (fewer than ``rerank.list_length`` items, e.g. an arm whose quality floor left
few items) are topped up with the most popular unrated items (``rerank.fill_short_lists``), so that
every served list has ``list_length`` items as RERANKED_SCHEMA promises; filled items are not written
to ``scored`` and carry the reason kind ``fill``.

Reason format (``reason`` column): ``<kind>|genre=<genre>|rating=<quality, 1 decimal>`` where kind is
``fill`` (see above), ``hidden_gem`` (long tail and quality >= ``rerank.quality_floor``, 4.0 on a
5-point scale), ``deep_cut`` (other long tail: at or above the per-item floor unless nothing else could
fill the list),
``new_genre`` (none of the item's genres is in the user's history), or ``top_pick``; genre is the
item's niche genre when it has one (in ``rerank.niche_genres`` order), else its genre least present in
the user's profile (most present for ``top_pick``); ``none`` for an item without genres. ``|`` and
``=`` inside genre names become ``_``. Example: ``hidden_gem|genre=Anime|rating=4.4``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from deepcuts.contracts import C, Dataset
from deepcuts.models.recommenders.base import InteractionMatrix, positions_in, unique_codes
from deepcuts.models.recommenders.item_stats import ItemStats
from deepcuts.models.reranking import deepcut_scores as ds
from deepcuts.models.reranking.rerank import RerankParams, RerankResult, rerank
from deepcuts.pipelines.candidates import shard_part, user_shard
from deepcuts.progress import get_logger, progress
from deepcuts.settings import Settings

log = get_logger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Placeholder run date of lists re-ranked inside an offline evaluation (the column is dropped there).
_EVALUATION_DATE = date(1970, 1, 1)
LIST_SOURCE_CANDIDATES = "candidates"
LIST_SOURCE_RERANKED = "reranked"
#: Arm whose item factors give the embedding distance.
EMBEDDING_ARM = "svd"


class ScoreError(ValueError):
    """The score step cannot run on its inputs (says what, where and what to do)."""


# ------------------------------------------------------------------------------------------ history
@dataclass(frozen=True)
class ShardScope:
    """The users whose history a context holds: those of one shard (``user_id % n_shards == shard``)."""

    shard: int
    n_shards: int

    def require(self, users: IntArray, arm: str) -> None:
        """Raise when some of ``users`` are outside the shard: their history was not read."""
        outside = users[user_shard(users, self.n_shards) != self.shard]
        if outside.size:
            raise ScoreError(
                f"{arm}: {outside.size} candidate users of shard {self.shard} (e.g. user {int(outside[0])}) "
                f"are not in shard {self.shard} of {self.n_shards} (user_id % n_shards): the candidates "
                "were written with another shard count; rerun candidates and score with the same n_shards"
            )


#: Ratings are tried on grids of ``2**-bits`` up to this many bits (half stars need 1) for exact sums.
_MAX_GRID_BITS = 8
#: float32 holds every integer up to 2**24 exactly (24-bit significand).
_FLOAT32_EXACT_INTEGERS = 2.0**24


def _float32_sums_are_exact(ratings: FloatArray, max_count: int) -> bool:
    """Whether every partial sum of one item's ratings is exact in float32, in any order.

    The full path sums each item's ratings in float32 in user order (scipy's ``sum(axis=0)``); the
    shard path sums them in float64 in file order. Both are exact, hence equal, when every rating is
    a multiple of ``2**-bits`` and ``max|rating| * max_count * 2**bits < 2**24``. Otherwise (ratings
    off such a grid, NaN, inf) the caller takes the full path.
    """
    if ratings.size == 0:
        return True
    peak = float(np.abs(ratings).max())
    for bits in range(_MAX_GRID_BITS + 1):
        scaled = ratings * np.float32(2.0**bits)
        if np.array_equal(scaled, np.floor(scaled)):
            return peak * max_count * 2.0**bits < _FLOAT32_EXACT_INTEGERS
    return False


def _pair_keys(users: IntArray, codes: IntArray, n_items: int) -> npt.NDArray[np.integer[Any]]:
    """One integer per (user, item column) pair; uint32 when it fits (its sort is about 3x cheaper)."""
    lo, hi = (int(users.min()), int(users.max())) if users.size else (0, 0)
    if lo < 0 or (hi + 1) * max(n_items, 1) >= 2**62:  # ids a product cannot hold: code them
        _, users = unique_codes(users)
        hi = int(users.max(initial=0))
    keys = users * max(n_items, 1) + codes
    return keys.astype(np.uint32) if (hi + 1) * max(n_items, 1) <= 2**32 else keys


def _repeated_pair_rows(users: IntArray, codes: IntArray, n_items: int) -> IntArray:
    """Rows (in input order) of the (user, item) pairs that occur more than once."""
    keys = _pair_keys(users, codes, n_items)
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not repeated.size:
        return np.empty(0, dtype=np.int64)
    repeated = np.unique(repeated)
    at = np.minimum(np.searchsorted(repeated, keys), repeated.size - 1)
    return np.flatnonzero(repeated[at] == keys)


#: Item ids of a compact range (MovieLens: 1..n) are their own bincount slots while the range is at
#: most this many times the rated rows (else, or with negative ids, they are coded by sorting).
_SLOT_SPAN_PER_ROW = 4
_SLOT_MIN_SPAN = 1 << 20


@dataclass(frozen=True)
class ItemSlots:
    """The bincount slot of each rated row's item: the item id itself when ids are compact (no coding
    pass over the rows), else its catalog column."""

    item_ids: IntArray  # sorted distinct rated and catalog ids: the matrix's columns
    rows: IntArray  # slot of each rated row
    n_slots: int
    compact: bool

    @classmethod
    def of(cls, rated: IntArray, catalog_ids: IntArray) -> ItemSlots:
        every = (rated, catalog_ids)
        lo = min((int(a.min()) for a in every if a.size), default=0)
        hi = max((int(a.max()) for a in every if a.size), default=-1)
        if lo >= 0 and hi < max(_SLOT_SPAN_PER_ROW * rated.size, _SLOT_MIN_SPAN):
            present = np.bincount(rated, minlength=hi + 1) > 0
            present[catalog_ids] = True
            return cls(np.flatnonzero(present).astype(np.int64), rated, hi + 1, compact=True)
        item_ids, codes = unique_codes(np.concatenate([rated, catalog_ids]))
        return cls(item_ids, codes[: rated.size], item_ids.size, compact=False)

    def slot_of(self, ids: IntArray) -> IntArray:
        """Slots of item ids (all among ``item_ids``)."""
        return ids if self.compact else positions_in(self.item_ids, ids)


@dataclass(frozen=True)
class CatalogStats:
    """Catalog-wide item statistics computed from the rating columns without a users x items matrix."""

    stats: ItemStats
    #: Some (user, item) pair is rated more than once (then the latest rating counts, by time).
    has_repeats: bool


def catalog_stats(
    history: pa.Table,
    catalog_ids: IntArray,
    repeated_rows: Callable[[IntArray], pd.DataFrame],
    prior_weight: float,
    head_share: float,
) -> CatalogStats | None:
    """The :class:`ItemStats` of ``InteractionMatrix.from_frames(all interactions, items)`` from the
    user_id, item_id and rating columns of ``history`` alone (bincounts, one sort of pair keys).

    A pair rated more than once counts once with its latest rating: ``repeated_rows(rows)`` returns those
    rows as a frame with the time column, and their winners are picked by the matrix's own rule.
    None when the sums could differ from the matrix's float32 sums (:func:`_float32_sums_are_exact`).
    """
    users = history.column(C.USER_ID).to_numpy()
    ratings = history.column(C.RATING).to_numpy()
    slots = ItemSlots.of(history.column(C.ITEM_ID).to_numpy(), catalog_ids)
    counts = np.bincount(slots.rows, minlength=slots.n_slots).astype(np.int64)
    if not _float32_sums_are_exact(ratings, int(counts.max(initial=0))):
        return None
    sums = np.bincount(slots.rows, weights=ratings, minlength=slots.n_slots)
    repeated = _repeated_pair_rows(users, slots.rows, slots.n_slots)
    if repeated.size:
        # the latest rating of each repeated pair replaces all of the pair's rows
        latest = InteractionMatrix.from_frames(repeated_rows(repeated))
        won = slots.slot_of(latest.item_ids)[latest.ratings.indices]
        counts -= np.bincount(slots.rows[repeated], minlength=slots.n_slots)
        sums -= np.bincount(slots.rows[repeated], weights=ratings[repeated], minlength=slots.n_slots)
        counts += np.bincount(won, minlength=slots.n_slots)
        sums += np.bincount(won, weights=latest.ratings.data, minlength=slots.n_slots)
    item_ids = slots.item_ids
    counts, sums = counts[slots.slot_of(item_ids)], sums[slots.slot_of(item_ids)]
    return CatalogStats(
        ItemStats.from_counts(item_ids, counts, sums, prior_weight, head_share), bool(repeated.size)
    )


def shard_history(
    history: pa.Table,
    item_ids: IntArray,
    scope: ShardScope,
    read_times: Callable[[IntArray], pa.Array] | None = None,
) -> InteractionMatrix:
    """The :class:`InteractionMatrix` rows of the shard's users, on the catalog-wide columns ``item_ids``:
    each user's row equals their row of the matrix of the whole history (same columns, same ratings).

    ``read_times(rows)``: the time column at those rows, which picks the latest of a pair rated more
    than once (None when no pair is: the matrix then needs no times)."""
    users = history.column(C.USER_ID).to_numpy()
    mine = np.flatnonzero(user_shard(users, scope.n_shards) == scope.shard)
    rows = history.take(pa.array(mine))
    if read_times is not None:
        rows = rows.append_column(C.TS, read_times(mine))
    return InteractionMatrix.from_frames(rows.to_pandas(), pd.DataFrame({C.ITEM_ID: item_ids}))


# ------------------------------------------------------------------------------------------ context
@dataclass(frozen=True)
class ScoringContext:
    """Catalog arrays (rows follow ``history.item_ids``) and the user history, built once per shard."""

    history: InteractionMatrix
    stats: ItemStats
    genres: FloatArray
    genre_names: tuple[str, ...]
    genre_unit: FloatArray
    novelty: FloatArray
    niche: BoolArray
    #: Unit item factors aligned with the catalog rows, or None (genre distance only).
    item_factors: FloatArray | None
    params: RerankParams
    embedding_weight: float
    niche_genres: tuple[str, ...]
    fill_short_lists: bool = True
    #: A long-tail item at or above this quality is a ``hidden_gem`` (rerank.quality_floor, scaled).
    gem_quality: float = 4.0
    #: ``history`` holds only this shard's users (None: every user).
    scope: ShardScope | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        interactions: pd.DataFrame,
        items: pd.DataFrame,
        item_factors: tuple[IntArray, FloatArray] | None = None,
    ) -> ScoringContext:
        """Everything the scores need from the history and the catalog.

        ``item_factors`` is ``(item_ids, factors)`` of an embedding model (e.g. the svd arm); items it
        does not cover get a zero vector (cosine 0 with everything).
        """
        if interactions.empty:
            raise ScoreError("interactions are empty: nothing to score against; run ingest first")
        history = InteractionMatrix.from_frames(interactions, items)
        stats = ItemStats.from_matrix(
            history, settings.arms.quality.prior_weight, settings.arms.long_tail.head_share
        )
        return cls.assemble(settings, history, stats, items, item_factors)

    @classmethod
    def build_for_shard(
        cls,
        settings: Settings,
        history: pa.Table,
        items: pd.DataFrame,
        item_factors: tuple[IntArray, FloatArray] | None,
        scope: ShardScope,
        read_times: Callable[[IntArray], pa.Array],
    ) -> ScoringContext | None:
        """:meth:`build` for one shard from the user_id, item_id and rating columns of the whole history:
        catalog-wide item statistics by bincounts, the matrix of the shard's users only. The same arrays
        as :meth:`build` on the whole history (the shard's users' rows); ``read_times(rows)`` gives the
        time column at those rows (needed only when a pair is rated more than once).

        None when the item statistics need the whole matrix (:func:`catalog_stats`): call :meth:`build`.
        """
        if history.num_rows == 0:
            raise ScoreError("interactions are empty: nothing to score against; run ingest first")

        def with_times(rows: IntArray) -> pd.DataFrame:
            taken = history.take(pa.array(rows))
            return taken.append_column(C.TS, read_times(rows)).to_pandas()

        catalog = catalog_stats(
            history,
            items[C.ITEM_ID].to_numpy(np.int64),
            with_times,
            settings.arms.quality.prior_weight,
            settings.arms.long_tail.head_share,
        )
        if catalog is None:
            return None
        times = read_times if catalog.has_repeats else None
        matrix = shard_history(history, catalog.stats.item_ids, scope, times)
        return cls.assemble(settings, matrix, catalog.stats, items, item_factors, scope)

    @classmethod
    def assemble(
        cls,
        settings: Settings,
        history: InteractionMatrix,
        stats: ItemStats,
        items: pd.DataFrame,
        item_factors: tuple[IntArray, FloatArray] | None = None,
        scope: ShardScope | None = None,
    ) -> ScoringContext:
        """The context of a history matrix and its catalog-wide item statistics."""
        genres, names = ds.genre_matrix(items, history.item_ids)
        factors = None
        if item_factors is not None:
            ids, vectors = item_factors
            vectors = np.asarray(vectors, dtype=np.float32)
            aligned = np.zeros((history.n_items, vectors.shape[1]), dtype=np.float32)
            cols = history.item_columns(ids)
            aligned[cols[cols >= 0]] = vectors[cols >= 0]
            factors = ds.unit_rows(aligned)
        rating_min, rating_max = settings.source.rating_min, settings.source.rating_max
        return cls(
            history=history,
            stats=stats,
            genres=genres,
            genre_names=names,
            genre_unit=ds.unit_rows(genres),
            novelty=ds.novelty(stats.popularity_share, int(stats.counts.sum())),
            niche=ds.niche_flags(genres, names, settings.rerank.niche_genres),
            item_factors=factors,
            params=RerankParams.from_settings(settings, rating_min, rating_max),
            embedding_weight=settings.rerank.embedding_weight,
            niche_genres=settings.rerank.niche_genres,
            fill_short_lists=settings.rerank.fill_short_lists,
            gem_quality=settings.quality_floor_scaled(rating_min, rating_max),
            scope=scope,
        )


@dataclass(frozen=True)
class CandidateBlock:
    """One arm's candidates as ``(users, K)`` arrays, best arm rank first; ``-1``/NaN where padded."""

    users: IntArray
    columns: IntArray  # catalog rows
    scores: FloatArray
    ranks: npt.NDArray[np.int32]
    n_unknown_items: int
    #: True for items added by :meth:`topped_up` (not the arm's own candidates).
    fill: BoolArray | None = None

    @property
    def valid(self) -> BoolArray:
        return self.columns >= 0

    @property
    def own(self) -> BoolArray:
        """The arm's own candidates (valid and not filled in)."""
        return self.valid if self.fill is None else self.valid & ~self.fill

    def topped_up(self, ctx: ScoringContext, length: int) -> CandidateBlock:
        """Users with fewer than ``length`` candidates get the most popular items they have not rated
        (and that are not already candidates) appended, so a served list can have ``length`` items.

        Filled items have no arm score (NaN, so relevance 0): the re-ranker takes them only to complete
        a list. Popularity order is the models' cold-start order (counts descending, ties: catalog order).
        Only the few short users are visited; the others are untouched.
        """
        n_valid = self.valid.sum(axis=1)
        short = np.flatnonzero(n_valid < length)
        width = max(self.columns.shape[1], length)
        columns = np.full((self.users.size, width), -1, dtype=np.int64)
        scores = np.full((self.users.size, width), np.nan, dtype=np.float32)
        ranks = np.zeros((self.users.size, width), dtype=np.int32)
        fill = np.zeros((self.users.size, width), dtype=bool)
        k = self.columns.shape[1]
        columns[:, :k], scores[:, :k], ranks[:, :k] = self.columns, self.scores, self.ranks
        if self.fill is not None:
            fill[:, :k] = self.fill
        if short.size:
            counts = ctx.stats.counts
            popular = np.lexsort((np.arange(counts.size), -counts))
            rows = ctx.history.user_rows(self.users[short])
            for u, row in zip(short, rows, strict=True):
                have = self.columns[u][self.columns[u] >= 0]
                seen = (
                    ctx.history.ratings.indices[
                        ctx.history.ratings.indptr[row] : ctx.history.ratings.indptr[row + 1]
                    ]
                    if row >= 0
                    else have[:0]
                )
                need = length - have.size
                extra = popular[~np.isin(popular, np.concatenate([have, seen]))][:need]
                start = have.size
                columns[u, start : start + extra.size] = extra
                fill[u, start : start + extra.size] = True
                ranks[u, start : start + extra.size] = int(self.ranks[u].max()) + 1 + np.arange(extra.size)
        return CandidateBlock(self.users, columns, scores, ranks, self.n_unknown_items, fill)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, history: InteractionMatrix) -> CandidateBlock:
        """Pivot a long candidates frame (user_id, item_id, rank, score); unknown items are dropped."""
        cols = history.item_columns(frame[C.ITEM_ID].to_numpy(np.int64))
        known = cols >= 0
        user = frame[C.USER_ID].to_numpy(np.int64)[known]
        rank = frame[C.RANK].to_numpy(np.int32)[known]
        cols = cols[known]
        score = frame[C.SCORE].to_numpy(np.float32)[known]
        d_user, d_rank = np.diff(user), np.diff(rank)
        if not ((d_user > 0) | ((d_user == 0) & (d_rank >= 0))).all():  # the candidates step sorts
            # stable sort by (user, rank) in numpy: a pandas sort_values of the frame cost as much again
            order = np.lexsort((rank, user))
            user, rank, cols, score = user[order], rank[order], cols[order], score[order]
        # users in order: each one's run starts where the id changes
        starts = np.ones(user.size, dtype=bool)
        np.not_equal(user[1:], user[:-1], out=starts[1:])
        first = np.flatnonzero(starts)
        users = user[first]
        user_code = np.cumsum(starts) - 1
        slot = np.arange(user.size) - first[user_code]
        width = int(slot.max()) + 1 if user.size else 0
        columns = np.full((users.size, width), -1, dtype=np.int64)
        scores = np.full((users.size, width), np.nan, dtype=np.float32)
        ranks = np.zeros((users.size, width), dtype=np.int32)
        columns[user_code, slot] = cols
        scores[user_code, slot] = score
        ranks[user_code, slot] = rank
        return cls(users, columns, scores, ranks, int((~known).sum()))


@dataclass(frozen=True)
class UserFeatures:
    """Per-user history summaries (rows follow ``CandidateBlock.users``)."""

    profile: FloatArray  # Steck's p_u(g)
    genre_mean_unit: FloatArray  # mean of unit genre vectors of the history
    factor_mean_unit: FloatArray | None  # mean of unit item factors of the history
    niche_appetite: FloatArray  # share of history items with a niche genre
    has_history: BoolArray

    @classmethod
    def build(cls, ctx: ScoringContext, users: IntArray) -> UserFeatures:
        return cls.of_rows(ctx, ctx.history.user_rows(users))

    @classmethod
    def of_every_user(cls, ctx: ScoringContext) -> UserFeatures:
        """The features of every history row, then one row of a user without history (see :meth:`of`):
        computed once per shard, taken by each arm (each row depends on that user's history only)."""
        return cls.of_rows(ctx, np.append(np.arange(ctx.history.n_users), -1))

    def of(self, ctx: ScoringContext, users: IntArray) -> UserFeatures:
        """The rows of ``users`` in features from :meth:`of_every_user` (equal to :meth:`build`)."""
        rows = ctx.history.user_rows(users)
        take = np.where(rows >= 0, rows, ctx.history.n_users)
        return UserFeatures(
            profile=self.profile[take],
            genre_mean_unit=self.genre_mean_unit[take],
            factor_mean_unit=self.factor_mean_unit[take] if self.factor_mean_unit is not None else None,
            niche_appetite=self.niche_appetite[take],
            has_history=self.has_history[take],
        )

    @classmethod
    def of_rows(cls, ctx: ScoringContext, rows: IntArray) -> UserFeatures:
        """Features of history rows (``-1``: a user without history)."""
        known = rows >= 0
        # unknown users get an empty history row
        picked = ctx.history.binary_rows(np.where(known, rows, 0))
        hist = picked.multiply(known[:, None].astype(np.float32)).tocsr()
        hist.eliminate_zeros()
        factor_mean = ds.history_means(hist, ctx.item_factors) if ctx.item_factors is not None else None
        return cls(
            profile=ds.genre_profiles(hist, ctx.genres),
            genre_mean_unit=ds.history_means(hist, ctx.genre_unit),
            factor_mean_unit=factor_mean,
            niche_appetite=ds.history_means(hist, ctx.niche.astype(np.float32)[:, None])[:, 0],
            has_history=np.diff(hist.indptr) > 0,
        )


# ------------------------------------------------------------------------------------------ scoring
@dataclass(frozen=True)
class CandidateScores:
    """Per-candidate deep-cut scores as ``(users, K)`` arrays."""

    relevance: FloatArray
    unexpectedness_genre: FloatArray
    unexpectedness_embedding: FloatArray | None
    unexpectedness: FloatArray
    serendipity: FloatArray


#: Users per slice of :func:`_row_cosine_distance`: the gathered vectors of a slice stay in cache.
_COSINE_SLICE_USERS = 256


def _row_cosine_distance(user_vectors: FloatArray, item_vectors: FloatArray, idx: IntArray) -> FloatArray:
    """``cosine_unexpectedness`` of each user's row against the items ``idx[u, :]``, ``(users, K)``.

    Computed a slice of users at a time (row by row the same arithmetic as one call on all rows): the
    gathered ``(users, K, d)`` item vectors of a whole shard were hundreds of MB.
    """
    n_users, k = idx.shape
    out = np.empty((n_users, k), dtype=np.float32)
    for start in range(0, n_users, _COSINE_SLICE_USERS):
        sl = slice(start, min(start + _COSINE_SLICE_USERS, n_users))
        out[sl] = ds.cosine_unexpectedness_rows(user_vectors[sl], item_vectors[idx[sl]])
    return out


def score_candidates(ctx: ScoringContext, block: CandidateBlock, feats: UserFeatures) -> CandidateScores:
    """Relevance, unexpectedness and serendipity of every candidate (formulas:
    deepcuts.models.reranking.deepcut_scores)."""
    valid = block.valid
    idx = np.where(valid, block.columns, 0)
    relevance = ds.normalise_relevance(block.scores, valid)
    genre_unexp = _row_cosine_distance(feats.genre_mean_unit, ctx.genre_unit, idx)
    genre_unexp = np.where(feats.has_history[:, None], genre_unexp, 1.0).astype(np.float32)
    emb_unexp = None
    if ctx.item_factors is not None and feats.factor_mean_unit is not None:
        raw = _row_cosine_distance(feats.factor_mean_unit, ctx.item_factors, idx)
        emb_unexp = np.where(feats.has_history[:, None], raw / 2.0, 1.0).astype(np.float32)
    unexp = ds.combined_unexpectedness(genre_unexp, emb_unexp, ctx.embedding_weight)
    return CandidateScores(relevance, genre_unexp, emb_unexp, unexp, (relevance * unexp).astype(np.float32))


def scored_frame(
    ctx: ScoringContext, block: CandidateBlock, scores: CandidateScores, arm: str, run_date: date
) -> pd.DataFrame:
    """The ``scored`` rows (SCORED_SCHEMA) of the arm's own candidates, in (user, arm rank) order."""
    valid = block.own
    cols = block.columns[valid]
    n = int(valid.sum())
    emb = (
        scores.unexpectedness_embedding[valid]
        if scores.unexpectedness_embedding is not None
        else np.full(n, np.nan, dtype=np.float32)
    )
    return pd.DataFrame(
        {
            C.USER_ID: np.broadcast_to(block.users[:, None], valid.shape)[valid],
            C.ITEM_ID: ctx.history.item_ids[cols],
            C.ARM: arm,
            C.RANK: block.ranks[valid],
            C.SCORE: block.scores[valid],
            C.RELEVANCE: scores.relevance[valid],
            C.NOVELTY: ctx.novelty[cols],
            C.IS_LONG_TAIL: ctx.stats.is_long_tail[cols],
            C.POPULARITY_PERCENTILE: ctx.stats.popularity_percentile[cols],
            C.QUALITY: ctx.stats.quality[cols],
            C.UNEXPECTEDNESS_GENRE: scores.unexpectedness_genre[valid],
            C.UNEXPECTEDNESS_EMBEDDING: emb,  # NaN -> null in Arrow
            C.UNEXPECTEDNESS: scores.unexpectedness[valid],
            C.SERENDIPITY: scores.serendipity[valid],
            C.IS_NICHE: ctx.niche[cols],
            C.RUN_DATE: _day(run_date),
        }
    )


def rerank_block(
    ctx: ScoringContext, block: CandidateBlock, feats: UserFeatures, relevance: FloatArray
) -> RerankResult:
    """Run :func:`deepcuts.models.reranking.rerank.rerank` on one arm's block."""
    return rerank(
        candidates=block.columns,
        relevance=relevance,
        genres=ctx.genres,
        quality=ctx.stats.quality,
        long_tail=ctx.stats.is_long_tail,
        niche=ctx.niche,
        profile=feats.profile,
        niche_appetite=feats.niche_appetite,
        params=ctx.params,
    )


def _day(run_date: date) -> np.datetime64:
    """The run date as a numpy day: the frame's column is then datetime64, which Arrow casts to the
    contract's date32 at once (a column of Python date objects cost ~0.1 s per million rows)."""
    return np.datetime64(run_date, "D")


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table, converted on this thread: pyarrow's converter threads cost more
    CPU than they save on these columns (the step runs one task per core)."""
    return pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)


def _clean_genre(name: str) -> str:
    return name.replace("|", "_").replace("=", "_")


def reasons(
    ctx: ScoringContext, cols: IntArray, profile_rows: FloatArray, filled: BoolArray | None = None
) -> np.ndarray:
    """The reason string of each ``(item row, user profile)`` pair (format: module docstring);
    ``filled`` marks items added to complete a short list (kind ``fill``)."""
    g = ctx.genres[cols] > 0
    q = ctx.stats.quality[cols]
    tail = ctx.stats.is_long_tail[cols]
    overlap = (g * (profile_rows > 0)).any(axis=1)
    has_profile = profile_rows.sum(axis=1) > 0
    floor = ctx.gem_quality
    kind = np.where(
        tail & (q >= floor - 1e-6),
        "hidden_gem",
        np.where(tail, "deep_cut", np.where(has_profile & ~overlap, "new_genre", "top_pick")),
    )
    if filled is not None:
        kind = np.where(filled, "fill", kind)
    names = np.asarray([_clean_genre(n) for n in ctx.genre_names] + ["none"], dtype=object)
    n_genres = len(ctx.genre_names)
    # genre choice: niche genre first (settings order), else least / most present in the profile
    if n_genres:
        least = np.argmin(np.where(g, profile_rows, np.inf), axis=1)
        most = np.argmax(np.where(g, profile_rows, -1.0), axis=1)
        chosen = np.where(g.any(axis=1), np.where(kind == "top_pick", most, least), n_genres)
    else:
        chosen = np.zeros(cols.size, dtype=np.int64)
    lower = [n.casefold() for n in ctx.genre_names]
    for niche_name in reversed(ctx.niche_genres):
        if niche_name.casefold() in lower:
            j = lower.index(niche_name.casefold())
            chosen = np.where(g[:, j], j, chosen)
    # Few distinct (kind, genre, rating) triples: format each once and index them (formatting and
    # joining strings per row cost more than the rest of the step's frame building).
    kinds, kind_code = np.unique(kind, return_inverse=True)
    # distinct bit patterns, so that even -0.0 keeps its own text
    bits, rating_code = np.unique(q.astype(np.float64).view(np.int64), return_inverse=True)
    ratings = bits.view(np.float64)
    rating_text = [f"{r:.1f}" for r in ratings.tolist()]
    genre_code = np.asarray(chosen, dtype=np.int64)
    triple = (kind_code.ravel() * names.size + genre_code) * max(ratings.size, 1) + rating_code.ravel()
    triples, row_code = np.unique(triple, return_inverse=True)
    k_of, rest = np.divmod(triples, names.size * max(ratings.size, 1))
    g_of, r_of = np.divmod(rest, max(ratings.size, 1))
    text = np.asarray(
        [
            f"{kinds[k]}|genre={names[g]}|rating={rating_text[r]}"
            for k, g, r in zip(k_of.tolist(), g_of.tolist(), r_of.tolist(), strict=True)
        ]
        + [""],  # keeps the array one-dimensional of objects when it is empty
        dtype=object,
    )[:-1]
    return text[row_code.ravel()]


def reranked_frame(
    ctx: ScoringContext,
    block: CandidateBlock,
    feats: UserFeatures,
    scores: CandidateScores,
    result: RerankResult,
    arm: str,
    run_date: date,
) -> pd.DataFrame:
    """The ``reranked`` rows (RERANKED_SCHEMA): rank from 1, score = the greedy marginal gain."""
    pos = result.positions
    chosen = pos >= 0
    user_idx = np.broadcast_to(np.arange(block.users.size)[:, None], pos.shape)[chosen]
    cand_pos = pos[chosen]
    cols = block.columns[user_idx, cand_pos]
    rank = np.broadcast_to(np.arange(1, pos.shape[1] + 1, dtype=np.int32), pos.shape)[chosen]
    return pd.DataFrame(
        {
            C.USER_ID: block.users[user_idx],
            C.ITEM_ID: ctx.history.item_ids[cols],
            C.RANK: rank,
            C.SCORE: result.gains[chosen],
            C.ARM: arm,
            C.RUN_DATE: _day(run_date),
            C.NOVELTY: ctx.novelty[cols],
            C.IS_LONG_TAIL: ctx.stats.is_long_tail[cols],
            C.QUALITY: ctx.stats.quality[cols],
            C.REASON: reasons(
                ctx,
                cols,
                feats.profile[user_idx],
                block.fill[user_idx, cand_pos] if block.fill is not None else None,
            ),
        }
    )


def list_metrics(
    ctx: ScoringContext,
    block: CandidateBlock,
    feats: UserFeatures,
    scores: CandidateScores,
    positions: IntArray,
    arm: str,
    source: str,
    run_date: date,
) -> pd.DataFrame:
    """LIST_METRICS rows for lists given as ``(users, L)`` positions into the candidate block."""
    mask = positions >= 0
    safe = np.where(mask, positions, 0)
    cols = np.take_along_axis(np.where(block.valid, block.columns, 0), safe, axis=1)
    g = ctx.genres[cols]
    return pd.DataFrame(
        {
            C.USER_ID: block.users,
            C.ARM: arm,
            C.LIST_SOURCE: source,
            C.N_ITEMS: mask.sum(axis=1).astype(np.int32),
            C.ILD: ds.intra_list_diversity(ctx.genre_unit[cols], mask),
            C.N_GENRES: ds.distinct_genres(g, mask).astype(np.int32),
            C.LONG_TAIL_SHARE: ds.masked_mean(ctx.stats.is_long_tail[cols], mask),
            C.MEAN_QUALITY: ds.masked_mean(ctx.stats.quality[cols], mask),
            C.CALIBRATION_KL: ds.calibration_kl(
                feats.profile, ds.genre_distribution(g), mask, ctx.params.calibration_alpha
            ),
            C.NOVELTY: ds.masked_mean(ctx.novelty[cols], mask),
            C.SERENDIPITY: ds.masked_mean(np.take_along_axis(scores.serendipity, safe, axis=1), mask),
            C.RUN_DATE: _day(run_date),
        }
    )


@dataclass(frozen=True)
class ArmOutput:
    filled: int  # items appended to short candidate lists
    scored: pd.DataFrame
    reranked: pd.DataFrame
    list_metrics: pd.DataFrame
    rerank_seconds: float


def process_arm(
    ctx: ScoringContext,
    candidates: pd.DataFrame,
    arm: str,
    run_date: date,
    every_user: UserFeatures | None = None,
) -> ArmOutput:
    """Score, re-rank and measure one arm's candidates (a long frame: user_id, item_id, rank, score).

    ``every_user``: :meth:`UserFeatures.of_every_user` of ``ctx``, shared by the arms (else built here).
    """
    block = CandidateBlock.from_frame(candidates, ctx.history)
    if ctx.scope is not None:
        ctx.scope.require(block.users, arm)
    if block.n_unknown_items:
        log.warning(
            "%s: %d candidate rows name items outside the catalog of %s; they are dropped",
            arm,
            block.n_unknown_items,
            run_date,
        )
    if ctx.fill_short_lists:
        block = block.topped_up(ctx, ctx.params.list_length)
    feats = UserFeatures.build(ctx, block.users) if every_user is None else every_user.of(ctx, block.users)
    scores = score_candidates(ctx, block, feats)
    started = time.perf_counter()
    result = rerank_block(ctx, block, feats, scores.relevance)
    seconds = time.perf_counter() - started
    length = min(ctx.params.list_length, block.columns.shape[1])
    arm_top = np.where(block.own[:, :length], np.arange(length)[None, :], -1)
    metrics = pd.concat(
        [
            list_metrics(ctx, block, feats, scores, arm_top, arm, LIST_SOURCE_CANDIDATES, run_date),
            list_metrics(ctx, block, feats, scores, result.positions, arm, LIST_SOURCE_RERANKED, run_date),
        ],
        ignore_index=True,
    )
    n_filled = int(block.fill.sum()) if block.fill is not None else 0
    return ArmOutput(
        filled=n_filled,
        scored=scored_frame(ctx, block, scores, arm, run_date),
        reranked=reranked_frame(ctx, block, feats, scores, result, arm, run_date),
        list_metrics=metrics,
        rerank_seconds=seconds,
    )


# ------------------------------------------------------------------------------------------ step
def load_item_factors(lake: Any, run_date: date) -> tuple[IntArray, FloatArray] | None:
    """``(item_ids, factors)`` of the svd arm's artefact for the run date, or None if there is none.

    Read with :func:`deepcuts.pipelines.train.load_model` (``models(D)/svd/model.pkl``); a missing or
    unreadable artefact only costs the embedding distance, so it is logged, not raised.
    """
    from deepcuts.pipelines.train import load_model, model_path

    if not lake.exists(Dataset.MODELS, run_date, model_path(EMBEDDING_ARM)):
        log.info("no %s artefact for %s: unexpectedness is the genre distance only", EMBEDDING_ARM, run_date)
        return None
    lake.require_complete(Dataset.MODELS, run_date, scope=EMBEDDING_ARM)
    try:
        model = load_model(lake, run_date, EMBEDDING_ARM)
    except (ValueError, KeyError, EOFError, AttributeError) as exc:
        log.warning(
            "cannot read the %s artefact of %s (%s); genre distance only", EMBEDDING_ARM, run_date, exc
        )
        return None
    factors = getattr(model, "item_factors_", None)
    if model.data is None or factors is None:
        return None
    return model.data.item_ids, np.asarray(factors, dtype=np.float32)


def shard_context(
    settings: Settings,
    lake: Any,
    run_date: date,
    items: pd.DataFrame,
    factors: tuple[IntArray, FloatArray] | None,
    scope: ShardScope,
) -> ScoringContext:
    """The scoring context of one shard: :meth:`ScoringContext.build_for_shard` on the rating columns
    (the time column is read only if some pair is rated more than once), or :meth:`ScoringContext.build`
    on the whole history when the item statistics need the whole matrix."""
    columns = [C.USER_ID, C.ITEM_ID, C.RATING]
    history = lake.read_table(Dataset.INTERACTIONS, run_date, columns=columns)

    def read_times(rows: IntArray) -> pa.Array:
        times = lake.read_table(Dataset.INTERACTIONS, run_date, columns=[C.TS]).column(C.TS)
        return times.take(pa.array(rows)).combine_chunks()

    ctx = ScoringContext.build_for_shard(settings, history, items, factors, scope, read_times)
    if ctx is not None:
        return ctx
    log.info(
        "%s: float32 sums of these ratings could round (off a 2**-k grid or too large): item statistics "
        "from the whole history's matrix",
        run_date,
    )
    del history
    interactions = lake.read_df(Dataset.INTERACTIONS, run_date)
    return ScoringContext.build(settings, interactions, items, factors)


def score_shard(settings: Settings, run_date: date | str, shard: int, n_shards: int) -> dict[str, Any]:
    """Score and re-rank one user shard of every enabled arm's candidates for ``run_date``
    (``arms.enabled``, narrowed by ``rerank.arms`` when set).

    Writes ``scored``, ``reranked`` and ``list_metrics`` parts ``<arm>/shard-NNNN``; rerunning rewrites
    the same parts with the same bytes. Returns counts and the mean list metrics per arm.
    """
    from deepcuts.pipelines.storage import Lake, as_run_date

    run_date = as_run_date(run_date)
    if not 0 <= shard < n_shards:
        raise ScoreError(f"shard {shard} is outside 0..{n_shards - 1}; pass 0 <= shard < n_shards")
    lake = Lake(settings.home)
    suffix = f"shard-{shard:04d}"
    parts = [p for p in lake.parts(Dataset.CANDIDATES, run_date) if p.rsplit("/", 1)[-1] == suffix]
    # only tonight's arms (the plan, arms.enabled): a part left by an earlier run with more arms is
    # not scored, so it cannot be served
    wanted = set(settings.rerank.arms) or set(settings.arms.enabled)
    wanted &= set(settings.arms.enabled)
    arms = sorted(a for a in (p.rsplit("/", 1)[0] for p in parts) if a in wanted)
    if not arms:
        raise ScoreError(
            f"no candidates for shard {shard} on {run_date} in "
            f"{lake.partition_dir(Dataset.CANDIDATES, run_date)} "
            f"(arms filter: {sorted(wanted)}); run the candidates step for this shard first"
        )
    lake.require_complete(Dataset.CANDIDATES, run_date, scope=suffix)  # all arms of the shard
    lake.require_inputs(run_date, Dataset.INTERACTIONS, Dataset.ITEMS)
    items = lake.read_df(Dataset.ITEMS, run_date)
    factors = load_item_factors(lake, run_date)
    ctx = shard_context(settings, lake, run_date, items, factors, ShardScope(shard, n_shards))
    summary: dict[str, Any] = {
        "run_date": run_date.isoformat(),
        "shard": shard,
        "n_shards": n_shards,
        "embedding": EMBEDDING_ARM if factors is not None else None,
        "arms": {},
    }
    # the shard's users are the same in every arm: their history summaries are computed once (not
    # with the whole history's matrix of the fallback: that holds every shard's users)
    every_user = UserFeatures.of_every_user(ctx) if ctx.scope is not None else None
    for arm in progress(arms, desc=f"score shard {shard}", total=len(arms)):
        part = shard_part(arm, shard)
        # only the columns process_arm reads (arm and run_date are the same on every row of a part)
        columns = [C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE]
        candidates = lake.read_df(Dataset.CANDIDATES, run_date, parts=[part], columns=columns)
        out = process_arm(ctx, candidates, arm, run_date, every_user)
        lake.write_table(Dataset.SCORED, run_date, _arrow(out.scored), part=part)
        lake.write_table(Dataset.RERANKED, run_date, _arrow(out.reranked), part=part)
        lake.write_table(Dataset.LIST_METRICS, run_date, _arrow(out.list_metrics), part=part)
        summary["arms"][arm] = {
            "users": int(out.list_metrics[C.USER_ID].nunique()),
            "scored_rows": len(out.scored),
            "reranked_rows": len(out.reranked),
            "filled_candidates": out.filled,
            "rerank_seconds": round(out.rerank_seconds, 3),
            **_metric_means(out.list_metrics),
        }
    lake.mark_all_complete(scope=suffix, shards=n_shards)  # scored, reranked, list_metrics: assign checks
    return summary


def _metric_means(frame: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    cols = [C.ILD, C.N_GENRES, C.LONG_TAIL_SHARE, C.MEAN_QUALITY, C.CALIBRATION_KL, C.NOVELTY]
    out: dict[str, dict[str, float | None]] = {}
    for source, group in frame.groupby(C.LIST_SOURCE, sort=True):
        means = group[cols].mean(numeric_only=True, skipna=True)
        out[str(source)] = {c: (None if pd.isna(v) else round(float(v), 4)) for c, v in means.items()}
    return out


# ------------------------------------------------------------------------------------------ evaluation
def rerank_transform(
    settings: Settings, train: pd.DataFrame, items: pd.DataFrame, length: int | None = None
) -> Callable[[str, pd.DataFrame], pd.DataFrame]:
    """A ``list_transform`` for :func:`deepcuts.pipelines.evaluate.evaluate_offline`: each arm's top
    candidates (user_id, item_id, rank, score) re-ranked against ``train`` -> (user_id, item_id, rank, score).

    ``length`` overrides ``rerank.list_length`` (the evaluation's k). The unexpectedness is the genre
    distance only (the evaluation does not keep the svd arm's factors); it does not affect the lists.
    """
    if length is not None:
        settings = settings.model_copy(
            update={"rerank": settings.rerank.model_copy(update={"list_length": int(length)})}
        )
    ctx = ScoringContext.build(settings, train, items)

    def transform(arm: str, candidates: pd.DataFrame) -> pd.DataFrame:
        out = process_arm(ctx, candidates, arm, _EVALUATION_DATE)
        return out.reranked[[C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE]]

    return transform
