"""Deep-cut scores (hand-computed) and the ``score`` step on a tiny lake."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from deepcuts.contracts import C, Dataset
from deepcuts.metrics import GenreMatrix, intra_list_distance
from deepcuts.models.reranking import deepcut_scores as ds
from deepcuts.pipelines.score import ScoreError, ScoringContext, process_arm, reasons, score_shard
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings

RUN = date(2026, 3, 1)


# ------------------------------------------------------------------------------ per candidate
def test_novelty_is_self_information_with_unrated_items_counted_once() -> None:
    # share 1/4 -> 2 bits; an unrated item of N = 8 interactions counts as 1/8 -> 3 bits
    np.testing.assert_allclose(ds.novelty([0.25, 0.0, 1.0], 8), [2.0, 3.0, 0.0])


def test_relevance_is_min_max_per_user() -> None:
    scores = np.array([[2.0, 4.0, 3.0], [1.0, 1.0, np.nan], [5.0, 0.0, 0.0]])
    valid = np.array([[True, True, True], [True, True, False], [True, False, False]])
    out = ds.normalise_relevance(scores, valid)
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.5], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_genre_profile_is_steck_mean_of_item_distributions() -> None:
    # history: item 0 = {A}, item 1 = {A, B}  ->  p = ((1 + 1/2) / 2, (1/2) / 2) = (0.75, 0.25)
    genres = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    history = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]], dtype=np.float32))
    np.testing.assert_allclose(ds.genre_profiles(history, genres), [[0.75, 0.25], [0.0, 0.0]])


def test_unexpectedness_is_mean_cosine_distance_to_the_history() -> None:
    # history {A}, {B}: distances of {A} are 0 and 1 -> 0.5; of {C}: 1 and 1 -> 1;
    # of {A, B}: 1 - 1/sqrt2 to both -> 0.2929
    genres = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    unit = ds.unit_rows(genres)
    history = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=np.float32))
    mean = ds.history_means(history, unit)
    got = ds.cosine_unexpectedness(np.repeat(mean, 3, axis=0), unit[[0, 2, 3]])
    np.testing.assert_allclose(got, [0.5, 1.0, 1 - 1 / math.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(ds.combined_unexpectedness([0.5], [0.1], 0.25), [0.4])
    np.testing.assert_allclose(ds.combined_unexpectedness([0.5], None, 0.25), [0.5])


def test_niche_flags_are_case_insensitive() -> None:
    genres = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    assert ds.niche_flags(genres, ("anime", "Drama"), ("Anime",)).tolist() == [True, False, True]
    assert ds.niche_flags(genres, ("X", "Y"), ("Anime",)).tolist() == [False, False, False]


# ------------------------------------------------------------------------------ per list
def test_ild_by_hand_and_equal_to_the_offline_metric() -> None:
    # list 1: {A}, {A}, {B}: cosines 1, 0, 0 -> ILD = 1 - 1/3; list 2: {A}, {A, B}: 1 - 1/sqrt2
    items = pd.DataFrame({C.ITEM_ID: [1, 2, 3, 4], C.GENRES: [["A"], ["A"], ["B"], ["A", "B"]]})
    dense, names = ds.genre_matrix(items, [1, 2, 3, 4])
    assert names == ("A", "B")
    unit = ds.unit_rows(dense)
    lists = np.array([[0, 1, 2], [0, 3, 0]])
    mask = np.array([[True, True, True], [True, True, False]])
    ild = ds.intra_list_diversity(unit[lists], mask)
    np.testing.assert_allclose(ild, [2 / 3, 1 - 1 / math.sqrt(2)], rtol=1e-6)
    long = pd.DataFrame({C.USER_ID: [1, 1, 1, 2, 2], C.ITEM_ID: [1, 2, 3, 1, 4], C.RANK: [1, 2, 3, 1, 2]})
    assert float(np.nanmean(ild)) == pytest.approx(intra_list_distance(long, GenreMatrix.from_items(items)))
    assert np.isnan(ds.intra_list_diversity(unit[[[0, 1]]], np.array([[True, False]])))[0]
    assert ds.distinct_genres(dense[lists], mask).tolist() == [2, 2]


def test_calibration_kl_by_hand() -> None:
    # p = (0.5, 0.5); list {A}: q~ = (0.995, 0.005) -> 0.5 ln(0.5/0.995) + 0.5 ln(0.5/0.005)
    p = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])
    dist = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 1]], [[1, 0], [0, 1]]], dtype=np.float32)
    mask = np.array([[True, False], [True, True], [True, True]])
    expected = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(100)
    np.testing.assert_allclose(ds.calibration_kl(p, dist, mask, 0.01), [expected, 0.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="calibration alpha"):
        ds.calibration_kl(p, dist, mask, 0.0)


def test_masked_mean() -> None:
    out = ds.masked_mean([[1.0, 3.0, 100.0], [2.0, 0.0, 0.0]], [[True, True, False], [False, False, False]])
    assert out[0] == pytest.approx(2.0) and np.isnan(out[1])


# ------------------------------------------------------------------------------ tiny lake
def _world(settings: Settings) -> Lake:
    """12 items (items 10, 11 Anime and rarely rated), 6 users, candidates of two arms in one shard."""
    lake = Lake(settings.home)
    genres = [
        ["Drama"], ["Comedy"], ["Drama", "Romance"], ["Action"], ["Action", "Sci-Fi"], ["Comedy"],
        ["Thriller"], ["Horror"], ["Documentary"], ["Western"], ["Anime"], ["Anime", "Drama"],
    ]  # fmt: skip
    items = pd.DataFrame(
        {C.ITEM_ID: np.arange(1, 13), C.TITLE: [f"t{i}" for i in range(12)], C.GENRES: genres, C.YEAR: 2000}
    )
    rng = np.random.default_rng(3)
    rows = []
    for user in range(1, 7):
        for item in range(1, 11):
            if rng.random() < 0.6 or item <= 3:
                rows.append((user, item, float(rng.integers(3, 6))))
    rows += [(1, 11, 5.0), (2, 12, 4.0)]
    ts = datetime(2026, 2, 1, tzinfo=UTC)
    inter = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING]).assign(**{C.TS: ts})
    lake.write_table(Dataset.ITEMS, RUN, items)
    lake.write_table(Dataset.INTERACTIONS, RUN, inter)
    lake.mark_all_complete()  # as ingest does when it finishes
    for arm, offset in (("svd", 0), ("long_tail", 5)):
        cands = []
        for user in range(1, 8):  # user 7 has no history (cold)
            order = np.roll(np.arange(1, 13), user + offset)
            cands += [(user, int(item), rank + 1, 1.0 / (rank + 1)) for rank, item in enumerate(order)]
        frame = pd.DataFrame(cands, columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE])
        frame = frame.assign(**{C.ARM: arm, C.RUN_DATE: RUN})
        lake.write_table(Dataset.CANDIDATES, RUN, frame, part=f"{arm}/shard-0000")
    lake.mark_complete(Dataset.CANDIDATES, RUN, "shard-0000")  # as candidates_shard does when it finishes
    return lake


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"list_length": 5})})


def test_score_shard_writes_scores_lists_and_metrics(small_settings: Settings) -> None:
    lake = _world(small_settings)
    out = score_shard(small_settings, RUN, 0, 1)
    assert sorted(out["arms"]) == ["long_tail", "svd"]
    assert out["embedding"] is None
    for arm in ("svd", "long_tail"):
        part = [f"{arm}/shard-0000"]
        cands = lake.read_df(Dataset.CANDIDATES, RUN, parts=part)
        scored = lake.read_df(Dataset.SCORED, RUN, parts=part)
        reranked = lake.read_df(Dataset.RERANKED, RUN, parts=part)
        metrics = lake.read_df(Dataset.LIST_METRICS, RUN, parts=part)
        assert len(scored) == len(cands)
        assert scored[C.UNEXPECTEDNESS_EMBEDDING].isna().all()
        assert scored[C.RELEVANCE].between(0, 1).all() and scored[C.SERENDIPITY].between(0, 1).all()
        # every user gets a list of 5 distinct items drawn from their candidates, ranked 1..5
        assert reranked.groupby(C.USER_ID).size().eq(5).all() and reranked[C.USER_ID].nunique() == 7
        assert not reranked.duplicated([C.USER_ID, C.ITEM_ID]).any()
        pairs = set(zip(cands[C.USER_ID], cands[C.ITEM_ID], strict=True))
        assert all(p in pairs for p in zip(reranked[C.USER_ID], reranked[C.ITEM_ID], strict=True))
        assert reranked.groupby(C.USER_ID)[C.RANK].apply(sorted).map(list).eq([[1, 2, 3, 4, 5]] * 7).all()
        assert (
            reranked[C.REASON]
            .str.fullmatch(r"(fill|hidden_gem|deep_cut|new_genre|top_pick)\|genre=[^|=]+\|rating=\d\.\d")
            .all()
        )
        assert len(metrics) == 2 * 7 and set(metrics[C.LIST_SOURCE]) == {"candidates", "reranked"}
    # the cold user (7) has no profile: calibration 0, genre unexpectedness 1
    scored = lake.read_df(Dataset.SCORED, RUN, parts=["svd/shard-0000"])
    assert scored.loc[scored[C.USER_ID] == 7, C.UNEXPECTEDNESS_GENRE].eq(1.0).all()


def test_score_shard_is_idempotent(small_settings: Settings) -> None:
    lake = _world(small_settings)
    score_shard(small_settings, RUN, 0, 1)
    first = {d: lake.read_bytes(d, RUN, "svd/shard-0000.parquet") for d in (Dataset.SCORED, Dataset.RERANKED)}
    score_shard(small_settings, RUN, 0, 1)
    for dataset, payload in first.items():
        assert lake.read_bytes(dataset, RUN, "svd/shard-0000.parquet") == payload


def test_score_shard_without_candidates_says_what_to_run(small_settings: Settings) -> None:
    _world(small_settings)
    with pytest.raises(ScoreError, match="run the candidates step"):
        score_shard(small_settings, RUN, 1, 2)
    with pytest.raises(ScoreError, match="outside"):
        score_shard(small_settings, RUN, 2, 2)


def test_embedding_distance_from_item_factors(small_settings: Settings) -> None:
    lake = _world(small_settings)
    items = lake.read_df(Dataset.ITEMS, RUN)
    inter = lake.read_df(Dataset.INTERACTIONS, RUN)
    # two-dimensional factors: items 1..6 along x, 7..12 along y
    factors = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 6, dtype=np.float32)
    ctx = ScoringContext.build(small_settings, inter, items, (np.arange(1, 13), factors))
    cands = lake.read_df(Dataset.CANDIDATES, RUN, parts=["svd/shard-0000"])
    scored = process_arm(ctx, cands, "svd", RUN).scored
    assert scored[C.UNEXPECTEDNESS_EMBEDDING].notna().all()
    assert scored[C.UNEXPECTEDNESS_EMBEDDING].between(0, 1).all()
    w = small_settings.rerank.embedding_weight
    expected = (1 - w) * scored[C.UNEXPECTEDNESS_GENRE] + w * scored[C.UNEXPECTEDNESS_EMBEDDING]
    np.testing.assert_allclose(scored[C.UNEXPECTEDNESS], expected, rtol=1e-5)


def test_reason_for_a_hidden_gem_in_anime(small_settings: Settings) -> None:
    lake = _world(small_settings)
    ctx = ScoringContext.build(
        small_settings, lake.read_df(Dataset.INTERACTIONS, RUN), lake.read_df(Dataset.ITEMS, RUN)
    )
    row = int(ctx.history.item_columns([12])[0])  # Anime + Drama, rated once (long tail)
    assert ctx.stats.is_long_tail[row]
    object.__setattr__(ctx.stats, "quality", ctx.stats.quality.copy())
    ctx.stats.quality[row] = 4.44
    drama = ctx.genre_names.index("Drama")
    profile = np.zeros((1, len(ctx.genre_names)), np.float32)
    profile[0, drama] = 1.0
    assert reasons(ctx, np.array([row]), profile).tolist() == ["hidden_gem|genre=Anime|rating=4.4"]
    ctx.stats.quality[row] = 3.0
    assert reasons(ctx, np.array([row]), profile).tolist() == ["deep_cut|genre=Anime|rating=3.0"]


def test_score_shard_uses_the_svd_artefact_for_the_embedding_distance(small_settings: Settings) -> None:
    from deepcuts.pipelines.train import train_arm

    lake = _world(small_settings)
    train_arm(small_settings, RUN, "svd")
    out = score_shard(small_settings, RUN, 0, 1)
    assert out["embedding"] == "svd"
    scored = lake.read_df(Dataset.SCORED, RUN, parts=["long_tail/shard-0000"])
    known = scored[scored[C.USER_ID] != 7]  # the cold user has no history to be distant from
    assert known[C.UNEXPECTEDNESS_EMBEDDING].notna().all()
    assert known[C.UNEXPECTEDNESS_EMBEDDING].between(0, 1).all()


def test_rerank_transform_serves_deep_cuts_in_the_offline_evaluation(small_settings: Settings) -> None:
    from deepcuts.models.recommenders.popularity import PopularityRecommender
    from deepcuts.pipelines.evaluate import evaluate_offline
    from deepcuts.pipelines.score import rerank_transform

    lake = _world(small_settings)
    train = lake.read_df(Dataset.INTERACTIONS, RUN)
    items = lake.read_df(Dataset.ITEMS, RUN)
    seen = set(zip(train[C.USER_ID], train[C.ITEM_ID], strict=True))
    test = pd.DataFrame(
        [(u, i, 4.0) for u in range(1, 7) for i in range(1, 13) if (u, i) not in seen],
        columns=[C.USER_ID, C.ITEM_ID, C.RATING],
    )
    result = evaluate_offline(
        train,
        test,
        items,
        {"popularity": lambda: PopularityRecommender(None, seed=1)},
        k=4,
        list_transform=rerank_transform(small_settings, train, items, length=4),
        n_candidates=12,
    )
    raw, served = result["arms"]["popularity"], result["served"]["popularity"]
    assert set(served) >= {"ndcg@4", "long_tail_share", "genres_per_list", "transform_seconds"}
    assert served["catalog_coverage"] >= raw["catalog_coverage"]
    # the transform alone: 35-40 % of 4 items has no integer, so 2 long-tail items (the count nearest
    # the band's middle), relaxed to what each user's candidates hold
    transform = rerank_transform(small_settings, train, items, length=4)
    cands = PopularityRecommender(None, seed=1).fit(train, items).recommend(np.arange(1, 7), 12)
    lists = transform("popularity", cands)
    sizes = lists.groupby(C.USER_ID).size()
    assert sizes.eq(cands.groupby(C.USER_ID).size().clip(upper=4)).all()
    ctx = ScoringContext.build(small_settings, train, items)
    tail_ids = set(ctx.history.item_ids[ctx.stats.is_long_tail].tolist())
    for user, group in cands.groupby(C.USER_ID):
        n_tail = int(group[C.ITEM_ID].isin(tail_ids).sum())
        length = min(4, len(group))
        band = {1: (0, 0), 2: (1, 1), 3: (1, 1), 4: (2, 2)}[length]  # RerankParams.long_tail_counts
        lo, hi = min(band[0], n_tail), max(band[1], length - (len(group) - n_tail))
        got = int(lists.loc[lists[C.USER_ID] == user, C.ITEM_ID].isin(tail_ids).sum())
        assert lo <= got <= hi


def test_catalog_without_genres_still_reranks(small_settings: Settings) -> None:
    lake = _world(small_settings)
    items = lake.read_df(Dataset.ITEMS, RUN)
    items[C.GENRES] = [[] for _ in range(len(items))]
    ctx = ScoringContext.build(small_settings, lake.read_df(Dataset.INTERACTIONS, RUN), items)
    assert ctx.genres.shape == (12, 0)
    out = process_arm(ctx, lake.read_df(Dataset.CANDIDATES, RUN, parts=["svd/shard-0000"]), "svd", RUN)
    assert out.reranked.groupby(C.USER_ID).size().eq(5).all()
    assert out.reranked[C.REASON].str.contains("genre=none").all()
    assert out.list_metrics[C.N_GENRES].eq(0).all()


def test_short_candidate_lists_are_topped_up_with_popular_unrated_items(small_settings: Settings) -> None:
    lake = _world(small_settings)
    inter = lake.read_df(Dataset.INTERACTIONS, RUN)
    ctx = ScoringContext.build(small_settings, inter, lake.read_df(Dataset.ITEMS, RUN))
    # user 1 has two candidates, user 7 (no history) one: the lists need 5 items
    cands = pd.DataFrame(
        {C.USER_ID: [1, 1, 7], C.ITEM_ID: [11, 12, 12], C.RANK: [1, 2, 1], C.SCORE: [0.9, 0.8, 0.5]}
    )
    out = process_arm(ctx, cands, "long_tail", RUN)
    seen_1 = set(inter.loc[inter[C.USER_ID] == 1, C.ITEM_ID])
    fillable_1 = len(set(range(1, 13)) - seen_1 - {11, 12})  # the tiny catalog may run out
    assert out.filled == min(3, fillable_1) + 4
    assert out.reranked.groupby(C.USER_ID).size().to_dict() == {1: 2 + min(3, fillable_1), 7: 5}
    assert len(out.scored) == 3  # filled items are not the arm's candidates
    user_1 = out.reranked[out.reranked[C.USER_ID] == 1]
    assert {11, 12} <= set(user_1[C.ITEM_ID])
    filled = user_1[~user_1[C.ITEM_ID].isin([11, 12])]
    assert not seen_1 & set(filled[C.ITEM_ID])  # never an item the user rated
    assert filled[C.REASON].str.startswith("fill|").all()
    # the arm's own top-L in list_metrics counts only its own candidates
    own = out.list_metrics[out.list_metrics[C.LIST_SOURCE] == "candidates"].set_index(C.USER_ID)
    assert own.loc[1, C.N_ITEMS] == 2 and own.loc[7, C.N_ITEMS] == 1
    off = small_settings.model_copy(
        update={"rerank": small_settings.rerank.model_copy(update={"fill_short_lists": False})}
    )
    ctx_off = ScoringContext.build(off, inter, lake.read_df(Dataset.ITEMS, RUN))
    short = process_arm(ctx_off, cands, "long_tail", RUN)
    assert short.filled == 0 and short.reranked.groupby(C.USER_ID).size().to_dict() == {1: 2, 7: 1}


def test_candidate_block_is_the_same_from_a_shuffled_frame() -> None:
    """The pivot skips its sort when the candidates come ordered by (user, rank), as the candidates
    step writes them; any other order gives the same block."""
    from deepcuts.models.recommenders.base import InteractionMatrix
    from deepcuts.pipelines.score import CandidateBlock

    rng = np.random.default_rng(3)
    history = InteractionMatrix.from_frames(
        pd.DataFrame({C.USER_ID: [1, 2, 5], C.ITEM_ID: [10, 11, 12], C.RATING: [4.0, 3.0, 5.0]}),
        pd.DataFrame({C.ITEM_ID: np.arange(10, 30)}),
    )
    users = np.repeat([5, 1, 2, 7], [6, 4, 5, 3])
    ordered = pd.DataFrame(
        {
            C.USER_ID: np.sort(users),
            C.ITEM_ID: rng.choice(np.arange(10, 32), users.size),  # 30, 31: not in the catalog
            C.RANK: np.concatenate([np.arange(1, n + 1) for n in (4, 5, 6, 3)]).astype(np.int32),
            C.SCORE: rng.random(users.size).astype(np.float32),
        }
    )
    want = CandidateBlock.from_frame(ordered, history)
    got = CandidateBlock.from_frame(ordered.sample(frac=1.0, random_state=1), history)
    for field in ("users", "columns", "scores", "ranks"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    assert got.n_unknown_items == want.n_unknown_items
    np.testing.assert_array_equal(want.users, [1, 2, 5, 7])
    assert want.columns.shape[1] == 6
