"""Metrics: hand-computed fixtures, a naive reference implementation, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcuts.contracts import C
from deepcuts.metrics import (
    GenreMatrix,
    ItemPopularity,
    ListContext,
    accuracy_summary,
    catalog_coverage,
    genres_per_list,
    gini_index,
    intra_list_distance,
    long_tail_share,
    map_recommenders,
    mean_hit_rating,
    ndcg_at_k,
    novelty,
    per_user_accuracy,
    popularity_baseline,
    precision_at_k,
    recall_at_k,
    score_lists,
    serendipity,
    top_k_lists,
)


def recs_frame(lists: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, i, r) for u, items in lists.items() for r, i in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RANK])


def truth_frame(rel: dict[int, list[int]], rating: float = 4.0) -> pd.DataFrame:
    rows = [(u, i, rating) for u, items in rel.items() for i in items]
    return pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING])


# ----------------------------------------------------------------------------- accuracy, by hand
RECS = recs_frame({1: [1, 2, 3], 2: [4, 5], 3: [7, 8, 9], 5: [1, 2, 3]})
TRUTH = truth_frame({1: [1, 3, 5], 2: [6], 3: [9], 4: [1]})
K = 3
NDCG_U1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))


def test_per_user_values_by_hand() -> None:
    per_user = per_user_accuracy(RECS, TRUTH, K)
    # users 4 (no list) and 5 (nothing relevant) are not evaluated
    assert per_user.index.tolist() == [1, 2, 3]
    assert per_user["hits"].tolist() == [2, 0, 1]
    assert per_user["n_relevant"].tolist() == [3, 1, 1]
    np.testing.assert_allclose(per_user["precision"], [2 / 3, 0, 1 / 3])
    np.testing.assert_allclose(per_user["recall"], [2 / 3, 0, 1])
    np.testing.assert_allclose(per_user["ndcg"], [NDCG_U1, 0, 0.5])
    # AP: user 1 hits at 1 and 3 -> (1/1 + 2/3) / 3; user 3 hit at 3 -> (1/3) / 1
    np.testing.assert_allclose(per_user["average_precision"], [(1 + 2 / 3) / 3, 0, 1 / 3])


def test_scalar_metrics_by_hand() -> None:
    assert precision_at_k(RECS, TRUTH, K) == pytest.approx(1 / 3)
    assert recall_at_k(RECS, TRUTH, K) == pytest.approx(5 / 9)
    assert ndcg_at_k(RECS, TRUTH, K) == pytest.approx((NDCG_U1 + 0.5) / 3)
    assert map_recommenders(RECS, TRUTH, K) == pytest.approx(8 / 27)
    summary = accuracy_summary(RECS, TRUTH, K)
    assert summary.n_users == 3
    assert summary.as_dict()["ndcg@3"] == pytest.approx((NDCG_U1 + 0.5) / 3)


def test_explicit_users_score_missing_lists_as_zero() -> None:
    per_user = per_user_accuracy(RECS, TRUTH, K, users=[1, 2, 3, 4])
    assert per_user.index.tolist() == [1, 2, 3, 4]
    assert per_user.loc[4, "ndcg"] == 0.0
    assert precision_at_k(RECS, TRUTH, K, users=[1, 2, 3, 4]) == pytest.approx(1 / 4)


def test_map_is_divided_by_all_relevant_items_not_min_k() -> None:
    # 5 relevant items, k = 2, both recommended items relevant: AP = (1 + 1) / 5, not / 2
    recs = recs_frame({1: [1, 2]})
    truth = truth_frame({1: [1, 2, 3, 4, 5]})
    assert map_recommenders(recs, truth, 2) == pytest.approx(2 / 5)
    assert ndcg_at_k(recs, truth, 2) == pytest.approx(1.0)  # IDCG over min(|R|, k) = 2


def test_top_k_lists_renumbers_ranks_and_drops_duplicates() -> None:
    recs = pd.DataFrame({C.USER_ID: [1, 1, 1, 1], C.ITEM_ID: [9, 8, 9, 7], C.RANK: [5, 2, 7, 10]})
    lists = top_k_lists(recs, 2)
    assert lists[C.ITEM_ID].tolist() == [8, 9]
    assert lists[C.RANK].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("recs", "normalised"),
    [
        # already normalised (what the lake holds): ranks 1..n per user, sorted, no repeats
        (
            pd.DataFrame({C.USER_ID: [1, 1, 2, 2, 2], C.ITEM_ID: [4, 3, 3, 9, 8], C.RANK: [1, 2, 1, 2, 3]}),
            True,
        ),
        # normalised but longer than k: cut to k
        (pd.DataFrame({C.USER_ID: [1, 1, 1, 1], C.ITEM_ID: [4, 3, 2, 1], C.RANK: [1, 2, 3, 4]}), False),
        # contiguous ranks but an item twice in a list: the repeat is dropped and later items move up
        (pd.DataFrame({C.USER_ID: [1, 1, 1], C.ITEM_ID: [4, 4, 5], C.RANK: [1, 2, 3]}), False),
        # users out of order
        (pd.DataFrame({C.USER_ID: [2, 1, 1], C.ITEM_ID: [4, 3, 5], C.RANK: [1, 1, 2]}), False),
        # a gap in the ranks
        (pd.DataFrame({C.USER_ID: [1, 1], C.ITEM_ID: [4, 3], C.RANK: [1, 3]}), False),
    ],
)
def test_top_k_lists_shortcut_for_normalised_lists_matches_the_full_path(
    recs: pd.DataFrame, normalised: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deepcuts.metrics.accuracy as accuracy

    assert accuracy._is_normalised(recs, 3) is normalised
    fast = top_k_lists(recs, 3)
    assert accuracy._is_normalised(fast, 3)  # its own output takes the shortcut next time
    pd.testing.assert_frame_equal(top_k_lists(fast, 3), fast)
    monkeypatch.setattr(accuracy, "_is_normalised", lambda *_: False)
    pd.testing.assert_frame_equal(fast, top_k_lists(recs, 3))
    pd.testing.assert_frame_equal(fast, top_k_lists(fast, 3))


def test_missing_columns_are_explained() -> None:
    with pytest.raises(ValueError, match="missing columns"):
        precision_at_k(RECS.drop(columns=[C.RANK]), TRUTH, K)
    with pytest.raises(ValueError, match="k must be"):
        top_k_lists(RECS, 0)


def naive_metrics(lists: dict[int, list[int]], rel: dict[int, set[int]], k: int) -> dict[str, float]:
    """Literal per-user loops over the definitions (the reference for the vectorised code)."""
    users = [u for u in lists if rel.get(u)]
    if not users:
        return {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    p = r = n = m = 0.0
    for u in users:
        items = list(dict.fromkeys(lists[u]))[:k]
        hits = [i in rel[u] for i in items]
        p += sum(hits) / k
        r += sum(hits) / len(rel[u])
        dcg = sum(1 / math.log2(pos + 2) for pos, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(pos + 2) for pos in range(min(len(rel[u]), k)))
        n += dcg / idcg
        found, ap = 0, 0.0
        for pos, h in enumerate(hits, start=1):
            if h:
                found += 1
                ap += found / pos
        m += ap / len(rel[u])
    c = len(users)
    return {"precision": p / c, "recall": r / c, "ndcg": n / c, "map": m / c}


lists_strategy = st.dictionaries(
    st.integers(0, 6), st.lists(st.integers(0, 15), min_size=1, max_size=8), max_size=6
)
rel_strategy = st.dictionaries(
    st.integers(0, 6), st.sets(st.integers(0, 15), min_size=1, max_size=8), max_size=6
)


@settings(max_examples=60, deadline=None)
@given(lists=lists_strategy, rel=rel_strategy, k=st.integers(1, 6))
def test_vectorised_matches_naive_reference(
    lists: dict[int, list[int]], rel: dict[int, set[int]], k: int
) -> None:
    recs = recs_frame(lists) if lists else recs_frame({0: []})
    truth = truth_frame({u: sorted(s) for u, s in rel.items()}) if rel else truth_frame({})
    got = accuracy_summary(recs, truth, k)
    want = naive_metrics(lists, rel, k)
    assert got.precision == pytest.approx(want["precision"])
    assert got.recall == pytest.approx(want["recall"])
    assert got.ndcg == pytest.approx(want["ndcg"])
    assert got.map == pytest.approx(want["map"])
    for value in (got.precision, got.recall, got.ndcg, got.map):
        assert 0.0 <= value <= 1.0 + 1e-12


@settings(max_examples=30, deadline=None)
@given(rel=st.sets(st.integers(0, 50), min_size=1, max_size=20), k=st.integers(1, 10))
def test_perfect_list_has_ndcg_one(rel: set[int], k: int) -> None:
    items = sorted(rel)
    recs = recs_frame({1: items[:k]})
    assert ndcg_at_k(recs, truth_frame({1: items}), k) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- beyond accuracy
def test_catalog_coverage_and_gini_by_hand() -> None:
    lists = recs_frame({1: [1, 2], 2: [1, 9], 3: [1]})
    assert catalog_coverage(lists, [1, 2, 3, 4, 5]) == pytest.approx(2 / 5)  # 9 is not in the catalog
    # counts over catalog {1,2,3,4}: [3, 1, 0, 0] -> sorted [0, 0, 1, 3]; (-3*0 - 1*0 + 1*1 + 3*3) / (4*4)
    assert gini_index(lists, [1, 2, 3, 4]) == pytest.approx(10 / 16)
    assert gini_index(recs_frame({1: [1], 2: [2]}), [1, 2]) == pytest.approx(0.0)
    assert gini_index(lists.iloc[0:0], [1, 2]) == 0.0


def test_novelty_by_hand() -> None:
    train = pd.DataFrame({C.USER_ID: [1, 2, 3, 1], C.ITEM_ID: [1, 1, 1, 2]})
    pop = ItemPopularity.from_interactions(train, [1, 2, 3])
    lists = recs_frame({10: [1, 2], 11: [3]})
    # user 10: (-log2(3/4) + -log2(1/4)) / 2; user 11: unrated item counts once -> -log2(1/4) = 2
    expected = ((-math.log2(3 / 4) + 2) / 2 + 2) / 2
    assert novelty(lists, pop) == pytest.approx(expected)


def test_long_tail_by_hand() -> None:
    train = pd.DataFrame(
        {C.USER_ID: list(range(6)) + list(range(3)) + [0], C.ITEM_ID: [1] * 6 + [2] * 3 + [3]}
    )
    pop = ItemPopularity.from_interactions(train, [1, 2, 3, 4])
    # counts 6, 3, 1, 0 of 10: the head (>= 80%) is {1, 2}
    assert pop.long_tail_ids(0.8).tolist() == [3, 4]
    lists = recs_frame({1: [1, 3], 2: [4, 3, 2, 1]})
    assert long_tail_share(lists, [3, 4]) == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_long_tail_matches_models_item_stats() -> None:
    item_stats = pytest.importorskip("deepcuts.models.recommenders.item_stats")
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 30, size=40)
    ids = np.arange(100, 140)
    pop = ItemPopularity(item_ids=ids, counts=counts.astype(float), total=float(counts.sum()))
    mask = item_stats.long_tail_mask(counts, 0.8)
    assert pop.long_tail_ids(0.8).tolist() == ids[mask].tolist()


ITEMS = pd.DataFrame({C.ITEM_ID: [1, 2, 3], C.GENRES: [["A"], ["A", "B"], ["C"]]})


def test_ild_and_genres_per_list_by_hand() -> None:
    genres = GenreMatrix.from_items(ITEMS)
    lists = recs_frame({1: [1, 2, 3], 2: [4]})
    # pairs: cos(1,2) = 1/sqrt(2), cos(1,3) = cos(2,3) = 0; the single-item list has no pairs
    assert intra_list_distance(lists, genres) == pytest.approx(1 - (1 / math.sqrt(2)) / 3)
    # list 1 covers A, B, C; item 4 is not in the catalog: 0 genres
    assert genres_per_list(lists, genres) == pytest.approx(1.5)
    same = recs_frame({1: [1, 1 + 0]}).drop_duplicates()
    assert intra_list_distance(same, genres) == 0.0


def test_mean_hit_rating_and_serendipity_by_hand() -> None:
    truth = pd.DataFrame({C.USER_ID: [1, 1, 2], C.ITEM_ID: [1, 3, 9], C.RATING: [5.0, 3.0, 4.0]})
    lists = recs_frame({1: [1, 2, 3], 2: [8]})
    assert mean_hit_rating(lists, truth) == pytest.approx(4.0)
    baseline = recs_frame({1: [1], 2: [9]})
    # hits (1,1) expected by the baseline, (1,3) not -> half the hits are unexpected
    assert serendipity(lists, truth, baseline) == pytest.approx(0.5)
    assert mean_hit_rating(recs_frame({3: [1]}), truth) is None
    assert serendipity(recs_frame({3: [1]}), truth, baseline) is None


def test_popularity_baseline_skips_seen_and_widens() -> None:
    # popularity: item 1 (4 users) > 2 (3) > 3 (2) > 4 (1) = 5 (1) > 6 (1); ties by lower id
    train = pd.DataFrame(
        {
            C.USER_ID: [1, 2, 3, 4, 1, 2, 3, 1, 2, 1, 7, 8],
            C.ITEM_ID: [1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6],
        }
    )
    base = popularity_baseline(train, [1, 99], k=2)
    got = {u: g.sort_values(C.RANK)[C.ITEM_ID].tolist() for u, g in base.groupby(C.USER_ID)}
    # user 1 saw 1..4: needs a block wider than 2k = 4 items
    assert got == {1: [5, 6], 99: [1, 2]}
    assert base[C.RANK].tolist() == [1, 2, 1, 2]


def test_score_lists_combines_everything() -> None:
    train = pd.DataFrame({C.USER_ID: [1, 2, 2], C.ITEM_ID: [1, 1, 2], C.RATING: [4.0, 5.0, 3.0]})
    truth = pd.DataFrame({C.USER_ID: [1, 2], C.ITEM_ID: [3, 3], C.RATING: [5.0, 4.0]})
    ctx = ListContext.build(k=2, train=train, items=ITEMS, head_share=0.8, truth=truth)
    out = score_lists(recs_frame({1: [3, 2], 2: [3]}), ctx)
    assert out["n_users"] == 2
    assert out["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert out["ndcg@2"] == pytest.approx(1.0)
    assert out["mean_hit_rating"] == pytest.approx(4.5)
    # baseline top-2 of unseen by popularity (1 > 2 > 3): user 1 gets [2, 3], user 2 gets [3]
    assert out["serendipity"] == pytest.approx(0.0)
    assert out["catalog_coverage"] == pytest.approx(2 / 3)


@settings(max_examples=40, deadline=None)
@given(
    lists=lists_strategy,
    train_pairs=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 15)), min_size=1, max_size=40),
    k=st.integers(1, 5),
)
def test_beyond_accuracy_invariants(
    lists: dict[int, list[int]], train_pairs: list[tuple[int, int]], k: int
) -> None:
    """Shares in [0, 1], Gini in [0, 1); the popularity baseline never repeats or shows seen items."""
    recs = recs_frame(lists) if lists else recs_frame({0: []})
    train = pd.DataFrame(train_pairs, columns=[C.USER_ID, C.ITEM_ID]).assign(**{C.RATING: 4.0})
    truth = train.sample(frac=0.5, random_state=1)
    genres = [["A"], ["A", "B"], ["C"], []]
    items = pd.DataFrame({C.ITEM_ID: np.arange(16), C.GENRES: [genres[i % 4] for i in range(16)]})
    ctx = ListContext.build(k=k, train=train, items=items, head_share=0.8, truth=truth)
    out = score_lists(recs, ctx)
    for key in ("catalog_coverage", "ild", "long_tail_share"):
        assert 0.0 <= out[key] <= 1.0 + 1e-12
    assert 0.0 <= out["gini"] < 1.0
    assert out["genres_per_list"] <= 3
    if out["serendipity"] is not None:
        assert 0.0 <= out["serendipity"] <= 1.0
    base = popularity_baseline(train, [0, 1, 2, 99], k)
    assert not base.duplicated([C.USER_ID, C.ITEM_ID]).any()
    assert (base.groupby(C.USER_ID).size() <= k).all()
    seen = base.merge(train[[C.USER_ID, C.ITEM_ID]].drop_duplicates(), on=[C.USER_ID, C.ITEM_ID])
    assert seen.empty
