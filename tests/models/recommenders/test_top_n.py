"""top_n, the selection every arm's recommend() goes through."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deepcuts.models.recommenders.base import _top_n_argpartition, _top_n_sampled, top_n, top_n_with_quotas

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


@settings(max_examples=300, deadline=None)
@given(scores=scores_strategy, n=st.integers(1, 50), stride=st.integers(1, 5))
def test_sampled_bound_selection_is_the_stable_sort_prefix(scores: np.ndarray, n: int, stride: int) -> None:
    """The wide-row path (issue 18): survivors of a bound from every stride-th column, ties at the bound
    completed by the lowest columns, give exactly the first n of a stable descending sort."""
    idx, vals = _top_n_sampled(scores, n, stride=stride)
    k = min(n, scores.shape[1])
    ref = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(scores, ref, axis=1))


def test_sampled_bound_by_hand_on_sparse_rows() -> None:
    # stride 2 samples columns 0, 2, 4, 6: the 2nd largest there is 0, so the entries > 0 (columns 3
    # and 5) survive and the lowest columns equal to 0 (1 and 2) complete row 0's top 4
    scores = np.array([[0, 0, 0, 0.5, 0, 0.7, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]], np.float32)
    idx, vals = _top_n_sampled(scores, 4, stride=2)
    assert idx.tolist() == [[5, 3, 0, 1], [7, 6, 5, 4]]
    np.testing.assert_allclose(vals, [[0.7, 0.5, 0.0, 0.0], [0.8, 0.7, 0.6, 0.5]])


def _quotas_reference(scores: np.ndarray, n: int, quotas: list) -> tuple[np.ndarray, np.ndarray]:
    """top_n_with_quotas as written before issue 18: each quota searched over its group's columns of
    a copy, taken columns set to -inf, then a second full-width selection fills the list."""
    n = min(n, scores.shape[1])
    rest = scores.copy()
    rows = np.arange(scores.shape[0])[:, None]
    taken_idx, taken_val = [], []
    n_taken = np.zeros(scores.shape[0], dtype=np.int64)
    for mask, count in quotas:
        cols = np.flatnonzero(mask)
        sub_idx, val = top_n(rest[:, cols], min(count, n))
        idx = cols[sub_idx]
        ok = np.isfinite(val)
        rest[np.broadcast_to(rows, idx.shape)[ok], idx[ok]] = -np.inf
        taken_idx.append(idx)
        taken_val.append(np.where(ok, val, -np.inf))
        n_taken += ok.sum(axis=1)
    idx, val = top_n(rest, n)
    taken_idx.append(idx)
    taken_val.append(np.where(np.arange(idx.shape[1])[None, :] < (n - n_taken)[:, None], val, -np.inf))
    all_idx, all_val = np.concatenate(taken_idx, axis=1), np.concatenate(taken_val, axis=1)
    order = np.lexsort((all_idx, -all_val), axis=1)[:, :n]
    return np.take_along_axis(all_idx, order, axis=1), np.take_along_axis(all_val, order, axis=1)


@settings(max_examples=300, deadline=None)
@given(scores=scores_strategy, n=st.integers(1, 30), data=st.data())
def test_quotas_from_the_plain_top_n_equal_the_group_by_group_search(
    scores: np.ndarray, n: int, data
) -> None:
    """Up to three overlapping quota groups, counts up to n: the same finite entries, in the same
    order, as the implementation that searched every group and then the whole row again."""
    n_cols = scores.shape[1]
    quotas = [
        (
            np.asarray(data.draw(st.lists(st.booleans(), min_size=n_cols, max_size=n_cols))),
            data.draw(st.integers(0, n)),
        )
        for _ in range(data.draw(st.integers(0, 3)))
    ]
    idx, vals = top_n_with_quotas(scores, n, quotas)
    ref_idx, ref_vals = _quotas_reference(scores, n, quotas)
    assert idx.shape == ref_idx.shape
    finite = np.isfinite(ref_vals)
    np.testing.assert_array_equal(np.isfinite(vals), finite)
    np.testing.assert_array_equal(vals[finite], ref_vals[finite])
    np.testing.assert_array_equal(idx[finite], ref_idx[finite])
