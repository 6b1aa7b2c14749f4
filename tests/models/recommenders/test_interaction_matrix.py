"""InteractionMatrix.from_frames: the latest rating of each (user, item) pair, built from arrays (issue 18)
with exactly the matrix of the pandas sort + drop_duplicates it replaced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcuts.contracts import C
from deepcuts.models.recommenders.base import InteractionMatrix


def reference(frame: pd.DataFrame, items: pd.DataFrame | None) -> InteractionMatrix:
    """The construction before issue 18: stable sort by time, keep the last of each pair, COO -> CSR."""
    if C.TS in frame.columns:
        frame = frame.sort_values(C.TS, kind="stable")
    frame = frame.drop_duplicates([C.USER_ID, C.ITEM_ID], keep="last")
    extra = items[C.ITEM_ID].to_numpy(np.int64) if items is not None else np.empty(0, np.int64)
    item_ids = np.unique(np.concatenate([frame[C.ITEM_ID].to_numpy(np.int64), extra]))
    user_ids = np.unique(frame[C.USER_ID].to_numpy(np.int64))
    rows = np.searchsorted(user_ids, frame[C.USER_ID].to_numpy(np.int64))
    cols = np.searchsorted(item_ids, frame[C.ITEM_ID].to_numpy(np.int64))
    ratings = sp.csr_matrix(
        (frame[C.RATING].to_numpy(np.float32), (rows, cols)), shape=(user_ids.size, item_ids.size)
    )
    ratings.sort_indices()
    return InteractionMatrix(ratings, user_ids, item_ids)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 6), st.integers(1, 8), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3))
        ),
        max_size=60,
    ),
    time_kind=st.sampled_from(["datetime", "float", "text", "none"]),
    with_items=st.booleans(),
)
def test_from_frames_equals_the_pandas_construction(rows: list, time_kind: str, with_items: bool) -> None:
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, "t"])
    frame[C.RATING] = frame[C.RATING].astype(np.float32)  # 0 is a rating too (stored, not dropped)
    t = frame.pop("t")
    if time_kind == "datetime":  # ties and NaT (sorted last) included
        frame[C.TS] = pd.to_datetime(t.astype("float64"), unit="D", utc=True).astype("datetime64[us, UTC]")
    elif time_kind == "float":
        frame[C.TS] = t.astype("float64")
    elif time_kind == "text":
        frame[C.TS] = t.map(lambda v: None if pd.isna(v) else f"2026-01-0{int(v) + 1}").astype(object)
    items = pd.DataFrame({C.ITEM_ID: np.arange(1, 12)}) if with_items else None
    got, want = InteractionMatrix.from_frames(frame, items), reference(frame, items)
    np.testing.assert_array_equal(got.user_ids, want.user_ids)
    np.testing.assert_array_equal(got.item_ids, want.item_ids)
    assert got.ratings.shape == want.ratings.shape
    for field in ("data", "indices", "indptr"):
        a, b = getattr(got.ratings, field), getattr(want.ratings, field)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert got.ratings.has_canonical_format and got.ratings.has_sorted_indices


def test_latest_rating_wins_by_hand() -> None:
    frame = pd.DataFrame(
        {
            C.USER_ID: [1, 1, 2, 1],
            C.ITEM_ID: [5, 5, 5, 7],
            C.RATING: np.array([2.0, 4.0, 3.0, 1.0], np.float32),
            C.TS: pd.to_datetime(["2026-01-03", "2026-01-02", "2026-01-01", "2026-01-01"], utc=True),
        }
    )
    m = InteractionMatrix.from_frames(frame)
    assert m.ratings.toarray().tolist() == [[2.0, 1.0], [3.0, 0.0]]  # user 1 rated item 5 last with 2


@settings(max_examples=100, deadline=None)
@given(
    known=st.lists(st.integers(-50, 50), max_size=30),
    asked=st.lists(st.integers(-60, 60), max_size=30),
    scale=st.sampled_from([1, 10**12]),  # a compact range (table) and a sparse one (binary search)
)
def test_id_codes_and_positions_equal_unique_and_searchsorted(known: list, asked: list, scale: int) -> None:
    from deepcuts.models.recommenders.base import positions_in, unique_codes

    ids = np.asarray(known, dtype=np.int64) * scale
    unique, codes = unique_codes(ids)
    np.testing.assert_array_equal(unique, np.unique(ids))
    np.testing.assert_array_equal(codes, np.searchsorted(np.unique(ids), ids))
    assert codes.dtype == np.int64
    query = np.asarray(asked, dtype=np.int64) * scale
    want = np.asarray([list(unique).index(q) if q in unique else -1 for q in query], dtype=np.int64)
    got = positions_in(unique, query)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
