"""The fast paths of the single-task stages (publish, evaluate) give what the plain code gave.

Each test compares a fast path with the straightforward implementation it replaced, on random inputs
with repeats and ties, and on empty and edge shapes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from deepcuts.contracts import C
from deepcuts.metrics.beyond import _user_codes
from deepcuts.pipelines import serving
from deepcuts.pipelines.publish_gates import _list_gates, _no_listed_item_seen, _pair_keys

LIST_COLUMNS = list(serving.TABLE_COLUMNS["lists"])


def _lists_frame(n: int, seed: int, text_dtype: str = "str") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            C.USER_ID: rng.integers(-3, 40, n).astype(np.int64),
            C.VARIANT: pd.Series(rng.choice(["control", "treatment"], n), dtype=text_dtype),
            C.ARM: pd.Series(rng.choice(["svd", "graph", "long_tail"], n), dtype=text_dtype),
            C.RANK: rng.integers(1, 11, n).astype(np.int32),
            C.ITEM_ID: rng.integers(0, 50, n).astype(np.int64),
            C.SCORE: rng.normal(size=n).astype(np.float32),
            C.NOVELTY: rng.exponential(size=n),
            C.IS_LONG_TAIL: rng.random(n) < 0.3,
            C.REASON: pd.Series(rng.choice(["baseline", "deep cut: é", "x" * 300, ""], n), dtype=text_dtype),
        }
    )


def _old_bulk_rows(frame: pd.DataFrame) -> list[tuple]:
    """What the one-row-per-statement loader bound: ``astype(object).tolist()`` per column."""
    values = [frame[c].astype(object).tolist() for c in LIST_COLUMNS]
    return list(zip(*values, strict=True))


def _table_rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()


@pytest.mark.parametrize(("n", "chunk"), [(0, 1000), (1, 1000), (499, 1000), (500, 1000), (2_345, 1000)])
@pytest.mark.parametrize("text_dtype", ["str", "object"])
def test_sqlite_bulk_insert_stores_what_one_row_per_insert_stored(
    tmp_path: Path, n: int, chunk: int, text_dtype: str
) -> None:
    frame = _lists_frame(n, seed=n, text_dtype=text_dtype)
    suffix = serving.version_suffix(7)
    new_db, old_db = tmp_path / "new.db", tmp_path / "old.db"
    engine = serving.make_engine(f"sqlite:///{new_db}", writer=True)
    with engine.begin() as conn:
        serving.run_sql_file(conn, "lists.sql", v=suffix)
        assert serving.bulk_insert(conn, f"lists_{suffix}", frame, chunk) == n
    engine.dispose()
    ddl = serving.split_statements(serving._render(serving.read_sql("sqlite", "lists.sql"), v=suffix))
    with sqlite3.connect(old_db) as conn:
        for statement in ddl:
            conn.execute(statement)
        marks = ", ".join("?" for _ in LIST_COLUMNS)
        conn.executemany(f"INSERT INTO lists_{suffix} VALUES ({marks})", _old_bulk_rows(frame))
    new_rows, old_rows = _table_rows(new_db, f"lists_{suffix}"), _table_rows(old_db, f"lists_{suffix}")
    assert new_rows == old_rows
    assert [[type(v) for v in row] for row in new_rows] == [[type(v) for v in row] for row in old_rows]


def test_sqlite_bulk_insert_sizes_statements_to_the_librarys_parameter_limit(tmp_path: Path) -> None:
    """SQLite before 3.32 takes 999 bound parameters a statement: statements sized for the newer limit
    would fail there. With the limit lowered to 50 (5 rows of 9 columns) the rows are the same."""
    frame = _lists_frame(1_234, seed=5)
    suffix = serving.version_suffix(3)
    engine = serving.make_engine(f"sqlite:///{tmp_path / 'low.db'}", writer=True)
    with engine.begin() as conn:
        conn.connection.driver_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)
        assert serving._sqlite_max_parameters(conn) == 50
        serving.run_sql_file(conn, "lists.sql", v=suffix)
        assert serving.bulk_insert(conn, f"lists_{suffix}", frame, 1000) == len(frame)
    engine.dispose()
    stored = _table_rows(tmp_path / "low.db", f"lists_{suffix}")
    assert [row[1:] for row in stored] == _old_bulk_rows(frame)


def test_sqlite_bulk_insert_keeps_missing_text_as_before(tmp_path: Path) -> None:
    """A missing value goes the generic way, so the NOT NULL constraint still rejects it."""
    frame = _lists_frame(600, seed=3)
    frame.loc[450, C.REASON] = None
    engine = serving.make_engine(f"sqlite:///{tmp_path / 'x.db'}", writer=True)
    suffix = serving.version_suffix(1)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        serving.run_sql_file(conn, "lists.sql", v=suffix)
        serving.bulk_insert(conn, f"lists_{suffix}", frame, 1000)
    engine.dispose()


def test_python_values_match_astype_object() -> None:
    frame = _lists_frame(300, seed=11)
    frame["nullable"] = pd.array(np.arange(300), dtype="Int64")
    frame.loc[5, "nullable"] = pd.NA
    for column in frame.columns:
        got, want = serving._python_values(frame[column]), frame[column].astype(object).tolist()
        assert [type(v) for v in got] == [type(v) for v in want], column
        assert got == want or (pd.isna(got[5]) and got[:5] == want[:5]), column


def _seen_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            C.USER_ID: rng.integers(-3, 40, n).astype(np.int64),
            C.ITEM_ID: rng.integers(0, 60, n).astype(np.int64),
        }
    )


@pytest.mark.parametrize("seed", range(6))
def test_seen_check_agrees_with_the_join(seed: int) -> None:
    lists = _lists_frame(200, seed)
    seen = _seen_frame([0, 1, 5, 50, 400, 3000][seed], seed + 100)
    joined = lists[[C.USER_ID, C.ITEM_ID]].merge(seen, on=[C.USER_ID, C.ITEM_ID], how="inner")
    assert _no_listed_item_seen(lists, seen) == joined.empty
    # the gate itself: same verdict and detail as the join alone gives
    gate = _list_gates(lists, seen.drop_duplicates())[1]
    assert gate["passed"] == joined.empty
    assert gate["value"] == float(len(lists.merge(seen.drop_duplicates(), on=[C.USER_ID, C.ITEM_ID])))


def test_seen_check_with_no_overlap_and_big_ids() -> None:
    lists = pd.DataFrame({C.USER_ID: [2**30, 5], C.ITEM_ID: [3, 2**30]})
    seen = pd.DataFrame({C.USER_ID: [2**30, 5], C.ITEM_ID: [2**30, 3]})
    assert _no_listed_item_seen(lists, seen)
    assert not _no_listed_item_seen(lists, pd.concat([seen, lists]))
    huge = pd.DataFrame({C.USER_ID: [-(2**62), 2**62], C.ITEM_ID: [0, 2**62]})
    assert _pair_keys(huge, huge) is None  # would overflow: the frames decide
    assert not _no_listed_item_seen(huge, huge)


def test_seen_pairs_keeps_the_first_of_each_pair_in_order(tmp_path: Path) -> None:
    from datetime import date

    from deepcuts.contracts import Dataset
    from deepcuts.pipelines.publish_gates import seen_pairs
    from deepcuts.pipelines.storage import Lake

    history = _seen_frame(5000, 9)
    history[C.RATING] = 4.0
    history[C.TS] = pd.Timestamp("2025-01-01", tz="UTC")
    lake = Lake(tmp_path)
    day = date(2025, 1, 1)
    lake.write_table(Dataset.INTERACTIONS, day, history.assign(**{C.RUN_DATE: day}))
    users = np.array([-3, 0, 7, 39])
    got = seen_pairs(lake, day, users)
    want = history[history[C.USER_ID].isin(users)][[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


@pytest.mark.parametrize("ordered", [True, False])
def test_user_codes_equal_numpy_unique(ordered: bool) -> None:
    rng = np.random.default_rng(4)
    users = rng.integers(-5, 30, 1000)
    if ordered:
        users = np.sort(users)
    frame = pd.DataFrame({C.USER_ID: users})
    got_users, got_codes = _user_codes(frame)
    want_users, want_codes = np.unique(users, return_inverse=True)
    np.testing.assert_array_equal(got_users, want_users)
    np.testing.assert_array_equal(got_codes, want_codes)
    assert got_codes.dtype == np.int64
    empty_users, empty_codes = _user_codes(frame.iloc[0:0])
    assert empty_users.size == 0 and empty_codes.size == 0


def _random_lists(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            C.USER_ID: rng.integers(0, 30, n).astype(np.int64),
            C.ITEM_ID: rng.integers(0, 25, n).astype(np.int64),
            C.RANK: rng.integers(1, 6, n).astype(np.int32),
        }
    )


@pytest.mark.parametrize(("n", "seed"), [(0, 0), (1, 1), (300, 2), (3000, 3)])
def test_top_k_lists_sort_equals_pandas_sort(n: int, seed: int) -> None:
    from deepcuts.metrics.accuracy import _sorted_by_user_rank_item

    recs = _random_lists(n, seed)
    want = recs.sort_values([C.USER_ID, C.RANK, C.ITEM_ID], kind="stable")
    pd.testing.assert_frame_equal(_sorted_by_user_rank_item(recs), want)
    as_float = recs.astype({C.RANK: np.float64})  # not plain integers: pandas' way
    want_float = as_float.sort_values([C.USER_ID, C.RANK, C.ITEM_ID], kind="stable")
    pd.testing.assert_frame_equal(_sorted_by_user_rank_item(as_float), want_float)


@pytest.mark.parametrize(("n", "seed"), [(0, 0), (1, 1), (300, 2), (3000, 3)])
def test_genre_metrics_equal_the_separate_metrics(n: int, seed: int) -> None:
    from deepcuts.metrics import GenreMatrix, genre_metrics, genres_per_list, intra_list_distance, top_k_lists

    rng = np.random.default_rng(seed)
    names = ["Drama", "Comedy", "Horror", "Noir"]
    items = pd.DataFrame(
        {
            C.ITEM_ID: np.arange(20, dtype=np.int64),  # items 20..24 are not in the catalog
            C.GENRES: [list(rng.choice(names, rng.integers(0, 3))) for _ in range(20)],
        }
    )
    genres = GenreMatrix.from_items(items)
    lists = top_k_lists(_random_lists(n, seed), 4)
    separate = (intra_list_distance(lists, genres), genres_per_list(lists, genres))
    assert genre_metrics(lists, genres) == separate


@pytest.mark.parametrize("seed", range(4))
def test_list_gates_on_a_raw_history_equal_them_on_its_distinct_pairs(seed: int) -> None:
    """publish passes the history with repeats (``seen_distinct=False``): same verdicts, counts, details."""
    lists = _lists_frame(200, seed)
    history = _seen_frame([0, 10, 400, 3000][seed], seed + 7)
    history = pd.concat([history, history.iloc[: len(history) // 2]], ignore_index=True)  # repeats
    want = _list_gates(lists, history.drop_duplicates())
    assert _list_gates(lists, history, seen_distinct=False) == want
    assert want[1]["passed"] == (seed == 0)  # the bigger histories do hit listed items


def test_each_arm_read_from_its_parts_equals_the_whole_partition_read(tmp_path: Path) -> None:
    """evaluate reads only the parts that can hold an arm: the same rows, in the same order."""
    import pyarrow as pa

    from deepcuts.contracts import Dataset
    from deepcuts.pipelines.evaluate import _parts_by_arm, _read_top_k
    from deepcuts.pipelines.storage import Lake

    day = pd.Timestamp("2025-01-01").date()
    rng = np.random.default_rng(5)

    def lists(arms: list[str]) -> pa.Table:
        n = len(arms)
        return pa.table(
            {
                C.USER_ID: pa.array(rng.integers(0, 9, n), pa.int64()),
                C.ITEM_ID: pa.array(rng.integers(0, 50, n), pa.int64()),
                C.RANK: pa.array(rng.integers(1, 15, n), pa.int32()),
                C.SCORE: pa.array(rng.random(n), pa.float32()),
                C.ARM: pa.array(arms, pa.string()),
                C.RUN_DATE: pa.array([day] * n, pa.date32()),
            }
        )

    lake = Lake(tmp_path)
    parts = {
        "a": ["svd"] * 40,
        "b": ["item_cf", "svd"] * 20,
        "c": [],
        "d": ["graph"] * 30,
        "e": ["svd"] * 25,
    }
    for part, arms in parts.items():
        lake.write_table(Dataset.CANDIDATES, day, lists(arms), part=part)
    by_arm = _parts_by_arm(lake, Dataset.CANDIDATES, day)
    assert by_arm == {"graph": ["d"], "item_cf": ["b"], "svd": ["a", "b", "e"]}
    for arm, arm_parts in by_arm.items():
        whole = _read_top_k(lake, Dataset.CANDIDATES, day, 10, arm)
        pd.testing.assert_frame_equal(_read_top_k(lake, Dataset.CANDIDATES, day, 10, arm, arm_parts), whole)
        assert len(whole) > 0
