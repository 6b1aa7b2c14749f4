"""Loaders: exact counts on the real MovieLens files, csv options on tiny hand-written files."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcuts.contracts import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, C
from deepcuts.pipelines.loaders import (
    SourceData,
    SourceError,
    _SeparatorTranslator,
    load_dataset,
    load_source,
    load_split,
    year_from_title,
)
from deepcuts.pipelines.storage import conform
from deepcuts.settings import SourceSettings, load_settings
from tests.conftest import shared_dataset


def assert_canonical(data: SourceData) -> None:
    """The frames have the canonical dtypes and convert to the contract schemas without loss."""
    items, inter = data.items, data.interactions
    assert list(items.columns) == ITEMS_SCHEMA.names
    assert list(inter.columns) == INTERACTIONS_SCHEMA.names
    assert items[C.ITEM_ID].dtype == np.int64
    assert str(items[C.YEAR].dtype) == "Int32"
    assert all(isinstance(g, list) and all(isinstance(x, str) for x in g) for g in items[C.GENRES])
    assert inter[C.USER_ID].dtype == np.int64
    assert inter[C.ITEM_ID].dtype == np.int64
    assert inter[C.RATING].dtype == np.float32
    assert str(inter[C.TS].dtype) == "datetime64[us, UTC]"
    conform(pa.Table.from_pandas(items, preserve_index=False), ITEMS_SCHEMA, "items")
    conform(pa.Table.from_pandas(inter, preserve_index=False), INTERACTIONS_SCHEMA, "interactions")


# ------------------------------------------------------------------------------------ real MovieLens
@pytest.mark.movielens
def test_ml_100k_exact_counts_and_first_rows() -> None:
    data = load_dataset("ml-100k", shared_dataset("ml-100k"))
    assert_canonical(data)
    inter = data.interactions
    assert len(inter) == 100_000
    assert inter[C.USER_ID].nunique() == 943
    assert len(data.items) == 1682 and inter[C.ITEM_ID].nunique() == 1682
    assert (data.rating_min, data.rating_max) == (1.0, 5.0)
    # u.data line 1: "196	242	3	881250949"
    first = inter.iloc[0]
    assert (first[C.USER_ID], first[C.ITEM_ID], first[C.RATING]) == (196, 242, 3.0)
    assert first[C.TS] == pd.Timestamp(881250949, unit="s", tz="UTC")
    toy = data.items.set_index(C.ITEM_ID).loc[1]
    assert toy[C.TITLE] == "Toy Story (1995)"
    assert toy[C.GENRES] == ["Animation", "Children's", "Comedy"]
    assert toy[C.YEAR] == 1995
    # item 267 is MovieLens' "unknown" placeholder: no genre flag but "unknown", no date
    unknown = data.items.set_index(C.ITEM_ID).loc[267]
    assert unknown[C.GENRES] == [] and pd.isna(unknown[C.YEAR])


@pytest.mark.movielens
def test_ml_latest_small_exact_counts() -> None:
    data = load_dataset("ml-latest-small", shared_dataset("ml-latest-small"))
    assert_canonical(data)
    inter = data.interactions
    assert len(inter) == 100_836
    assert inter[C.USER_ID].nunique() == 610
    assert len(data.items) == 9_742
    assert (data.rating_min, data.rating_max) == (0.5, 5.0)
    items = data.items.set_index(C.ITEM_ID)
    # a quoted title with commas
    assert items.loc[11, C.TITLE] == "American President, The (1995)"
    assert items.loc[11, C.GENRES] == ["Comedy", "Drama", "Romance"]
    no_genre = items[items[C.GENRES].map(len) == 0]
    assert len(no_genre) == 34  # "(no genres listed)" rows in movies.csv
    assert set(np.unique(inter[C.RATING])) == {0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5}


@pytest.mark.movielens
def test_recommenders_split() -> None:
    folder = shared_dataset("ml-100k") / "splits" / "recommenders-item-stratified-seed42"
    train, test = load_split(folder / "train.tsv", folder / "test.tsv")
    assert (len(train), len(test)) == (75_066, 24_934)
    assert list(train.columns) == INTERACTIONS_SCHEMA.names
    assert str(test[C.TS].dtype) == "datetime64[us, UTC]"


# ------------------------------------------------------------------------------------------ ml-1m
def test_ml_1m_double_colon_format(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::1\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach: The Musical (1996)::Animation|Children's|Musical\n".encode("latin-1")
        + "7::Amélie: Le Fabuleux (2001)::Comedy|Romance\n".encode("latin-1")
    )
    data = load_dataset("ml-1m", tmp_path)
    assert_canonical(data)
    assert data.interactions[C.RATING].tolist() == [5.0, 3.0, 4.0]
    assert data.interactions[C.TS].iloc[2] == pd.Timestamp("1970-01-01T00:00:01Z")
    items = data.items.set_index(C.ITEM_ID)
    assert items.loc[661, C.TITLE] == "James and the Giant Peach: The Musical (1996)"
    assert items.loc[661, C.GENRES] == ["Animation", "Children's", "Musical"]
    assert items.loc[7, C.TITLE] == "Amélie: Le Fabuleux (2001)"
    assert items[C.YEAR].tolist() == [1975, 1996, 2001]


@settings(max_examples=60, deadline=None)
@given(
    fields=st.lists(st.text(alphabet="ab: \n", max_size=6), min_size=1, max_size=12),
    read_size=st.integers(min_value=1, max_value=7),
)
def test_separator_translator_equals_replace(fields: list[str], read_size: int) -> None:
    """Reading in any chunk size gives the same text as one global replace of the separator."""
    text = "::".join(fields)
    stream = _SeparatorTranslator(io.StringIO(text), "::", "\x1f")
    pieces = []
    while piece := stream.read(read_size):
        pieces.append(piece)
    assert "".join(pieces) == text.replace("::", "\x1f")


# -------------------------------------------------------------------------------------------- csv
def test_csv_ten_point_scale_comma_space_genres_no_header_no_timestamp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "r.txt").write_text("u1;10;7\n2;10;10\n2;11;1\n3;12;x\n")
    (tmp_path / "m.txt").write_text('id;name;kinds\n10;"Spirited Away (2001)";Anime, Fantasy\n11;Heat;\n')
    options = SourceSettings(
        dataset="csv",
        ratings_file="r.txt",
        sep=";",
        header=False,
        ratings_names=("u", "i", "score"),
        user_col="u",
        item_col="i",
        rating_col="score",
        timestamp_col=None,
        rating_min=1,
        rating_max=10,
        items_file="m.txt",
        items_sep=";",
        item_id_col="id",
        title_col="name",
        genres_col="kinds",
        genre_sep=", ",
        missing_timestamp="2020-05-01T00:00:00Z",
    )
    with caplog.at_level(logging.INFO, logger="deepcuts.pipelines.loaders"):
        data = load_dataset("csv", tmp_path, options)
    assert "no timestamp column: every rating is stamped 2020-05-01T00:00:00+00:00" in caplog.text
    assert (data.rating_min, data.rating_max) == (1.0, 10.0)
    inter = data.interactions
    # nothing dropped: "u1" (not an id) and "x" (not a rating) become nulls for ingest to quarantine
    assert len(inter) == 4
    assert str(inter[C.USER_ID].dtype) == "Int64"
    assert inter[C.USER_ID].isna().tolist() == [True, False, False, False]
    assert inter[C.RATING].tolist()[:3] == [7.0, 10.0, 1.0] and np.isnan(inter[C.RATING].iloc[3])
    assert (inter[C.TS] == pd.Timestamp("2020-05-01", tz="UTC")).all()
    items = data.items.set_index(C.ITEM_ID)
    assert items.loc[10, C.GENRES] == ["Anime", "Fantasy"]
    assert items.loc[10, C.YEAR] == 2001
    assert items.loc[11, C.GENRES] == [] and pd.isna(items.loc[11, C.YEAR])


def test_csv_positional_columns_iso_timestamps_and_no_items_file(tmp_path: Path) -> None:
    (tmp_path / "ratings.tsv").write_text(
        "5\t9\t4.5\t2024-02-03T10:00:00Z\n5\t8\t2\t2024-02-04 11:30:00+01:00\n"
    )
    options = SourceSettings(
        ratings_file="ratings.tsv",
        sep="\t",
        header=False,
        user_col="0",
        item_col="1",
        rating_col="2",
        timestamp_col="3",
        items_file="",
    )
    data = load_dataset("csv", tmp_path, options)
    assert_canonical(data)
    assert data.interactions[C.TS].tolist() == [
        pd.Timestamp("2024-02-03T10:00:00Z"),
        pd.Timestamp("2024-02-04T10:30:00Z"),
    ]
    assert data.items[C.ITEM_ID].tolist() == [8, 9]
    assert data.items[C.TITLE].tolist() == ["item 8", "item 9"]


def test_csv_millisecond_epochs_and_chunked_reading(tmp_path: Path) -> None:
    rows = [f"{u},{i},{1 + (u + i) % 5},{1_600_000_000_000 + 1000 * u}" for u in range(7) for i in range(3)]
    (tmp_path / "ratings.csv").write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    (tmp_path / "items.csv").write_text("item_id,title,genres\n0,A (1999),Drama\n1,B,\n2,C,Comedy|Drama\n")
    options = SourceSettings(timestamp_unit="ms", chunk_rows=4)
    data = load_dataset("csv", tmp_path, options)
    assert_canonical(data)
    assert len(data.interactions) == 21
    assert data.interactions[C.TS].iloc[-1] == pd.Timestamp(1_600_000_006, unit="s", tz="UTC")
    assert data.items[C.GENRES].tolist() == [["Drama"], [], ["Comedy", "Drama"]]


def test_csv_missing_column_says_what_and_where(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("user,item_id,rating,timestamp\n1,2,3,4\n")
    (tmp_path / "items.csv").write_text("item_id,title,genres\n2,x,\n")
    with pytest.raises(SourceError, match=r"ratings\.csv: missing columns \['user_id'\]"):
        load_dataset("csv", tmp_path, SourceSettings())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "missing file"),
        (lambda p: (p / "ratings.csv").write_text(""), "is empty"),
        (lambda p: (p / "ratings.csv").write_bytes(b"user_id,item_id\n\xff\xfe,1\n"), "not valid utf-8"),
    ],
)
def test_unreadable_files_raise_clear_errors(tmp_path: Path, setup, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(SourceError, match=message):
        load_dataset("csv", tmp_path, SourceSettings())


def test_unknown_kind_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unknown dataset kind"):
        load_dataset("netflix", tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        load_dataset("ml-100k", tmp_path / "nope")
    with pytest.raises(SourceError, match="not a synthetic world"):
        load_dataset("synthetic", tmp_path)


def test_rating_scale_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="rating_min"):
        load_dataset("csv", tmp_path, SourceSettings(rating_min=5, rating_max=1))


def test_load_source_dispatches_on_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ratings.csv").write_text("user_id,item_id,rating,timestamp\n1,2,3,0\n")
    (tmp_path / "items.csv").write_text("item_id,title,genres\n2,Two (2002),Drama|War\n")
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    s = load_settings(source={"dataset": "csv", "path": str(tmp_path)})
    data = load_source(s)
    assert data.items[C.GENRES].tolist() == [["Drama", "War"]]
    assert data.interactions[C.RATING].tolist() == [3.0]


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Toy Story (1995)", 1995),
        ("Babylon 5 (1994-1998)", 1994),
        ("Cosmos", None),
        ("1984 (1984) ", 1984),
        ("Big (Movie) (1988)", 1988),
        ("2001: A Space Odyssey", None),
        (None, None),
    ],
)
def test_year_from_title(title: str | None, year: int | None) -> None:
    assert year_from_title(title) == year


def test_ragged_rows_name_the_separator(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::2::3::4\n1::2::3::4::5::6\n")
    (tmp_path / "movies.dat").write_text("2::Two (2000)::Drama\n")
    with pytest.raises(SourceError, match=r"ratings\.dat: cannot parse with separator '::'"):
        load_dataset("ml-1m", tmp_path)


def test_csv_ids_stay_exact_beside_a_bad_cell(tmp_path: Path) -> None:
    """Issue 14, finding 3: one non-integer cell used to send the column through float64."""
    big, p62 = 9_007_199_254_740_993, 2**62
    (tmp_path / "ratings.csv").write_text(
        f"user_id,item_id,rating,timestamp\n{big},{p62},4,1773014400\nabc,{p62 + 1},3,1773014400\n"
        f"1,1.5,3,1773014400\n"
    )
    (tmp_path / "items.csv").write_text(
        f"item_id,title,genres\n{p62},A,Drama\n{p62 + 1},B,Drama\nx,C,Drama\n"
    )
    data = load_dataset("csv", tmp_path, SourceSettings(items_file="items.csv"))
    assert data.interactions[C.USER_ID].tolist()[0] == big and pd.isna(data.interactions[C.USER_ID].iloc[1])
    assert data.interactions[C.ITEM_ID].tolist()[:2] == [p62, p62 + 1]
    assert pd.isna(data.interactions[C.ITEM_ID].iloc[2])
    assert data.items[C.ITEM_ID].tolist()[:2] == [p62, p62 + 1] and pd.isna(data.items[C.ITEM_ID].iloc[2])
