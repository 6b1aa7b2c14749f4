"""top_n, the selection every arm's recommend() goes through."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.base import top_n

scores_strategy = arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(1, 40)),
    elements=st.one_of(st.sampled_from([0.0, 1.0, -np.inf]), st.floats(-5, 5, width=32)),
)


@settings(max_examples=200, deadline=None)
@given(scores=scores_strategy, n=st.integers(0, 50))
def test_top_n_returns_the_n_largest_sorted_with_ties_by_index(scores: np.ndarray, n: int) -> None:
    idx, vals = top_n(scores, n)
    k = min(n, scores.shape[1])
    assert idx.shape == vals.shape == (scores.shape[0], k)
    for row in range(scores.shape[0]):
        ref_vals = np.sort(scores[row])[::-1][:k]
        # the same values as a full sort (ties at the n-th value may pick different indices) ...
        np.testing.assert_array_equal(vals[row], ref_vals)
        np.testing.assert_array_equal(scores[row, idx[row]], vals[row])
        assert len(set(idx[row].tolist())) == k
        # ... in descending order, equal values by ascending index
        for a, b in zip(range(k - 1), range(1, k), strict=True):
            assert vals[row, a] > vals[row, b] or (vals[row, a] == vals[row, b] and idx[row, a] < idx[row, b])


def test_top_n_by_hand() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf]], dtype=np.float32)
    idx, vals = top_n(scores, 3)
    assert idx.tolist() == [[1, 3, 2]]
    np.testing.assert_allclose(vals, [[0.9, 0.9, 0.5]])
