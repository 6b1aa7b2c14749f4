"""top_n, the selection every arm's recommend() goes through."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deepcuts.models.recommenders.base import _top_n_argpartition, top_n, top_n_with_quotas

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
        # the same values as a full sort ...
        np.testing.assert_array_equal(vals[row], ref_vals)
        np.testing.assert_array_equal(scores[row, idx[row]], vals[row])
        assert len(set(idx[row].tolist())) == k
        # ... in descending order, equal values by ascending index
        for a, b in zip(range(k - 1), range(1, k), strict=True):
            assert vals[row, a] > vals[row, b] or (vals[row, a] == vals[row, b] and idx[row, a] < idx[row, b])


@settings(max_examples=300, deadline=None)
@given(scores=scores_strategy, n=st.integers(1, 50))
def test_top_n_is_a_stable_sort_prefix_and_agrees_with_the_argpartition_version(
    scores: np.ndarray, n: int
) -> None:
    """The threshold selection (issue 18) keeps exactly the first n of a stable descending sort, ties
    at the n-th value included; the argpartition version it replaced gives the same values always and
    the same indices whenever the n-th value is not tied across the cut."""
    idx, vals = top_n(scores, n)
    k = min(n, scores.shape[1])
    old_idx, old_vals = _top_n_argpartition(scores, k)
    np.testing.assert_array_equal(vals, old_vals)
    for row in range(scores.shape[0]):
        ref = np.argsort(-scores[row].astype(np.float64), kind="stable")[:k]
        assert idx[row].tolist() == ref.tolist()
        ordered = np.sort(scores[row])[::-1]
        if k == scores.shape[1] or ordered[k - 1] != ordered[k]:
            assert idx[row].tolist() == old_idx[row].tolist()


def test_top_n_ties_at_the_cut_go_to_the_lower_index() -> None:
    # three zeros compete for the last two places: columns 1 and 2 win, 4 does not
    scores = np.array([[1.0, 0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    idx, vals = top_n(scores, 4)
    assert idx.tolist() == [[0, 3, 1, 2], [0, 1, 2, 3]]
    np.testing.assert_array_equal(vals, [[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_top_n_with_a_nan_row_falls_back_to_argpartition() -> None:
    scores = np.array([[0.3, np.nan, 0.9, 0.1]], dtype=np.float32)
    idx, _ = top_n(scores, 2)
    assert idx.shape == (1, 2)
    assert 2 in idx[0].tolist()


def test_top_n_by_hand() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf]], dtype=np.float32)
    idx, vals = top_n(scores, 3)
    assert idx.tolist() == [[1, 3, 2]]
    np.testing.assert_allclose(vals, [[0.9, 0.9, 0.5]])


def test_top_n_with_quotas_by_hand() -> None:
    # columns 3 and 4 form the quota group: one of them must be in the top 3, the best one (3)
    scores = np.array([[0.9, 0.8, 0.7, 0.2, 0.1, -np.inf]], dtype=np.float32)
    quota = np.array([False, False, False, True, True, True])
    idx, vals = top_n_with_quotas(scores, 3, [(quota, 1)])
    assert idx.tolist() == [[0, 1, 3]]
    np.testing.assert_allclose(vals, [[0.9, 0.8, 0.2]])
    # a quota already met by the plain top n changes nothing
    assert top_n_with_quotas(scores, 3, [(~quota, 2)])[0].tolist() == [[0, 1, 2]]


@settings(max_examples=200, deadline=None)
@given(
    scores=scores_strategy,
    n=st.integers(1, 20),
    data=st.data(),
)
def test_top_n_with_quotas_is_the_best_list_meeting_the_quotas(scores: np.ndarray, n: int, data) -> None:
    """Per row: each quota group holds min(count, its finite entries) items, the list is the best
    set of n finite entries doing so (same values as a brute-force greedy), sorted like top_n."""
    n_cols = scores.shape[1]
    groups = data.draw(st.lists(st.booleans(), min_size=n_cols, max_size=n_cols))
    mask = np.asarray(groups)
    count = data.draw(st.integers(0, n))
    idx, vals = top_n_with_quotas(scores, n, [(mask, count), (~mask, 0)])
    k = min(n, n_cols)
    assert idx.shape == (scores.shape[0], k)
    for row in range(scores.shape[0]):
        finite = np.isfinite(vals[row])
        chosen = idx[row][finite]
        assert len(set(chosen.tolist())) == chosen.size
        np.testing.assert_array_equal(scores[row, chosen], vals[row][finite])
        # sorted descending
        assert np.all(np.diff(vals[row][finite]) <= 0)
        in_group = np.isfinite(scores[row]) & mask
        need = min(count, int(in_group.sum()), k)
        assert int(mask[chosen].sum()) >= need
        # reference: the best `need` group entries, then the best of the rest
        order = np.argsort(-scores[row], kind="stable")
        forced = [i for i in order if in_group[i]][:need]
        rest = [i for i in order if i not in forced and np.isfinite(scores[row, i])][: k - need]
        expected = np.sort(scores[row, forced + rest])[::-1]
        np.testing.assert_array_equal(np.sort(vals[row][finite])[::-1], expected)
