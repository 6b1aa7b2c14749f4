"""The shard-local scoring context (catalog stats by bincounts, history of the shard's users only) gives
the same arrays and the same Parquet bytes as the context built from the whole history matrix."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deepcuts.contracts import C, Dataset
from deepcuts.models.recommenders.base import InteractionMatrix
from deepcuts.models.recommenders.item_stats import ItemStats
from deepcuts.pipelines import score
from deepcuts.pipelines.score import (
    ScoreError,
    ScoringContext,
    ShardScope,
    UserFeatures,
    catalog_stats,
    process_arm,
    score_shard,
    shard_context,
)
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings

RUN = date(2026, 3, 1)
N_SHARDS = 3
ARMS = ("svd", "long_tail")
GENRES = ["Drama", "Comedy", "Action", "Anime", "Horror", "Documentary"]
#: Catalog items nobody rates; an item rated but missing from the catalog; a candidate nobody knows.
UNRATED = (38, 39, 40)
RATED_NOT_IN_CATALOG = 50
UNKNOWN = 99
#: Users with candidates but no history (in every shard).
COLD = (31, 32, 33, 34)
T0 = datetime(2026, 2, 1, tzinfo=UTC)


def _interactions(rng: np.random.Generator, step: float = 0.5) -> pd.DataFrame:
    """Ratings of users 1..30 on a grid of ``step``, with repeated (user, item) pairs: a later re-rating,
    an earlier one (listed after the later row) and one at the very same time (the later row wins)."""
    rows = []
    for user in range(1, 31):
        rated = rng.choice(np.arange(1, 38), size=int(rng.integers(3, 15)), replace=False)
        for item in rated:
            rating = float(np.round(rng.uniform(1, 5) / step) * step)
            rows.append((user, int(item), rating, T0 + timedelta(hours=int(rng.integers(0, 500)))))
    rows += [(7, RATED_NOT_IN_CATALOG, 4.5, T0)]
    first = rows[0]
    rows += [
        (first[0], first[1], 1.0, first[3] + timedelta(days=30)),  # re-rated later: 1.0 wins
        (first[0], first[1], 5.0, first[3] - timedelta(days=30)),  # an older rating listed last
        (rows[5][0], rows[5][1], 2.0, rows[5][3]),  # same time: the row listed last wins
    ]
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, C.TS])
    return frame.astype({C.RATING: np.float32})


def _items() -> pd.DataFrame:
    ids = np.arange(1, 41)
    genres = [[GENRES[i % len(GENRES)], GENRES[(3 * i) % len(GENRES)]] for i in ids]
    return pd.DataFrame({C.ITEM_ID: ids, C.TITLE: [f"t{i}" for i in ids], C.GENRES: genres, C.YEAR: 2000})


def _lake(settings: Settings, interactions: pd.DataFrame) -> Lake:
    """A lake with the history, the catalog and candidates of two arms in ``N_SHARDS`` shards."""
    lake = Lake(settings.home)
    lake.write_table(Dataset.ITEMS, RUN, _items())
    lake.write_table(Dataset.INTERACTIONS, RUN, interactions)
    lake.mark_all_complete()
    rng = np.random.default_rng(11)
    pool = np.array([*range(1, 41), RATED_NOT_IN_CATALOG, UNKNOWN])
    for shard in range(N_SHARDS):
        users = [u for u in range(1, 35) if u % N_SHARDS == shard]
        for arm in ARMS:
            rows = []
            for user in users:
                picked = rng.choice(pool, size=int(rng.integers(3, 14)), replace=False)
                rows += [(user, int(i), r + 1, float(1.0 / (r + 1))) for r, i in enumerate(picked)]
            frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE])
            lake.write_table(
                Dataset.CANDIDATES,
                RUN,
                frame.assign(**{C.ARM: arm, C.RUN_DATE: RUN}),
                part=f"{arm}/shard-{shard:04d}",
            )
        lake.mark_complete(Dataset.CANDIDATES, RUN, f"shard-{shard:04d}", shards=N_SHARDS)
    return lake


@pytest.fixture
def short_lists(settings: Settings) -> Settings:
    return settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"list_length": 5})})


def _full_context(settings: Settings, lake: Lake) -> ScoringContext:
    inter = lake.read_df(Dataset.INTERACTIONS, RUN)
    return ScoringContext.build(settings, inter, lake.read_df(Dataset.ITEMS, RUN))


def _assert_stats_equal(got: ItemStats, want: ItemStats) -> None:
    for field in (
        "item_ids",
        "counts",
        "popularity_share",
        "quality",
        "is_long_tail",
        "popularity_percentile",
    ):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype, field
        np.testing.assert_array_equal(a, b, err_msg=field)
    assert got.global_mean == want.global_mean


def _shard_ctx(settings: Settings, lake: Lake, shard: int) -> ScoringContext:
    items = lake.read_df(Dataset.ITEMS, RUN)
    return shard_context(settings, lake, RUN, items, None, ShardScope(shard, N_SHARDS))


def test_shard_context_has_the_arrays_of_the_full_one(short_lists: Settings) -> None:
    lake = _lake(short_lists, _interactions(np.random.default_rng(5)))
    full = _full_context(short_lists, lake)
    for shard in range(N_SHARDS):
        ctx = _shard_ctx(short_lists, lake, shard)
        assert ctx.scope == ShardScope(shard, N_SHARDS)
        _assert_stats_equal(ctx.stats, full.stats)
        np.testing.assert_array_equal(ctx.history.item_ids, full.history.item_ids)
        for name in ("genres", "genre_unit", "novelty", "niche"):
            np.testing.assert_array_equal(getattr(ctx, name), getattr(full, name), err_msg=name)
        assert ctx.genre_names == full.genre_names
        # every user of the shard (the cold ones too) has the row of the full matrix, and only they
        users = np.array([u for u in range(1, 35) if u % N_SHARDS == shard])
        np.testing.assert_array_equal(
            ctx.history.user_ids, full.history.user_ids[full.history.user_ids % 3 == shard]
        )
        mine, theirs = ctx.history.user_rows(users), full.history.user_rows(users)
        np.testing.assert_array_equal(mine >= 0, theirs >= 0)
        have = mine >= 0
        a, b = ctx.history.ratings[mine[have]], full.history.ratings[theirs[have]]
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.data, b.data)
    # the edge cases are there: unrated catalog items, an item rated outside the catalog, cold users
    assert (full.stats.counts[full.history.item_columns(np.array(UNRATED))] == 0).all()
    assert RATED_NOT_IN_CATALOG in full.history.item_ids
    assert (full.history.user_rows(np.array(COLD)) == -1).all()


def test_user_features_taken_from_every_user_equal_those_built_per_arm(short_lists: Settings) -> None:
    lake = _lake(short_lists, _interactions(np.random.default_rng(5)))
    factors = (np.arange(1, 41), np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32))
    items = lake.read_df(Dataset.ITEMS, RUN)
    for shard in range(N_SHARDS):
        ctx = shard_context(short_lists, lake, RUN, items, factors, ShardScope(shard, N_SHARDS))
        every = UserFeatures.of_every_user(ctx)
        # shuffled users, repeats, cold users and one nobody has heard of (1000)
        users = np.array([u for u in (*range(34, 0, -1), 1000, 2, 31) if u % N_SHARDS == shard])
        got, want = every.of(ctx, users), UserFeatures.build(ctx, users)
        for name in ("profile", "genre_mean_unit", "factor_mean_unit", "niche_appetite", "has_history"):
            a, b = getattr(got, name), getattr(want, name)
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert not got.has_history[np.isin(users, [*COLD, 1000])].any()
        assert got.has_history[~np.isin(users, [*COLD, 1000])].all()


def test_repeated_pairs_count_once_with_the_latest_rating(short_lists: Settings) -> None:
    inter = _interactions(np.random.default_rng(5))
    lake = _lake(short_lists, inter)
    stats = _shard_ctx(short_lists, lake, 0).stats
    user, item = int(inter.iloc[0][C.USER_ID]), int(inter.iloc[0][C.ITEM_ID])
    col = int(np.searchsorted(stats.item_ids, item))
    pairs = inter.drop_duplicates([C.USER_ID, C.ITEM_ID])
    assert stats.counts[col] == int((pairs[C.ITEM_ID] == item).sum())
    assert _full_context(short_lists, lake).history.ratings[
        int(np.searchsorted(np.unique(inter[C.USER_ID]), user)), col
    ] == pytest.approx(1.0)


def _parts(lake: Lake) -> dict[str, bytes]:
    out = {}
    for dataset in (Dataset.SCORED, Dataset.RERANKED, Dataset.LIST_METRICS):
        for part in lake.parts(dataset, RUN):
            out[f"{dataset.value}/{part}"] = lake.read_bytes(dataset, RUN, part + ".parquet")
    return out


def _full_shard_context(
    settings: Settings, lake: Lake, run_date: date, items: pd.DataFrame, factors: Any, scope: ShardScope
) -> ScoringContext:
    return ScoringContext.build(settings, lake.read_df(Dataset.INTERACTIONS, run_date), items, factors)


@pytest.mark.parametrize("step", [0.5, 0.1], ids=["half-stars", "off-grid-fallback"])
def test_score_shard_writes_the_bytes_of_the_full_context(
    short_lists: Settings, monkeypatch: pytest.MonkeyPatch, step: float
) -> None:
    lake = _lake(short_lists, _interactions(np.random.default_rng(8), step))
    for shard in range(N_SHARDS):
        score_shard(short_lists, RUN, shard, N_SHARDS)
    shard_local = _parts(lake)
    assert len(shard_local) == 3 * N_SHARDS * len(ARMS)
    with monkeypatch.context() as patched:
        patched.setattr(score, "shard_context", _full_shard_context)
        for shard in range(N_SHARDS):
            score_shard(short_lists, RUN, shard, N_SHARDS)
    assert _parts(lake) == shard_local


def test_off_grid_ratings_take_the_full_path(short_lists: Settings) -> None:
    inter = _interactions(np.random.default_rng(8), step=0.1)
    table = pa.Table.from_pandas(inter[[C.USER_ID, C.ITEM_ID, C.RATING]], preserve_index=False)
    scope = ShardScope(0, N_SHARDS)
    assert ScoringContext.build_for_shard(short_lists, table, _items(), None, scope, _no_times) is None


def _no_times(rows: np.ndarray) -> pa.Array:
    raise AssertionError("the time column is read only when a (user, item) pair is rated more than once")


def _random_history(seed: int, item_scale: int, user_shift: int) -> pd.DataFrame:
    """Random ratings on a quarter-star grid with many repeated pairs and tied times; item ids
    ``item_scale`` apart (a large scale: ids too sparse to be their own bincount slots) and user ids
    shifted by ``user_shift`` (negative ids are coded before they form pair keys)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    frame = pd.DataFrame(
        {
            C.USER_ID: rng.integers(0, 25, n) + user_shift,
            C.ITEM_ID: rng.integers(3, 60, n) * item_scale,
            C.RATING: (rng.integers(0, 21, n) / 4.0).astype(np.float32),
            C.TS: T0 + pd.to_timedelta(rng.integers(0, 5, n), unit="h"),
        }
    )
    return frame


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("item_scale", "user_shift"), [(1, 0), (10**12, -12)], ids=["compact", "sparse"])
def test_catalog_stats_equal_item_stats_of_the_whole_matrix(
    seed: int, item_scale: int, user_shift: int
) -> None:
    frame = _random_history(seed, item_scale, user_shift)
    # some catalog ids nobody rated, some rated ids outside the catalog
    catalog = np.arange(0, 40 + seed, dtype=np.int64) * item_scale
    table = pa.Table.from_pandas(frame[[C.USER_ID, C.ITEM_ID, C.RATING]], preserve_index=False)
    got = catalog_stats(table, catalog, lambda rows: frame.iloc[rows], 10.0, 0.8)
    want = ItemStats.from_matrix(
        InteractionMatrix.from_frames(frame, pd.DataFrame({C.ITEM_ID: catalog})), 10.0, 0.8
    )
    assert got is not None
    assert got.has_repeats == frame.duplicated([C.USER_ID, C.ITEM_ID]).any()
    _assert_stats_equal(got.stats, want)


def test_catalog_stats_fall_back_when_float32_sums_could_round() -> None:
    many = 2**23  # half stars: 5.0 * 2**23 * 2 >= 2**24, a float32 running sum could round
    table = pa.table(
        {
            C.USER_ID: np.arange(many, dtype=np.int64),
            C.ITEM_ID: np.zeros(many, dtype=np.int64),
            C.RATING: np.full(many, 4.5, dtype=np.float32),
        }
    )
    assert catalog_stats(table, np.zeros(0, np.int64), _no_times, 10.0, 0.8) is None
    nan = table.set_column(2, C.RATING, pa.array(np.full(many, np.nan, dtype=np.float32)))
    assert catalog_stats(nan.slice(0, 5), np.zeros(0, np.int64), _no_times, 10.0, 0.8) is None


def test_candidates_of_another_shard_count_are_refused(short_lists: Settings) -> None:
    lake = _lake(short_lists, _interactions(np.random.default_rng(5)))
    ctx = _shard_ctx(short_lists, lake, 1)
    cands = lake.read_df(Dataset.CANDIDATES, RUN, parts=["svd/shard-0000"])
    with pytest.raises(ScoreError, match="another shard count"):
        process_arm(ctx, cands, "svd", RUN)
