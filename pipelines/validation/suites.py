"""The two GX suites of a batch: the raw suite (formats, nulls, schema, volume) and the typed suite
(ranges, allowed values, uniqueness, reference sets, timestamp windows)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from deepcuts.contracts import C, Daypart, EventType, Reason, Segment, Variant
from deepcuts.settings import ALL_ARMS
from pipelines.validation.gx import expectation
from pipelines.validation.parsing import (
    BAD_BYTES_REGEX,
    EPOCH_FINE_REGEX,
    FLOAT_REGEX,
    INT_REGEX,
    TS_REGEX,
    is_native,
)
from pipelines.validation.rules import LINE_COLUMNS, MALFORMED_LINE, Kind, Rules, columns_of

#: Largest value of the contract's int32 ``position`` column.
INT32_MAX = 2**31 - 1

#: Columns with an allowed-values check.
ENUM_COLUMNS = frozenset({C.EVENT_TYPE, C.DAYPART, C.VARIANT, C.SEGMENT, C.ARM})


def raw_suite(kind: Kind, raw: pd.DataFrame, rules: Rules) -> list[Any]:
    cols = columns_of(kind)
    expected = [c.name for c in cols]
    present = set(raw.columns)
    exps: list[Any] = [
        expectation(
            "ExpectTableColumnsToMatchSet",
            "schema",
            level="table",
            column_set=[*expected, C.SOURCE_ROW, *(c for c in LINE_COLUMNS if c in present)],
            exact_match=not rules.allow_extra_columns,
        )
    ]
    if C.RAW_LINE in present:
        exps.append(expectation("ExpectColumnValuesToBeNull", MALFORMED_LINE, column=C.RAW_LINE))
    if not rules.allow_empty:
        exps.append(expectation("ExpectTableRowCountToBeBetween", "empty", level="table", min_value=1))
    if rules.min_rows > 0:
        exps.append(
            expectation("ExpectTableRowCountToBeBetween", "volume", level="table", min_value=rules.min_rows)
        )
    for col in cols:
        if col.name not in present:
            continue
        if col.required:
            exps.append(
                expectation("ExpectColumnValuesToNotBeNull", Reason.NULL.of(col.name), column=col.name)
            )
        if col.logical == "list" or is_native(raw[col.name], col.logical):
            continue
        if col.logical == "str" and col.name not in ENUM_COLUMNS:
            # Free text only: undecodable bytes fail the format check of numbers and times, and the
            # allowed-values check of enum columns, already.
            exps.append(
                expectation(
                    "ExpectColumnValuesToNotMatchRegex",
                    Reason.BAD_ENCODING.of(col.name),
                    column=col.name,
                    regex=BAD_BYTES_REGEX,
                )
            )
        if col.logical == "ts":
            # Quarantined with the source text kept, not converted: a file mixing units cannot be
            # told apart from one whose clock is off by a factor of 1000.
            exps.append(
                expectation(
                    "ExpectColumnValuesToNotMatchRegex",
                    Reason.EPOCH_UNIT.of(col.name),
                    column=col.name,
                    regex=EPOCH_FINE_REGEX,
                )
            )
        pattern = {"int": INT_REGEX, "float": FLOAT_REGEX, "ts": TS_REGEX}.get(col.logical)
        if pattern:
            exps.append(
                expectation(
                    "ExpectColumnValuesToMatchRegex",
                    Reason.BAD_TYPE.of(col.name),
                    column=col.name,
                    regex=pattern,
                )
            )
    return exps


def _membership(values: pd.Series, reference: np.ndarray) -> pd.Series:
    """Per row: is the value in ``reference``? (null where the value is null, so GX skips it)."""
    out = values.isin(reference).astype(object)
    out[values.isna().to_numpy()] = None
    return out


def _helper(column: str, what: str) -> str:
    """Name of a helper column of the typed GX batch (never written anywhere)."""
    return f"{column}__{what}"


def typed_suite(
    kind: Kind, typed: pd.DataFrame, rules: Rules, texts: dict[str, pd.Series]
) -> tuple[list[Any], pd.DataFrame]:
    """The typed suite and its batch: ``typed`` plus helper columns for the reference-set checks.

    Membership in a big reference set (known users, items, seen event ids) is a boolean helper column
    ``<column>__known`` / ``<column>__seen`` checked with ``expect_column_values_to_be_in_set``: GX copies
    an expectation's value set many times per run, so passing 100k ids made a run minutes long.
    """
    from great_expectations.expectations.row_conditions import Column as GXColumn

    exps: list[Any] = []
    batch = typed.copy()
    # Parsing failures that slipped past the format check (2026-02-30, an int64 overflow, a float id
    # beyond 2^53) are values that parsed to null: a helper column marks them for every parsed integer
    # or time column, and required decimals (text FLOAT_REGEX accepts always parses; a column that
    # needed no parsing cannot have them). Each check costs a pass over the batch, so no more.
    for col in columns_of(kind):
        if col.name in texts and (col.logical in ("int", "ts") or (col.logical == "float" and col.required)):
            batch[_helper(col.name, "parsed")] = texts[col.name].isna().to_numpy() | typed[col.name].notna()
            exps.append(
                expectation(
                    "ExpectColumnValuesToBeInSet",
                    Reason.BAD_TYPE.of(col.name),
                    column=_helper(col.name, "parsed"),
                    value_set=[True],
                )
            )

    def between(column: str, reason: str, **kw: Any) -> None:
        exps.append(expectation("ExpectColumnValuesToBeBetween", reason, column=column, **kw))

    def in_set(column: str, reason: str, values: Iterable[Any]) -> None:
        exps.append(expectation("ExpectColumnValuesToBeInSet", reason, column=column, value_set=list(values)))

    ts_col = {Kind.FEEDBACK: C.EVENT_TS, Kind.INTERACTIONS: C.TS}.get(kind)
    if ts_col is not None:
        if rules.ts_min is not None:
            between(ts_col, Reason.ANCIENT.of(ts_col), min_value=rules.ts_min.to_pydatetime())
        if rules.window_start is not None:
            between(ts_col, Reason.TOO_OLD.of(ts_col), min_value=rules.window_start.to_pydatetime())
        if rules.ts_max is not None:
            between(ts_col, Reason.FUTURE.of(ts_col), max_value=rules.ts_max.to_pydatetime())
    if kind in (Kind.FEEDBACK, Kind.INTERACTIONS):
        between(
            C.RATING, Reason.OUT_OF_RANGE.of(C.RATING), min_value=rules.rating_min, max_value=rules.rating_max
        )
        for column, known in ((C.ITEM_ID, rules.known_items), (C.USER_ID, rules.known_users)):
            if known is not None:
                batch[_helper(column, "known")] = _membership(typed[column], known)
                in_set(_helper(column, "known"), Reason.UNKNOWN.of(column), [True])
    if kind == Kind.FEEDBACK:
        exps.append(
            expectation("ExpectColumnValuesToBeUnique", Reason.DUPLICATE.of(C.EVENT_ID), column=C.EVENT_ID)
        )
        if rules.seen_event_ids is not None:
            batch[_helper(C.EVENT_ID, "seen")] = _membership(typed[C.EVENT_ID], rules.seen_event_ids)
            in_set(_helper(C.EVENT_ID, "seen"), Reason.SEEN_BEFORE.of(C.EVENT_ID), [False])
        in_set(C.EVENT_TYPE, Reason.BAD_VALUE.of(C.EVENT_TYPE), [e.value for e in EventType])
        in_set(C.DAYPART, Reason.BAD_VALUE.of(C.DAYPART), [e.value for e in Daypart])
        in_set(C.VARIANT, Reason.BAD_VALUE.of(C.VARIANT), [e.value for e in Variant])
        in_set(C.SEGMENT, Reason.BAD_VALUE.of(C.SEGMENT), [e.value for e in Segment])
        in_set(C.ARM, Reason.BAD_VALUE.of(C.ARM), ALL_ARMS)
        between(C.POSITION, Reason.OUT_OF_RANGE.of(C.POSITION), min_value=0, max_value=INT32_MAX)
        # Selection probabilities live in (0, 1]: zero would make inverse-propensity weights infinite.
        between(
            C.PROPENSITY, Reason.OUT_OF_RANGE.of(C.PROPENSITY), min_value=0.0, max_value=1.0, strict_min=True
        )
        exps.append(
            expectation(
                "ExpectColumnValuesToNotBeNull",
                Reason.NULL.of(C.RATING),
                column=C.RATING,
                row_condition=GXColumn(C.EVENT_TYPE) == EventType.RATING.value,
            )
        )
    if kind == Kind.ITEMS:
        exps.append(
            expectation("ExpectColumnValuesToBeUnique", Reason.DUPLICATE.of(C.ITEM_ID), column=C.ITEM_ID)
        )
        # Genre names are free text too (a list, so checked here rather than by a regex on a column).
        bad_bytes = re.compile(BAD_BYTES_REGEX)
        batch[_helper(C.GENRES, "clean")] = typed[C.GENRES].map(
            lambda gs: gs is None or not any(bad_bytes.search(g) for g in gs)
        )
        in_set(_helper(C.GENRES, "clean"), Reason.BAD_ENCODING.of(C.GENRES), [True])
        between(C.YEAR, Reason.OUT_OF_RANGE.of(C.YEAR), min_value=rules.year_min, max_value=rules.year_max)
    return exps, batch
