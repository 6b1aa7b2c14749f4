"""The shared formulas (deepcuts/formulas.py) on hand-computed values and their defining properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepcuts.formulas import bayesian_mean, daypart_hours, gini, long_tail_mask, scale_5pt


def test_gini_hand_computed() -> None:
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    # one item gets everything among 4: (n - 1) / n
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
    # x = 1, 3 sorted: (2*1-2-1)*1 + (2*2-2-1)*3 = -1 + 3 = 2; / (2 * 4) = 0.25
    assert gini(np.array([3, 1])) == pytest.approx(0.25)
    assert gini(np.array([])) == 0.0 and gini(np.zeros(3)) == 0.0


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=50), st.integers(1, 5))
def test_gini_is_bounded_and_scale_invariant(counts: list[int], factor: int) -> None:
    x = np.array(counts)
    g = gini(x)
    assert 0.0 <= g <= (len(counts) - 1) / len(counts) + 1e-12
    assert gini(x * factor) == pytest.approx(g)


def test_bayesian_mean_hand_computed_and_keeps_the_input_type() -> None:
    # one 5-star rating, m = 4, mu = 3.5: (5 + 14) / 5 = 3.8; unrated: mu
    assert bayesian_mean(5.0, 1.0, 3.5, 4.0) == pytest.approx(3.8)
    assert bayesian_mean(0.0, 0.0, 3.5, 4.0) == pytest.approx(3.5)
    q = bayesian_mean(pd.Series([5.0, 40.0], index=[7, 9]), pd.Series([1.0, 10.0], index=[7, 9]), 3.5, 4.0)
    assert isinstance(q, pd.Series) and q.index.tolist() == [7, 9]
    assert q.tolist() == pytest.approx([3.8, (40 + 14) / 14])


def test_long_tail_mask_hand_computed() -> None:
    # total 10; sorted 5 (idx 1), 3 (idx 0), 1, 1: the head must reach 8 = 0.8 * 10 -> idx 1 and 0
    assert long_tail_mask([3, 5, 1, 1], 0.8).tolist() == [False, False, True, True]
    # ties go to the lower index: 2, 2, 2 -> head needs 3 of 6 -> two items, idx 0 and 1
    assert long_tail_mask([2, 2, 2], 0.5).tolist() == [False, False, True]
    assert long_tail_mask([0, 0], 0.8).tolist() == [True, True]  # nothing rated: all long tail
    with pytest.raises(ValueError, match="head_share"):
        long_tail_mask([1], 1.0)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.floats(0.05, 0.95))
def test_the_short_head_is_the_shortest_popular_prefix(counts: list[int], share: float) -> None:
    head = ~long_tail_mask(counts, share)
    x = np.array(counts, dtype=float)
    if x.sum() == 0:
        assert not head.any()
        return
    assert x[head].sum() >= (share - 1e-9) * x.sum()  # it reaches the share ...
    assert x[head].min() >= x[~head].max(initial=0)  # ... with the most popular items ...
    assert x[head].sum() - x[head].min() < share * x.sum()  # ... and is no longer than needed


def test_scale_5pt_maps_1_and_5_onto_the_scale_ends() -> None:
    assert scale_5pt(1.0, 0.5, 5.0) == 0.5 and scale_5pt(5.0, 0.5, 5.0) == 5.0
    assert scale_5pt(3.8, 1.0, 10.0) == pytest.approx(1 + 2.8 * 9 / 4)


def test_daypart_hours_wrap_to_the_first_start() -> None:
    assert daypart_hours((6, 12, 18, 23)) == {
        "morning": (6, 12),
        "afternoon": (12, 18),
        "evening": (18, 23),
        "night": (23, 6),
    }
