"""The selections of issue 18 that avoid dense copies: each equals the plain path it replaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deepcuts.models.recommenders.base import (
    has_nan,
    top_n,
    top_n_uniform,
    top_n_with_quotas,
)
from deepcuts.models.recommenders.popularity import PopularityRecommender
from tests.models.recommenders.test_top_n import _quotas_reference
from tests.models.recommenders.world import block_world

# few distinct values: many ties, at the cut and at the sampled bound
tied_scores = arrays(
    np.float32,
    st.tuples(st.integers(1, 8), st.integers(1, 60)),
    elements=st.one_of(st.sampled_from([0.0, 1.0, 2.0, -np.inf]), st.floats(-3, 3, width=32)),
)


def _bools(data: st.DataObject, size: int) -> np.ndarray:
    return np.asarray(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)), dtype=bool)


def _same_finite(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    """Equal values everywhere, equal columns where the value is finite (padding columns are free)."""
    (idx, vals), (ref_idx, ref_vals) = got, want
    assert idx.shape == ref_idx.shape
    np.testing.assert_array_equal(vals, ref_vals)
    finite = np.isfinite(ref_vals)
    np.testing.assert_array_equal(idx[finite], ref_idx[finite])


@settings(max_examples=300, deadline=None)
@given(scores=tied_scores, n=st.integers(1, 30), data=st.data())
def test_quotas_with_the_group_taken_from_the_whole_block_equal_the_reference(
    scores: np.ndarray, n: int, data: st.DataObject
) -> None:
    """Many ties and -inf; the rows short of a group are most of the block (its columns taken from the
    whole block) or a few (from a copy of those rows): both equal the group-by-group reference."""
    n_cols = scores.shape[1]
    quotas = [
        (_bools(data, n_cols), data.draw(st.integers(0, 40))) for _ in range(data.draw(st.integers(1, 3)))
    ]
    _same_finite(top_n_with_quotas(scores, n, quotas), _quotas_reference(scores, n, quotas))


def test_quotas_by_hand_when_most_rows_lack_the_group() -> None:
    # group = columns 3..5; rows 0-2 hold none of it in their top 2, row 3 holds two
    scores = np.array(
        [[9, 8, 7, 1, 2, 0], [9, 8, 7, 3, 3, 1], [5, 6, 7, 0, 0, 0], [0, 0, 0, 9, 8, 7]], np.float32
    )
    mask = np.array([0, 0, 0, 1, 1, 1], bool)
    idx, vals = top_n_with_quotas(scores, 2, [(mask, 1)])
    assert idx.tolist() == [[0, 4], [0, 3], [2, 3], [3, 4]]
    assert vals.tolist() == [[9, 2], [9, 3], [7, 0], [9, 8]]


def _dense(row: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    block = np.tile(row, (seen.shape[0], 1)).astype(np.float32)
    block[seen.toarray() > 0] = -np.inf
    return block


@settings(max_examples=300, deadline=None)
@given(
    row=arrays(np.float32, st.integers(1, 60), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
    n_rows=st.integers(1, 8),
    n=st.integers(0, 70),
    data=st.data(),
)
def test_top_n_uniform_equals_the_dense_block(
    row: np.ndarray, n_rows: int, n: int, data: st.DataObject
) -> None:
    """Tied scores, users who have seen nearly everything, overlapping quotas larger than the group."""
    n_cols = row.size
    density = data.draw(st.sampled_from([0.0, 0.2, 0.9, 1.0]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    seen = sp.csr_matrix((rng.random((n_rows, n_cols)) < density).astype(np.float32))
    quotas = [
        (_bools(data, n_cols), data.draw(st.integers(0, 80))) for _ in range(data.draw(st.integers(0, 3)))
    ]
    block = _dense(row, seen)
    want = top_n_with_quotas(block, n, quotas) if quotas else top_n(block, n)
    _same_finite(top_n_uniform(row, seen, n, quotas), want)


def test_top_n_uniform_splits_heavy_users_from_light_ones() -> None:
    # 50 users with nothing seen and 2 who saw the 300 most popular items: two tiers, same result
    row = np.linspace(1.0, 0.0, 400, dtype=np.float32)
    dense_seen = np.zeros((52, 400), np.float32)
    dense_seen[50:, :300] = 1
    seen = sp.csr_matrix(dense_seen)
    quotas = [(np.arange(400) % 3 == 0, 5)]
    idx, vals = top_n_uniform(row, seen, 10, quotas)
    want = top_n_with_quotas(_dense(row, seen), 10, quotas)
    _same_finite((idx, vals), want)
    assert idx[51].min() == 300


def test_top_n_uniform_of_no_rows() -> None:
    idx, vals = top_n_uniform(np.ones(5, np.float32), sp.csr_matrix((0, 5), dtype=np.float32), 3)
    assert idx.shape == vals.shape == (0, 3)


def test_has_nan() -> None:
    assert not has_nan(np.zeros((0, 3), np.float32))
    assert not has_nan(np.array([[1.0, -np.inf, np.inf]], np.float32))
    assert has_nan(np.array([[1.0, np.nan, -np.inf]], np.float32))


class _DensePopularity(PopularityRecommender):
    """The popularity arm through the dense block (the path before issue 18)."""

    def _uniform_scores(self) -> None:
        return None


def test_popularity_recommend_equals_the_dense_block_path() -> None:
    interactions, items = block_world()
    fast = PopularityRecommender(None, seed=1, batch_users=3).fit(interactions, items)
    dense = _DensePopularity(None, seed=1, batch_users=3)
    dense.__dict__.update(fast.__dict__)
    users = np.concatenate([np.unique(interactions["user_id"]), [10**9]])  # a cold user too
    catalog = items["item_id"].to_numpy()
    quotas = [(catalog[::3], 2), (catalog[1::2], 4)]
    for kwargs in ({}, {"quotas": quotas}, {"exclude_seen": False, "quotas": quotas}):
        pd.testing.assert_frame_equal(fast.recommend(users, 7, **kwargs), dense.recommend(users, 7, **kwargs))
