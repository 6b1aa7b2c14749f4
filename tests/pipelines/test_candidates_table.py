"""The candidates step's Arrow table, built from buffers (issue 18), equals the per-row build."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepcuts.contracts import CANDIDATES_SCHEMA, C
from deepcuts.pipelines.candidates import _candidates_table


def _per_row_table(parts: list[dict[str, np.ndarray]], arm: str, day: date) -> pa.Table:
    """The table as written before issue 18: a table per batch from Python lists, concatenated."""
    tables = [
        pa.table(
            {
                C.USER_ID: pa.array(p[C.USER_ID].astype(np.int64)),
                C.ITEM_ID: pa.array(p[C.ITEM_ID].astype(np.int64)),
                C.RANK: pa.array(p[C.RANK].astype(np.int32)),
                C.SCORE: pa.array(p[C.SCORE].astype(np.float32)),
                C.ARM: pa.array([arm] * len(p[C.USER_ID]), pa.string()),
                C.RUN_DATE: pa.array([day] * len(p[C.USER_ID]), pa.date32()),
            },
            schema=CANDIDATES_SCHEMA,
        )
        for p in parts
    ]
    return pa.concat_tables(tables) if tables else CANDIDATES_SCHEMA.empty_table()


def _parts(sizes: list[int], seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            C.USER_ID: rng.integers(0, 10**6, size),
            C.ITEM_ID: rng.integers(0, 10**5, size),
            C.RANK: rng.integers(1, 101, size).astype(np.int32),
            C.SCORE: rng.standard_normal(size).astype(np.float32),
        }
        for size in sizes
    ]


@pytest.mark.parametrize(
    ("sizes", "arm", "day"),
    [
        ([300, 0, 57], "long_tail", date(2025, 12, 31)),
        ([1], "svd", date(1970, 1, 1)),
        ([0], "popularity", date(1969, 12, 31)),  # before the epoch: a negative day count
        ([], "graph", date(2026, 3, 1)),
    ],
)
def test_candidates_table_equals_the_per_row_build(sizes: list[int], arm: str, day: date, tmp_path) -> None:
    parts = _parts(sizes, seed=len(sizes))
    got, want = _candidates_table(parts, arm, day), _per_row_table(parts, arm, day)
    assert got.schema == CANDIDATES_SCHEMA
    assert got.equals(want)
    assert got.column(C.ARM).to_pylist() == [arm] * got.num_rows
    assert got.column(C.RUN_DATE).to_pylist() == [day] * got.num_rows
    # the same Parquet bytes
    pq.write_table(got, tmp_path / "got.parquet")
    pq.write_table(want, tmp_path / "want.parquet")
    assert (tmp_path / "got.parquet").read_bytes() == (tmp_path / "want.parquet").read_bytes()
