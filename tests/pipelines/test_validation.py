"""GX suites and row quarantine: a table of malformed feedback inputs, each with its known verdict.

Every case starts from ten valid feedback rows for run date 2026-03-10, breaks them in one way, writes
them as the app would (CSV text, Parquet, or raw bytes), reads them back with ``read_raw`` and validates
them with the nightly rules. A row-level case names the reason and the rows (``source_row``) that must be
quarantined, and checks that every other row is accepted and that rows are conserved; a table-level
case names a phrase of the ``ValidationFailed`` message.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepcuts.contracts import FEEDBACK_SCHEMA, C
from deepcuts.pipelines.validation import (
    Kind,
    Rules,
    ValidationFailed,
    day_bounds,
    quarantine_table,
    read_raw,
    validate_chunks,
    validate_frame,
)

RUN_DATE = date(2026, 3, 10)
START, END = day_bounds(RUN_DATE)
N = 10
RULES = Rules(
    rating_min=1.0,
    rating_max=5.0,
    ts_min=pd.Timestamp("1995-01-01", tz="UTC"),
    window_start=START - pd.Timedelta(days=3),
    ts_max=END + pd.Timedelta(minutes=15),
    known_users=np.array([1, 2, 3, 4], dtype=np.int64),
    known_items=np.arange(100, 110, dtype=np.int64),
    seen_event_ids=np.array(["yesterday-1", "yesterday-2"], dtype=object),
)


def good_rows(n: int = N) -> pd.DataFrame:
    """Ten valid events as the app logs them (text): impression, click, rating repeating."""
    kinds = ["impression", "click", "rating"]
    return pd.DataFrame(
        {
            C.EVENT_ID: [f"ev-{i}" for i in range(n)],
            C.EVENT_TS: [
                (START + pd.Timedelta(hours=1 + i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)
            ],
            C.USER_ID: [str(1 + i % 4) for i in range(n)],
            C.ITEM_ID: [str(100 + i % 10) for i in range(n)],
            C.EVENT_TYPE: [kinds[i % 3] for i in range(n)],
            C.POSITION: [str(i % 5) for i in range(n)],
            C.RATING: ["4.5" if kinds[i % 3] == "rating" else None for i in range(n)],
            C.ARM: ["svd", "long_tail"] * (n // 2),
            C.LIST_VERSION: ["v7"] * n,
            C.VARIANT: ["control", "treatment"] * (n // 2),
            C.SEGMENT: ["casual"] * n,
            C.DAYPART: ["morning", "evening"] * (n // 2),
            C.PROPENSITY: ["0.25"] * n,
        }
    )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def setv(row: int, column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype(object)
        frame.loc[row, column] = value
        return frame

    return edit


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    #: row-level: reason and the quarantined rows; table-level: a phrase of the error.
    reason: str | None = None
    rows: tuple[int, ...] = ()
    error: str | None = None
    rules: Rules = RULES


def edited(*edits: Callable[[pd.DataFrame], pd.DataFrame], fmt: str = "csv") -> Callable[[], bytes]:
    def make() -> bytes:
        frame = good_rows()
        for edit in edits:
            frame = edit(frame)
        return csv_bytes(frame) if fmt == "csv" else parquet_bytes(frame)

    return make


def typed_frame() -> pd.DataFrame:
    """The good rows in the contract's Arrow types (what the simulator writes)."""
    import pyarrow as pa

    frame = good_rows()
    table = pa.table(
        {
            f.name: pa.array(
                pd.to_datetime(frame[f.name], utc=True) if f.name == C.EVENT_TS else frame[f.name]
            ).cast(f.type)
            for f in FEEDBACK_SCHEMA
        }
    )
    return table.to_pandas()


def latin1_in_row_3() -> bytes:
    text = csv_bytes(good_rows()).decode()
    return text.replace(",v7,", ",caf\u00e9,", 4).encode("latin-1")


def ragged_line_in_row_2() -> bytes:
    """Row 2's line has two fields more than the header."""
    lines = csv_bytes(good_rows()).decode().splitlines()
    lines[3] += ",debug,1"
    return ("\n".join(lines) + "\n").encode()


def short_line_in_row_5() -> bytes:
    """Row 5 (a rating event) stops after the event type: 8 of 13 fields missing."""
    lines = csv_bytes(good_rows()).decode().splitlines()
    lines[6] = ",".join(lines[6].split(",")[:5])
    return ("\n".join(lines) + "\n").encode()


CASES = [
    # --- schema and file-level problems (table-level) ------------------------------------------------
    Case("missing column", edited(lambda f: f.drop(columns=[C.PROPENSITY])), error="missing columns"),
    Case("csv with an extra column", edited(lambda f: f.assign(debug="x")), error="unexpected columns"),
    Case("garbage bytes", lambda: np.random.default_rng(7).bytes(600), error="binary content"),
    Case("truncated parquet", lambda: parquet_bytes(good_rows())[:200], error="not a readable Parquet"),
    Case("empty file", lambda: b"", error="missing columns"),
    Case("header only", lambda: csv_bytes(good_rows().iloc[:0]), error="no rows"),
    Case(
        "volume collapse",
        edited(),
        error="volume collapse",
        rules=replace(RULES, min_rows=40, min_rows_note="20% of a median of 200"),
    ),
    Case(
        "quarantine share above the setting",
        edited(setv(0, C.USER_ID, "x"), setv(1, C.USER_ID, "y")),
        error="max_quarantine_share",
        rules=replace(RULES, max_quarantine_share=0.1),
    ),
    # --- nulls -------------------------------------------------------------------------------------------
    Case("null user_id", edited(setv(2, C.USER_ID, None)), f"null:{C.USER_ID}", (2,)),
    Case("null event_ts", edited(setv(4, C.EVENT_TS, None)), f"null:{C.EVENT_TS}", (4,)),
    Case("null event_id", edited(setv(0, C.EVENT_ID, None)), f"null:{C.EVENT_ID}", (0,)),
    Case("rating event without rating", edited(setv(2, C.RATING, None)), f"null:{C.RATING}", (2,)),
    # --- wrong types ---------------------------------------------------------------------------------------
    Case("text in user_id", edited(setv(1, C.USER_ID, "abc")), f"bad_type:{C.USER_ID}", (1,)),
    Case("fractional position", edited(setv(3, C.POSITION, "1.5")), f"bad_type:{C.POSITION}", (3,)),
    Case("text propensity", edited(setv(5, C.PROPENSITY, "high")), f"bad_type:{C.PROPENSITY}", (5,)),
    Case("unparseable timestamp", edited(setv(6, C.EVENT_TS, "yesterday")), f"bad_type:{C.EVENT_TS}", (6,)),
    Case(
        "impossible calendar date",
        edited(setv(7, C.EVENT_TS, "2026-02-30T10:00:00Z")),
        f"bad_type:{C.EVENT_TS}",
        (7,),
    ),
    Case(
        "fractional user id in parquet",
        edited(lambda f: f.assign(**{C.USER_ID: [1.0, 2.5, *[1.0] * 8]}), fmt="parquet"),
        f"bad_type:{C.USER_ID}",
        (1,),
    ),
    Case("non-UTF-8 text", latin1_in_row_3, f"bad_encoding:{C.LIST_VERSION}", (0, 1, 2, 3)),
    Case("line with extra fields", ragged_line_in_row_2, f"bad_type:{C.PROPENSITY}", (2,)),
    Case("truncated line", short_line_in_row_5, f"null:{C.RATING}", (5,)),
    # --- duplicates -----------------------------------------------------------------------------------------
    Case(
        "duplicate event id in the file",
        edited(setv(8, C.EVENT_ID, "ev-1")),
        f"duplicate:{C.EVENT_ID}",
        (1, 8),
    ),
    Case(
        "event id accepted on an earlier day",
        edited(setv(9, C.EVENT_ID, "yesterday-2")),
        f"seen_before:{C.EVENT_ID}",
        (9,),
    ),
    # --- allowed values -----------------------------------------------------------------------------------
    Case("bad event_type", edited(setv(0, C.EVENT_TYPE, "view")), f"bad_value:{C.EVENT_TYPE}", (0,)),
    Case("bad daypart", edited(setv(1, C.DAYPART, "brunch")), f"bad_value:{C.DAYPART}", (1,)),
    Case("bad variant", edited(setv(2, C.VARIANT, "B")), f"bad_value:{C.VARIANT}", (2,)),
    Case("bad segment", edited(setv(3, C.SEGMENT, "vip")), f"bad_value:{C.SEGMENT}", (3,)),
    Case("unknown arm", edited(setv(4, C.ARM, "magic")), f"bad_value:{C.ARM}", (4,)),
    # --- ranges ---------------------------------------------------------------------------------------------
    Case("rating above the scale", edited(setv(5, C.RATING, "6")), f"out_of_range:{C.RATING}", (5,)),
    Case("rating below the scale", edited(setv(8, C.RATING, "0.5")), f"out_of_range:{C.RATING}", (8,)),
    Case("negative position", edited(setv(6, C.POSITION, "-1")), f"out_of_range:{C.POSITION}", (6,)),
    Case("zero propensity", edited(setv(7, C.PROPENSITY, "0")), f"out_of_range:{C.PROPENSITY}", (7,)),
    Case("propensity above one", edited(setv(8, C.PROPENSITY, "1.5")), f"out_of_range:{C.PROPENSITY}", (8,)),
    # --- time window ---------------------------------------------------------------------------------------
    Case(
        "future timestamp", edited(setv(0, C.EVENT_TS, "2026-03-11T06:00:00Z")), f"future:{C.EVENT_TS}", (0,)
    ),
    Case(
        "epoch-zero timestamp",
        edited(setv(1, C.EVENT_TS, "1970-01-01T00:00:00Z")),
        f"ancient:{C.EVENT_TS}",
        (1,),
    ),
    Case(
        "event older than the late window",
        edited(setv(2, C.EVENT_TS, "2026-03-05T12:00:00Z")),
        f"too_old:{C.EVENT_TS}",
        (2,),
    ),
    # --- referential integrity ------------------------------------------------------------------------------
    Case("unknown user", edited(setv(3, C.USER_ID, "999")), f"unknown:{C.USER_ID}", (3,)),
    Case("unknown item", edited(setv(4, C.ITEM_ID, "5")), f"unknown:{C.ITEM_ID}", (4,)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_feedback(case: Case) -> None:
    payload = case.make()
    if case.error is not None:
        with pytest.raises(ValidationFailed) as info:
            frame = read_raw(payload, case.name)
            validate_frame(frame, Kind.FEEDBACK, case.rules, name=case.name, run_date=RUN_DATE)
        assert case.error in str(info.value)
        return
    frame = read_raw(payload, case.name)
    out = validate_frame(frame, Kind.FEEDBACK, case.rules, name=case.name, run_date=RUN_DATE)
    assert out.rows_in == N == out.accepted + out.quarantined
    q = out.quarantine
    assert tuple(q[C.SOURCE_ROW]) == case.rows
    for reasons in q[C.QUARANTINE_REASON]:
        assert case.reason in reasons.split("; ")
    assert out.reasons[case.reason] == len(case.rows)
    # Accepted rows are typed and in the contract's columns; nothing from a bad row leaks through.
    assert list(out.valid.columns) == FEEDBACK_SCHEMA.names
    assert not set(out.valid[C.EVENT_ID]) & set(q[C.EVENT_ID].dropna())
    quarantine_table(q)  # the quarantine can always be stored


def test_quarantine_keeps_raw_text() -> None:
    frame = read_raw(edited(setv(1, C.USER_ID, "abc"), setv(1, C.RATING, "n/a"))(), "raw")
    out = validate_frame(frame, Kind.FEEDBACK, RULES, name="raw", run_date=RUN_DATE)
    row = out.quarantine.iloc[0]
    assert row[C.USER_ID] == "abc" and row[C.RATING] == "n/a" and row[C.EVENT_ID] == "ev-1"
    assert row[C.QUARANTINE_REASON] == f"bad_type:{C.RATING}; bad_type:{C.USER_ID}"


def test_non_utf8_bytes_are_kept_as_escapes() -> None:
    out = validate_frame(read_raw(latin1_in_row_3(), "latin"), Kind.FEEDBACK, RULES, run_date=RUN_DATE)
    assert set(out.quarantine[C.LIST_VERSION]) == {"caf\\xe9"}


def test_late_event_inside_window_is_accepted() -> None:
    frame = read_raw(edited(setv(2, C.EVENT_TS, "2026-03-08T12:00:00Z"))(), "late")
    out = validate_frame(frame, Kind.FEEDBACK, RULES, run_date=RUN_DATE)
    assert out.quarantined == 0
    assert out.valid.loc[2, C.EVENT_TS] == pd.Timestamp("2026-03-08T12:00:00Z")


def test_typed_parquet_and_epoch_seconds_pass() -> None:
    typed = validate_frame(typed_frame(), Kind.FEEDBACK, RULES, run_date=RUN_DATE)
    assert typed.quarantined == 0 and typed.accepted == N
    epoch = str(int((START + pd.Timedelta(hours=2)).timestamp()))
    text = validate_frame(
        read_raw(edited(setv(0, C.EVENT_TS, epoch))(), "epoch"), Kind.FEEDBACK, RULES, run_date=RUN_DATE
    )
    assert text.quarantined == 0
    assert text.valid.loc[0, C.EVENT_TS] == START + pd.Timedelta(hours=2)
    # Text and typed inputs give the same canonical rows.
    pd.testing.assert_frame_equal(
        validate_frame(read_raw(edited()(), "t"), Kind.FEEDBACK, RULES).valid, typed.valid, check_dtype=False
    )


def test_extra_columns_allowed_by_setting_are_dropped() -> None:
    frame = read_raw(edited(lambda f: f.assign(debug="x"))(), "extra")
    out = validate_frame(frame, Kind.FEEDBACK, replace(RULES, allow_extra_columns=True), run_date=RUN_DATE)
    assert out.accepted == N and list(out.valid.columns) == FEEDBACK_SCHEMA.names


def test_items_and_interactions_suites() -> None:
    items = pd.DataFrame(
        {
            C.ITEM_ID: ["1", "2", "2", "x"],
            C.TITLE: ["A", "B", "B again", "C"],
            C.GENRES: ["Drama|Anime", "", "Comedy", "Drama"],
            C.YEAR: ["1999", "3001", None, "2001"],
        }
    )
    out = validate_frame(items, Kind.ITEMS, Rules(year_max=2027), run_date=RUN_DATE)
    assert dict(zip(out.quarantine[C.SOURCE_ROW], out.quarantine[C.QUARANTINE_REASON], strict=True)) == {
        1: f"duplicate:{C.ITEM_ID}; out_of_range:{C.YEAR}",
        2: f"duplicate:{C.ITEM_ID}",
        3: f"bad_type:{C.ITEM_ID}",
    }
    assert out.valid.loc[0, C.GENRES] == ["Drama", "Anime"]

    inter = pd.DataFrame(
        {
            C.USER_ID: [1, 2, 3, 4],
            C.ITEM_ID: [1, 2, 9, 1],
            C.RATING: [4.0, 11.0, 3.0, 8.0],
            C.TS: pd.to_datetime(
                ["2026-03-10 01:00", "2026-03-10 02:00", "2026-03-10 03:00", "1980-01-01 00:00"], utc=True
            ),
        }
    )
    rules = Rules(
        rating_min=1.0,
        rating_max=10.0,
        ts_min=pd.Timestamp("1995-01-01", tz="UTC"),
        ts_max=END,
        known_items=np.array([1, 2]),
    )
    out = validate_frame(
        inter, Kind.INTERACTIONS, rules, run_date=RUN_DATE, source_rows=np.array([10, 11, 12, 13])
    )
    assert dict(zip(out.quarantine[C.SOURCE_ROW], out.quarantine[C.QUARANTINE_REASON], strict=True)) == {
        11: f"out_of_range:{C.RATING}",
        12: f"unknown:{C.ITEM_ID}",
        13: f"ancient:{C.TS}",
    }
    assert out.valid[C.USER_ID].tolist() == [1]


def chunk_world() -> tuple[pd.DataFrame, Rules]:
    """Twelve source ratings as text (the csv loader's form), five of them bad in different ways."""
    inter = pd.DataFrame(
        {
            C.USER_ID: ["1", "2", "x", "4", "5", "6", "7", " 8 ", "9", "10", "11", "12"],
            C.ITEM_ID: ["1", "2", "1", "9", "1", "2", "1", "2", "1", "2", "1", None],
            C.RATING: ["4", "11", "3", "3", "5", "2.5", "1", "4", "3", "5", "2", "4"],
            C.TS: ["2026-03-10T01:00:00Z"] * 5 + ["1980-01-01", "2026-03-10 02:00"] + ["1773104400"] * 5,
        }
    )
    rules = Rules(
        rating_min=1.0,
        rating_max=10.0,
        ts_min=pd.Timestamp("1995-01-01", tz="UTC"),
        ts_max=END,
        known_items=np.array([1, 2]),
        allow_empty=True,
    )
    return inter, rules


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 11])
def test_validate_chunks_is_one_batch_validated_in_slices(chunk_rows: int) -> None:
    """Slices of any size give the outcome of one batch: rows, reasons, order, expectations."""
    inter, rules = chunk_world()
    positions = np.arange(12, dtype=np.int64)
    whole = validate_frame(inter, Kind.INTERACTIONS, rules, run_date=RUN_DATE, source_rows=positions)
    assert whole.quarantined == 5  # by hand: 1 out of range, 2 bad user, 3 unknown item, 5 ancient, 11 null
    sliced = validate_chunks(
        inter, Kind.INTERACTIONS, rules, chunk_rows=chunk_rows, run_date=RUN_DATE, positions=positions
    )
    pd.testing.assert_frame_equal(sliced.valid, whole.valid)
    pd.testing.assert_frame_equal(sliced.quarantine, whole.quarantine)
    assert (sliced.rows_in, sliced.reasons, sliced.expectations) == (12, whole.reasons, whole.expectations)
    assert sliced.summary() == whole.summary()


def test_validate_chunks_takes_the_rows_at_positions_and_checks_the_share_on_the_total() -> None:
    inter, rules = chunk_world()
    picked = np.array([0, 2, 4, 6, 8])  # rows 0, 4, 6, 8 valid; row 2 (user "x") quarantined
    out = validate_chunks(
        inter, Kind.INTERACTIONS, replace(rules, max_quarantine_share=0.2), chunk_rows=2, positions=picked
    )
    assert out.valid[C.USER_ID].tolist() == [1, 5, 7, 9]
    assert out.quarantine[C.SOURCE_ROW].tolist() == [2]
    # 1 of 5 rows (20 %) is within the share although the slice [2, 4] alone is half bad
    with pytest.raises(ValidationFailed, match="2 of 5 rows"):
        validate_chunks(
            inter,
            Kind.INTERACTIONS,
            replace(rules, max_quarantine_share=0.3),
            chunk_rows=2,
            positions=np.array([0, 1, 2, 4, 6]),
        )
    with pytest.raises(ValueError, match="one piece"):
        validate_chunks(good_rows(), Kind.FEEDBACK, RULES, chunk_rows=3)


BREAKERS: list[tuple[str, object]] = [
    (C.USER_ID, "zz"),
    (C.ITEM_ID, "77777"),
    (C.EVENT_TYPE, "hover"),
    (C.POSITION, "-3"),
    (C.RATING, "99"),
    (C.PROPENSITY, "0"),
    (C.EVENT_TS, "garbage"),
    (C.DAYPART, None),
    (C.EVENT_ID, None),
]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, N - 1), st.integers(0, len(BREAKERS) - 1)), max_size=6))
def test_rows_are_conserved_and_partitioned(edits: list[tuple[int, int]]) -> None:
    """Whatever breaks: in = accepted + quarantined, and every source row lands in exactly one side."""
    frame = good_rows().astype(object)
    for row, which in edits:
        column, value = BREAKERS[which]
        frame.loc[row, column] = value
    out = validate_frame(
        read_raw(csv_bytes(frame), "prop"), Kind.FEEDBACK, replace(RULES, max_quarantine_share=1.0)
    )
    assert out.rows_in == out.accepted + out.quarantined == N
    quarantined = set(out.quarantine[C.SOURCE_ROW])
    assert quarantined <= {row for row, _ in edits}
    assert sum(out.reasons.values()) >= out.quarantined
    assert set(out.valid[C.EVENT_ID]).isdisjoint(set(frame.loc[sorted(quarantined), C.EVENT_ID]))


def test_integer_text_is_parsed_exactly() -> None:
    """Signs, a ``.0`` tail and 18-digit ids parse without a float round trip."""
    big = 123_456_789_012_345_678
    frame = good_rows().astype(object)
    frame.loc[0, C.USER_ID], frame.loc[1, C.USER_ID], frame.loc[2, C.ITEM_ID] = "+2", "3.0", str(big)
    rules = replace(RULES, known_items=np.array([*range(100, 110), big], dtype=np.int64))
    out = validate_frame(read_raw(csv_bytes(frame), "ints"), Kind.FEEDBACK, rules)
    assert out.quarantined == 0
    assert out.valid[C.USER_ID].tolist()[:2] == [2, 3] and out.valid.loc[2, C.ITEM_ID] == big


# --- CSV lines that cannot be parsed (issue 14, finding 2) ------------------------------------------------
def minute_rows(n: int) -> pd.DataFrame:
    """``n`` valid events one minute apart from the start of the run date (any ``n``)."""
    frame = good_rows(n + n % 2).iloc[:n].copy()
    frame[C.EVENT_TS] = [(START + pd.Timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)]
    return frame


def stray_quote_csv(n: int, at: int) -> tuple[bytes, str]:
    """``n`` valid rows as CSV with an unbalanced double quote opening row ``at``'s daypart; and that line."""
    lines = csv_bytes(minute_rows(n)).decode().splitlines()
    fields = lines[at + 1].split(",")
    fields[11] = '"' + fields[11]
    lines[at + 1] = ",".join(fields)
    return ("\n".join(lines) + "\n").encode(), lines[at + 1]


def test_a_stray_quote_quarantines_its_line_and_loses_nothing() -> None:
    """1,343 rows with a stray quote at row 1000: 1,342 accepted + 1 quarantined (was 1000 + 0)."""
    payload, line = stray_quote_csv(1343, 1000)
    payload = "\ufeff".encode() + payload  # with a byte order mark, as spreadsheet exports write
    out = validate_frame(read_raw(payload, "stray"), Kind.FEEDBACK, RULES, run_date=RUN_DATE)
    assert (out.rows_in, out.accepted, out.quarantined) == (1343, 1342, 1)
    row = out.quarantine.iloc[0]
    assert row[C.SOURCE_ROW] == 1000 and row[C.QUARANTINE_REASON] == "malformed_line"
    # line 1 is the header, so data row 1000 is line 1002; the text is kept byte for byte
    assert row[C.SOURCE_LINE] == "1002" and row[C.RAW_LINE] == line
    assert out.valid[C.EVENT_ID].tolist() == [f"ev-{i}" for i in range(1343) if i != 1000]
    assert C.RAW_LINE not in out.valid.columns
    quarantine_table(out.quarantine)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 11), st.sampled_from(['"', '"x"y', "\r", "\n\n"])), max_size=4))
def test_csv_rows_in_is_the_number_of_physical_lines(damage: list[tuple[int, str]]) -> None:
    """Quotes and line breaks anywhere: every non-empty line after the header is one row in, none lost."""
    lines = csv_bytes(minute_rows(12)).decode().splitlines()
    for row, text in damage:
        fields = lines[row + 1].split(",")
        fields[0] = text + fields[0]
        lines[row + 1] = ",".join(fields)
    payload = ("\n".join(lines) + "\n").encode()
    physical = [x for x in re.split(r"\r\n|\r|\n", payload.decode())[1:] if x != ""]
    out = validate_frame(
        read_raw(payload, "damaged"),
        Kind.FEEDBACK,
        replace(RULES, max_quarantine_share=1.0),
        run_date=RUN_DATE,
    )
    assert out.rows_in == len(physical) == out.accepted + out.quarantined


# --- exact 64-bit ids (issue 14, finding 3) ---------------------------------------------------------------
P62 = 2**62
INT64_MAX = 2**63 - 1


def test_ids_are_exact_int64_and_outside_int64_is_bad_type() -> None:
    """2^62 and 2^62+1 stay distinct, 2^53+1 exact, the int64 bounds pass, one past them is ``bad_type``."""
    ids = [P62, P62 + 1, 2**53 + 1, INT64_MAX, -(2**63)]
    frame = good_rows().astype(object)
    for row, value in enumerate(ids):
        frame.loc[row, C.ITEM_ID] = str(value)
    frame.loc[5, C.ITEM_ID] = str(INT64_MAX + 1)
    frame.loc[6, C.ITEM_ID] = "abc"
    frame.loc[7, C.ITEM_ID] = "\u0661\u0660\u0662"  # Arabic-Indic digits: the regex \\d matches them
    rules = replace(
        RULES, known_items=np.array([*range(100, 110), *ids], dtype=np.int64), max_quarantine_share=1
    )
    out = validate_frame(read_raw(csv_bytes(frame), "ids"), Kind.FEEDBACK, rules, run_date=RUN_DATE)
    assert out.valid[C.ITEM_ID].tolist()[:5] == ids
    assert dict(zip(out.quarantine[C.SOURCE_ROW], out.quarantine[C.QUARANTINE_REASON], strict=True)) == {
        5: f"bad_type:{C.ITEM_ID}",
        6: f"bad_type:{C.ITEM_ID}",
        7: f"bad_type:{C.ITEM_ID}",
    }
    assert out.quarantine[C.ITEM_ID].tolist() == [str(INT64_MAX + 1), "abc", "\u0661\u0660\u0662"]


def test_float_ids_beyond_2_53_are_not_exact() -> None:
    """A Parquet id column of doubles: 2^53 + 2 cannot be told from its neighbours, so it is ``bad_type``."""
    frame = good_rows()
    frame[C.ITEM_ID] = [float(100 + i) for i in range(N - 1)] + [float(2**53 + 2)]
    out = validate_frame(
        read_raw(parquet_bytes(frame), "floats"),
        Kind.FEEDBACK,
        replace(RULES, known_items=None),
        run_date=RUN_DATE,
    )
    assert out.quarantine[C.QUARANTINE_REASON].tolist() == [f"bad_type:{C.ITEM_ID}"]
    assert out.valid[C.ITEM_ID].tolist() == list(range(100, 109))


def test_every_quarantine_reason_is_documented() -> None:
    """The reasons table of docs/data-contracts.md lists every code of ``deepcuts.contracts.Reason``."""
    from pathlib import Path

    from deepcuts.contracts import Reason

    doc = (Path(__file__).parents[2] / "docs" / "data-contracts.md").read_text()
    table = doc.split("### Reasons (row-level)", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)", table, flags=re.MULTILINE))
    assert documented == {r.value for r in Reason}
