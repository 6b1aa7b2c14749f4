"""Hand-computed checks of each arm's math on matrices small enough to work out on paper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from deepcuts.contracts import C
from deepcuts.models.recommenders.base import InteractionMatrix
from deepcuts.models.recommenders.graph import rp3beta_weights
from deepcuts.models.recommenders.item_cf import (
    ItemCFRecommender,
    ease_weights,
    shrunk_cosine_topk,
    symmetric_from_lower,
)
from deepcuts.models.recommenders.item_stats import (
    ItemStats,
    bayesian_mean,
    long_tail_mask,
    popularity_percentile,
)
from deepcuts.models.recommenders.lightfm_warp import genre_feature_matrix
from deepcuts.models.recommenders.long_tail import LongTailRecommender, normalise_rows, scale_floor
from deepcuts.models.recommenders.popularity import PopularityRecommender
from deepcuts.models.recommenders.serendipity import SerendipityRecommender
from deepcuts.models.recommenders.svd import SVDRecommender
from deepcuts.settings import (
    ItemCFSettings,
    LongTailSettings,
    QualitySettings,
    SerendipitySettings,
    SVDSettings,
)


def frame(triples: list[tuple[int, int, float]]) -> pd.DataFrame:
    out = pd.DataFrame(triples, columns=[C.USER_ID, C.ITEM_ID, C.RATING])
    out[C.RATING] = out[C.RATING].astype(np.float32)
    return out


def items_frame(genres: dict[int, list[str]]) -> pd.DataFrame:
    return pd.DataFrame({C.ITEM_ID: list(genres), C.GENRES: list(genres.values())})


# ------------------------------------------------------------------------------------------ item stats
def test_bayesian_mean_by_hand() -> None:
    # (10 + 2*3) / (2 + 2) = 4; (5 + 6) / (1 + 2) = 11/3; unrated -> the prior mean
    got = bayesian_mean([10.0, 5.0, 0.0], [2, 1, 0], prior_mean=3.0, prior_weight=2.0)
    np.testing.assert_allclose(got, [4.0, 11 / 3, 3.0], rtol=1e-6)
    with pytest.raises(ValueError, match="prior_weight"):
        bayesian_mean([1.0], [1], 3.0, 0.0)


def test_long_tail_mask_by_hand() -> None:
    # counts 6, 3, 1, 0 of 10: the head holding 80% is {6, 3} (9/10 >= 0.8), the rest is tail
    assert long_tail_mask([6, 3, 1, 0], 0.8).tolist() == [False, False, True, True]
    # exactly 50%: the first item alone reaches it
    assert long_tail_mask([5, 3, 2], 0.5).tolist() == [False, True, True]
    # ties are broken by index: the earlier of two equal items is in the head
    assert long_tail_mask([2, 2], 0.5).tolist() == [False, True]
    assert long_tail_mask([0, 0], 0.8).tolist() == [True, True]


def test_popularity_percentile_by_hand() -> None:
    # mid-rank: counts 1, 1, 3 -> (0 + 0.5*2)/3, same, (2 + 0.5)/3
    np.testing.assert_allclose(popularity_percentile([1, 1, 3]), [1 / 3, 1 / 3, 2.5 / 3], rtol=1e-6)


def test_item_stats_from_frames() -> None:
    interactions = frame([(1, 10, 5.0), (2, 10, 3.0), (1, 20, 1.0), (3, 10, 4.0)])
    stats = ItemStats.from_frames(interactions, items_frame({10: [], 20: [], 30: []}), 1.0, 0.5)
    assert stats.item_ids.tolist() == [10, 20, 30]
    assert stats.counts.tolist() == [3, 1, 0]
    mu = 13.0 / 4
    assert stats.global_mean == pytest.approx(mu)
    np.testing.assert_allclose(stats.quality, [(12 + mu) / 4, (1 + mu) / 2, mu], rtol=1e-6)
    np.testing.assert_allclose(stats.popularity_share, [0.75, 0.25, 0.0])
    assert stats.is_long_tail.tolist() == [False, True, True]
    frame_out = stats.to_frame()
    assert frame_out[C.QUALITY].tolist() == pytest.approx(stats.quality.tolist())


def test_item_stats_count_every_stored_rating_an_explicit_zero_too() -> None:
    interactions = frame([(1, 10, 0.0), (2, 10, 3.0), (2, 30, 0.0)])
    stats = ItemStats.from_frames(interactions, items_frame({10: [], 20: [], 30: []}), 1.0, 0.5)
    assert stats.counts.tolist() == [2, 0, 1]


@hsettings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.floats(0.05, 0.95))
def test_head_holds_at_least_head_share(counts: list[int], share: float) -> None:
    n = np.asarray(counts, dtype=float)
    tail = long_tail_mask(n, share)
    if n.sum() == 0:
        assert tail.all()
        return
    head = n[~tail].sum()
    assert head >= share * n.sum() - 1e-9
    # minimal: dropping the least popular head item falls below the share
    assert head - n[~tail].min() < share * n.sum() + 1e-9
    # every head item is at least as popular as every tail item
    if tail.any():
        assert n[~tail].min() >= n[tail].max()


# --------------------------------------------------------------------------------------------- item_cf
def test_shrunk_cosine_by_hand() -> None:
    # users x items; columns: item0 = (1,1,1), item1 = (1,0,1), item2 = (0,1,1)
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=np.float32))
    S = shrunk_cosine_topk(X, neighbours=2, shrinkage=0.0).toarray()
    s01 = 2 / math.sqrt(3 * 2)
    s12 = 1 / math.sqrt(2 * 2)
    expected = np.array([[0, s01, s01], [s01, 0, s12], [s01, s12, 0]])
    np.testing.assert_allclose(S, expected, rtol=1e-6)
    # shrinkage h: c / (n_i n_j + h)
    S = shrunk_cosine_topk(X, neighbours=2, shrinkage=1.0).toarray()
    assert S[0, 1] == pytest.approx(2 / (math.sqrt(6) + 1), rel=1e-6)
    # top-1 keeps the strongest neighbour only (ties broken deterministically)
    S1 = shrunk_cosine_topk(X, neighbours=1, shrinkage=0.0, block_items=2).toarray()
    assert (S1 > 0).sum(axis=1).tolist() == [1, 1, 1]
    assert S1[1, 0] == pytest.approx(s01) and S1[2, 0] == pytest.approx(s01)


def test_ease_two_items_by_hand() -> None:
    # G = X^T X = [[a, c], [c, b]]; B_01 = c / (a + lambda), B_10 = c / (b + lambda)
    X = sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 1], [0, 1], [1, 0]], dtype=np.float32))
    a, b, c, lam = 4.0, 3.0, 2.0, 1.5
    B = ease_weights(X, lam)
    np.testing.assert_allclose(B, [[0, c / (a + lam)], [c / (b + lam), 0]], rtol=1e-6)


def _ease_two_triangles(X: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE^R weights by the formula ease_weights replaced: np.tril(P) + np.tril(P, -1).T."""
    from scipy.linalg import lapack

    gram = np.asarray((X.T @ X).toarray(), dtype=np.float32)
    gram[np.diag_indices_from(gram)] += lam
    factor, _ = lapack.spotrf(gram, lower=1, overwrite_a=1)
    P, _ = lapack.spotri(factor, lower=1, overwrite_c=1)
    P = np.tril(P) + np.tril(P, -1).T
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B.astype(np.float32, copy=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_ease_weights_keep_the_bytes_of_the_two_triangle_formula(seed: int) -> None:
    # ease_weights mirrors potri's lower triangle in one pass; the artefact's bytes must stay those of
    # the formula it replaced, whose "+ 0" turns a -0.0 into +0.0 (an item sharing no user with the
    # others has exact zeros in P: the last column below)
    rng = np.random.default_rng(seed)
    dense = (rng.random((60, 25)) < 0.3) * rng.choice([0.5, 1.0], (60, 25))
    dense[:, -1] = 0.0
    X = sp.csr_matrix(dense.astype(np.float32))
    got, want = ease_weights(X, 7.0), _ease_two_triangles(X, 7.0)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("order", ["C", "F"])
def test_symmetric_from_lower_is_the_two_triangle_sum_bit_for_bit(order: str) -> None:
    # potri returns a Fortran-ordered matrix; signed zeros in either triangle must come out as the
    # sum made them (+0.0), and the upper triangle's values must not leak in
    rng = np.random.default_rng(3)
    P = rng.standard_normal((9, 9)).astype(np.float32)
    P[[4, 0, 7, 8], [2, 0, 7, 1]] = -0.0  # lower triangle and diagonal
    P[1, 5] = -0.0  # upper triangle
    P = np.asarray(P, order=order)
    want = np.tril(P) + np.tril(P, -1).T
    got = symmetric_from_lower(P)
    assert got.flags.c_contiguous and got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()
    assert not np.signbit(got[4, 2]) and not np.signbit(got[2, 4])


def test_item_cf_auto_switches_to_cosine_for_big_catalogs() -> None:
    interactions = frame([(1, 1, 5), (1, 2, 4), (2, 1, 3), (2, 3, 5), (3, 2, 2)])
    small = ItemCFRecommender(ItemCFSettings(ease_max_items=3)).fit(
        interactions, items_frame({1: [], 2: [], 3: []})
    )
    big = ItemCFRecommender(ItemCFSettings(ease_max_items=2)).fit(
        interactions, items_frame({1: [], 2: [], 3: []})
    )
    assert small.method_ == "ease" and big.method_ == "cosine"
    assert sp.issparse(big.weights_)


# ----------------------------------------------------------------------------------------------- graph
def test_rp3beta_transition_probabilities_by_hand() -> None:
    # X = [[1, 1], [1, 0]]: item degrees n = (2, 1), user degrees d = (2, 1)
    X = sp.csr_matrix(np.array([[1, 1], [1, 0]], dtype=np.float32))
    # alpha = 1, beta = 0: W_01 = (x_00 / n_0)(x_01 / d_0) = 1/2 * 1/2; W_10 = (1/1)(1/2)
    W = rp3beta_weights(X, alpha=1.0, beta=0.0, top_k=5).toarray()
    np.testing.assert_allclose(W, [[0, 0.25], [0.5, 0]], rtol=1e-6)
    # beta = 1 divides the arrival item by its degree: W_10 / n_0 = 0.25
    W = rp3beta_weights(X, alpha=1.0, beta=1.0, top_k=5).toarray()
    np.testing.assert_allclose(W, [[0, 0.25], [0.25, 0]], rtol=1e-6)
    # alpha = 2 squares each transition probability: W_01 = (1/2)^2 (1/2)^2
    W = rp3beta_weights(X, alpha=2.0, beta=0.0, top_k=5).toarray()
    assert W[0, 1] == pytest.approx(1 / 16)


@hsettings(max_examples=20, deadline=None)
@given(st.integers(0, 1000))
def test_p3_rows_are_probabilities(seed: int) -> None:
    # with alpha = 1, beta = 0 and no truncation, row i of W plus the return probability W_ii sums to 1
    rng = np.random.default_rng(seed)
    dense = (rng.random((12, 7)) < 0.4).astype(np.float32)
    dense[:, dense.sum(axis=0) == 0] = 0
    X = sp.csr_matrix(dense)
    W = rp3beta_weights(X, 1.0, 0.0, top_k=10, block_items=3).toarray()
    deg_u = np.maximum(dense.sum(axis=1), 1)
    deg_i = np.maximum(dense.sum(axis=0), 1)
    diag = ((dense / deg_i) * (dense / deg_u[:, None])).sum(axis=0)
    rated = dense.sum(axis=0) > 0
    np.testing.assert_allclose((W.sum(axis=1) + diag)[rated], 1.0, rtol=1e-5)


# ------------------------------------------------------------------------------------------ svd / pop
def test_svd_recovers_a_rank_one_block() -> None:
    # three users share items 1-3; user 4 has items 1-2 and should get item 3 first
    interactions = frame(
        [(u, i, 4.0) for u in (1, 2, 3) for i in (1, 2, 3)] + [(4, 1, 4.0), (4, 2, 4.0), (5, 4, 4.0)]
    )
    catalog = items_frame({1: [], 2: [], 3: [], 4: [], 5: []})
    model = SVDRecommender(SVDSettings(factors=1, popularity_exponent=0.0)).fit(interactions, catalog)
    assert model.recommend([4], 1)[C.ITEM_ID].tolist() == [3]


def test_popularity_scores_are_shares() -> None:
    interactions = frame([(1, 1, 5), (2, 1, 5), (3, 1, 1), (1, 2, 3)])
    model = PopularityRecommender().fit(interactions, items_frame({1: [], 2: [], 3: []}))
    recs = model.recommend([9], 3)
    assert recs[C.ITEM_ID].tolist() == [1, 2, 3]
    np.testing.assert_allclose(recs[C.SCORE], [0.75, 0.25, 0.0])


# ------------------------------------------------------------------------------------------ deep cuts
def test_scale_floor_and_normalise_rows() -> None:
    assert scale_floor(4.0, (1.0, 5.0)) == 4.0
    assert scale_floor(4.0, (0.5, 5.0)) == pytest.approx(0.5 + 3 * 4.5 / 4)
    with pytest.raises(ValueError, match="rating scale"):
        scale_floor(4.0, (5.0, 5.0))
    scores = np.array([[2.0, 4.0, 3.0, 10.0], [1.0, 1.0, -np.inf, 1.0]], dtype=np.float32)
    seen = np.array([[False, False, False, True], [False, False, False, False]])
    out = normalise_rows(scores, seen)
    np.testing.assert_allclose(out[0, :3], [0.0, 1.0, 0.5])
    assert out[0, 3] == -np.inf and out[1, 2] == -np.inf
    np.testing.assert_allclose(out[1, [0, 1, 3]], 0.0)


def _quality_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    # Items 1-3 are popular (head); 4 is a well-rated tail item; 5 is a badly rated tail item that the
    # relevance model likes for user 1 (it co-occurs with everything user 1 has); 6 is a tail item
    # unrelated to user 1's history (relevance 0 after normalisation).
    rows = [(u, i, 4.0) for u in range(2, 12) for i in (1, 2, 3)]
    rows += [(u, 5, 1.0) for u in range(2, 8)] + [(u, 4, 5.0) for u in (2, 3)]
    rows += [(1, 1, 4.0), (1, 2, 4.0), (12, 6, 5.0)]
    return frame(rows), items_frame({1: ["A"], 2: ["A"], 3: ["A"], 4: ["B"], 5: ["A"], 6: ["C"]})


def test_long_tail_floor_excludes_bad_items_and_boosts_the_tail() -> None:
    interactions, items = _quality_world()
    base = ItemCFRecommender(ItemCFSettings(ease_lambda=1.0))
    plain = ItemCFRecommender(ItemCFSettings(ease_lambda=1.0)).fit(interactions, items)
    assert 5 in plain.recommend([1], 3)[C.ITEM_ID].tolist()
    model = LongTailRecommender(
        LongTailSettings(head_share=0.8, tail_boost=100.0),
        base=base,
        quality=QualitySettings(prior_weight=1.0),
    ).fit(interactions, items)
    assert model.stats_ is not None
    # quality of item 5 = (6*1 + 1*mu) / 7 < 3.5: excluded whatever its relevance
    assert model.stats_.quality[4] < 3.5
    got = model.recommend([1], 3)[C.ITEM_ID].tolist()
    assert 5 not in got
    assert got[0] == 4  # the good tail item outranks the head item 3 under a large boost


def test_serendipity_unexpectedness_by_hand() -> None:
    interactions, items = _quality_world()
    model = SerendipityRecommender(
        SerendipitySettings(unexpectedness_weight=1.0, popularity_mix=0.0),
        base=ItemCFRecommender(ItemCFSettings(ease_lambda=1.0)),
        quality=QualitySettings(prior_weight=1.0),
    ).fit(interactions, items)
    # user 1's history is all genre A: distance 0 for A items, 1 for the B item
    u = model.unexpectedness(np.array([0]))
    np.testing.assert_allclose(u[0], [0, 0, 0, 1, 0, 1], atol=1e-6)
    mixed = SerendipityRecommender(
        SerendipitySettings(unexpectedness_weight=1.0, popularity_mix=1.0),
        base=ItemCFRecommender(ItemCFSettings(ease_lambda=1.0)),
    ).fit(interactions, items)
    assert mixed.stats_ is not None
    np.testing.assert_allclose(mixed.unexpectedness(np.array([0]))[0], 1 - mixed.stats_.popularity_percentile)
    assert 5 not in model.recommend([1], 3)[C.ITEM_ID].tolist()


def test_genre_features_are_identity_plus_genres_l1_normalised() -> None:
    items = items_frame({1: ["A", "B"], 2: [], 3: ["B", "B"]})
    F, vocab = genre_feature_matrix(items, np.array([1, 2, 3, 4]), genre_weight=1.0)
    assert vocab == ["A", "B"]
    expected = np.array(
        [[1 / 3, 0, 0, 0, 1 / 3, 1 / 3], [0, 1, 0, 0, 0, 0], [0, 0, 1 / 2, 0, 0, 1 / 2], [0, 0, 0, 1, 0, 0]]
    )
    np.testing.assert_allclose(F.toarray(), expected, rtol=1e-6)
    only_identity, none = genre_feature_matrix(items, np.array([1, 2]), 1.0, use_genres=False)
    assert none == [] and only_identity.shape == (2, 2)


def test_interaction_matrix_ids_line_up_with_stats() -> None:
    interactions, items = _quality_world()
    data = InteractionMatrix.from_frames(interactions, items)
    stats = ItemStats.from_matrix(data, 1.0, 0.8)
    assert stats.item_ids.tolist() == data.item_ids.tolist() == [1, 2, 3, 4, 5, 6]


def test_lightfm_update_budget_caps_the_epochs() -> None:
    from deepcuts.models.recommenders.lightfm_warp import LightFMRecommender
    from deepcuts.settings import LightFMSettings

    interactions, items = _quality_world()  # 40 positives
    capped = LightFMRecommender(LightFMSettings(components=4, epochs=20, max_updates=100)).fit(
        interactions, items
    )
    assert capped.epochs_run_ == 2  # 100 // 40
    floor = LightFMRecommender(LightFMSettings(components=4, epochs=20, max_updates=1)).fit(
        interactions, items
    )
    assert floor.epochs_run_ == 1
    full = LightFMRecommender(LightFMSettings(components=4, epochs=3)).fit(interactions, items)
    assert full.epochs_run_ == 3


@hsettings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 9), st.integers(1, 12))
def test_blockwise_item_item_matrices_do_not_depend_on_the_block_size(seed: int, k: int, block: int) -> None:
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix((rng.random((15, 10)) < 0.35).astype(np.float32))
    for build in (
        lambda b: shrunk_cosine_topk(X, neighbours=k, shrinkage=2.0, block_items=b),
        lambda b: rp3beta_weights(X, alpha=0.8, beta=0.6, top_k=k, block_items=b),
    ):
        one, many = build(block).toarray(), build(1000).toarray()
        np.testing.assert_allclose(one, many, rtol=1e-6)
        assert ((one > 0).sum(axis=1) <= k).all()
        assert np.all(np.diag(one) == 0)


def test_unrated_items_are_under_the_floor_of_the_deep_cut_arms() -> None:
    from tests.models.recommenders.world import block_world

    interactions, items = block_world()  # item 11 is in the catalog, never rated
    for cls, config in (
        (LongTailRecommender, LongTailSettings(tail_boost=50.0)),
        (SerendipityRecommender, None),
    ):
        model = cls(config, base=ItemCFRecommender(ItemCFSettings(ease_lambda=1.0))).fit(interactions, items)
        assert model.below_floor_ is not None and model.below_floor_[-1]
        recs = model.recommend(np.arange(1, 21), 50)
        # under the floor: ranked after every item above it, never before
        for _, user_recs in recs.groupby(C.USER_ID):
            ranked = user_recs.sort_values(C.RANK)[C.ITEM_ID].tolist()
            if 11 in ranked:
                assert ranked.index(11) == len(ranked) - 1 or all(
                    model.below_floor_[model.data.item_columns([i])[0]] for i in ranked[ranked.index(11) :]
                )
        lenient = cls(
            config,
            base=ItemCFRecommender(ItemCFSettings(ease_lambda=1.0)),
            quality=QualitySettings(min_ratings=0),
        ).fit(interactions, items)
        assert lenient.below_floor_ is not None and not lenient.below_floor_[-1]  # quality = the global mean


def test_deep_cut_arms_fill_lists_with_items_under_the_floor_last() -> None:
    """A user who has seen every item above the floor still gets a full list (publish needs full lists)."""
    interactions, items = _quality_world()
    for cls, config in (
        (LongTailRecommender, LongTailSettings(head_share=0.8, tail_boost=100.0)),
        (SerendipityRecommender, SerendipitySettings(unexpectedness_weight=1.0)),
    ):
        model = cls(
            config,
            base=ItemCFRecommender(ItemCFSettings(ease_lambda=1.0)),
            quality=QualitySettings(prior_weight=1.0),
        ).fit(interactions, items)
        got = model.recommend([1], 4)[C.ITEM_ID].tolist()  # user 1 has seen items 1 and 2 only
        assert sorted(got) == [3, 4, 5, 6]
        assert got[-1] == 5  # item 5 is under the floor: last, after every item above it


def _latest_rating_reference(frame: pd.DataFrame, items: pd.DataFrame) -> InteractionMatrix:
    """The rule from_frames implements, spelled out: rows sorted by time, the latest of each pair kept."""
    latest = frame.sort_values(C.TS, kind="stable").drop_duplicates([C.USER_ID, C.ITEM_ID], keep="last")
    item_ids = np.unique(
        np.concatenate([latest[C.ITEM_ID].to_numpy(np.int64), items[C.ITEM_ID].to_numpy(np.int64)])
    )
    user_ids = np.unique(latest[C.USER_ID].to_numpy(np.int64))
    rows = np.searchsorted(user_ids, latest[C.USER_ID].to_numpy(np.int64))
    cols = np.searchsorted(item_ids, latest[C.ITEM_ID].to_numpy(np.int64))
    ratings = sp.csr_matrix(
        (latest[C.RATING].to_numpy(np.float32), (rows, cols)),
        shape=(user_ids.size, item_ids.size),
        dtype=np.float32,
    )
    ratings.sort_indices()
    return InteractionMatrix(ratings=ratings, user_ids=user_ids, item_ids=item_ids)


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 6), st.integers(1, 8), st.sampled_from([0.0, 1.0, 3.5, 5.0]), st.integers(0, 4)
        ),
        min_size=1,
        max_size=40,
    )
)
def test_from_frames_keeps_the_latest_rating_of_each_pair(rows: list[tuple[int, int, float, int]]) -> None:
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, C.TS])
    items = pd.DataFrame({C.ITEM_ID: np.arange(1, 10)})
    got = InteractionMatrix.from_frames(frame, items)
    want = _latest_rating_reference(frame, items)
    # the same arrays with the same dtypes (model artefacts pickle them)
    for name in ("user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), strict=True)
    for name in ("indptr", "indices", "data"):
        assert getattr(got.ratings, name).dtype == getattr(want.ratings, name).dtype
        np.testing.assert_array_equal(getattr(got.ratings, name), getattr(want.ratings, name))
    assert got.ratings.has_canonical_format and got.ratings.shape == want.ratings.shape
    assert got.ratings.nnz == len(frame.drop_duplicates([C.USER_ID, C.ITEM_ID]))


def test_from_frames_hand_computed_repeat() -> None:
    # user 1 rated item 2 twice: 2.0 at t=5, then 4.0 at t=9 (listed first): the later one wins
    frame = pd.DataFrame(
        {C.USER_ID: [1, 1, 2], C.ITEM_ID: [2, 2, 3], C.RATING: [4.0, 2.0, 1.0], C.TS: [9, 5, 1]}
    )
    m = InteractionMatrix.from_frames(frame)
    assert m.ratings.toarray().tolist() == [[4.0, 0.0], [0.0, 1.0]]
