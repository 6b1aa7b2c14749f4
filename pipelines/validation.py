"""Great Expectations suites for incoming items, interactions and feedback events, with row quarantine.

One call, :func:`validate_frame`, takes a raw frame (any dtypes: strings from a CSV, typed columns from
a loader or Parquet), runs two GX suites on it and splits it into valid rows (typed, canonical columns)
and quarantined rows (every original value as a string, the original row position and the reasons):

1. the **raw** suite runs on the frame as received (plus ``source_row``): the column set (schema), the
   row count (empty day, volume floor), CSV lines that were not one record (``malformed_line``), nulls
   in required columns, the text format of every value that must be parsed into a number or a
   timestamp (``bad_type``; ``epoch_unit`` for an epoch in ms) and undecodable bytes or NULs in free
   text (``bad_encoding``);
2. values are parsed into the contract types (a value GX flagged as malformed becomes null; ids are
   exact int64, see :func:`exact_int64`);
3. the **typed** suite runs on the parsed frame: ranges, allowed values, uniqueness, referential
   integrity, timestamp windows, NULs in genre names, and a last check that every parsed column has a
   value wherever its text had one, which catches what GX's format check let through but the parser
   could not read (``2026-02-30``, an id outside int64).

Every expectation carries its reason code in ``meta`` (e.g. ``unknown:user_id``) and whether it is a
table-level or a row-level check. GX runs with ``result_format=COMPLETE`` and
``unexpected_index_column_names=[source_row]``; the rows GX reports unexpected are exactly the rows
quarantined, with every reason GX gave for them joined by ``"; "``. A failed table-level expectation
raises :class:`ValidationFailed`. Counts are conserved: ``rows_in = accepted + quarantined`` (asserted).

GX is slow to start, so one ephemeral GX context is shared by the whole process (:func:`gx_context`).
Big id sets never go into an expectation (GX copies value sets many times per run): membership of an id
in the known users / items / seen event ids is a boolean helper column of the typed batch
(``user_id__known``, ``event_id__seen``) that GX checks with ``expect_column_values_to_be_in_set``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from deepcuts.contracts import (
    FEEDBACK_SCHEMA,
    INTERACTIONS_SCHEMA,
    ITEMS_SCHEMA,
    C,
    Daypart,
    EventType,
    Reason,
    Segment,
    Variant,
)
from deepcuts.progress import get_logger
from deepcuts.settings import ALL_ARMS

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

log = get_logger(__name__)
# GX logs its start-up at INFO (functions it skips, temporary folders): noise in task logs.
for _name in ("great_expectations", "great_expectations.data_context.types.base"):
    logging.getLogger(_name).setLevel(logging.WARNING)

#: Largest value of the contract's int32 ``position`` column.
INT32_MAX = 2**31 - 1

#: Ids and other integers are exact signed 64-bit integers: ``[-2**63, 2**63 - 1]``. Text is parsed
#: digit by digit (never through a float); a value outside that range is ``bad_type``.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Largest integer a float64 holds exactly: an id in a float column beyond it may have been rounded.
FLOAT_EXACT_MAX = 2**53

# Text formats of values that must be parsed. They are the type checks GX runs on text columns; the
# parsers below accept every string these match (19 digits may still overflow int64: then bad_type).
INT_REGEX = r"^\s*[+-]?[0-9]{1,19}(?:\.0*)?\s*$"  # ASCII digits: \d also matches other scripts' digits
FLOAT_REGEX = r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?\s*$"
#: ISO 8601 (date, optional time, optional ``Z``/offset) or whole epoch seconds.
TS_REGEX = (
    r"^\s*(?:\d{1,11}|\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?|UTC)?)\s*$"
)
#: Text that is not clean UTF-8: bytes that were not valid UTF-8 (kept as ``\\xNN`` text by
#: :func:`read_raw`, ``backslashreplace``) or a NUL, which PostgreSQL text (and its COPY) cannot hold.
BAD_BYTES_REGEX = r"\\x[89a-fA-F][0-9a-fA-F]|\x00"
#: An epoch number of 12 to 19 digits: milliseconds (or finer), never plausible seconds (>= year 5138).
EPOCH_FINE_REGEX = r"^\s*\d{12,19}\s*$"

#: Reason of a CSV line that is not one record (see :func:`read_raw`); the row has only these columns.
MALFORMED_LINE = Reason.MALFORMED_LINE.value
LINE_COLUMNS = (C.SOURCE_LINE, C.RAW_LINE)

#: Columns with an allowed-values check.
ENUM_COLUMNS = frozenset({C.EVENT_TYPE, C.DAYPART, C.VARIANT, C.SEGMENT, C.ARM})

_EPOCH_REGEX = re.compile(r"^\s*\d{1,11}\s*$")


class ValidationFailed(RuntimeError):  # noqa: N818 - the name the other steps catch
    """A table-level check failed: the batch is rejected as a whole and nothing is written downstream."""

    def __init__(self, kind: str, where: str, problems: Sequence[str]) -> None:
        self.kind = kind
        self.where = where
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{kind} validation failed for {where}:\n{lines}")


class Kind(StrEnum):
    """The three incoming tables."""

    ITEMS = "items"
    INTERACTIONS = "interactions"
    FEEDBACK = "feedback"


_SCHEMAS: dict[Kind, pa.Schema] = {
    Kind.ITEMS: ITEMS_SCHEMA,
    Kind.INTERACTIONS: INTERACTIONS_SCHEMA,
    Kind.FEEDBACK: FEEDBACK_SCHEMA,
}


def _logical(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type):
        return "ts"
    if pa.types.is_list(arrow_type):
        return "list"
    return "str"


@dataclass(frozen=True)
class Column:
    name: str
    logical: str  # int | float | ts | str | list
    required: bool


def columns_of(kind: Kind) -> list[Column]:
    """The contract columns of ``kind``: name, logical type and whether a null is a row error."""
    return [Column(f.name, _logical(f.type), not f.nullable) for f in _SCHEMAS[Kind(kind)]]


@dataclass(frozen=True)
class Rules:
    """Everything a batch is checked against besides its own content.

    Timestamps are UTC. ``None`` switches a check off (e.g. no catalog known yet: no item check).
    """

    rating_min: float = 1.0
    rating_max: float = 5.0
    #: Earliest plausible timestamp (bad clocks, epoch zero): older is ``ancient``.
    ts_min: pd.Timestamp | None = None
    #: Feedback only: events older than this are outside the late window (``too_old``).
    window_start: pd.Timestamp | None = None
    #: Latest acceptable timestamp: newer is ``future``.
    ts_max: pd.Timestamp | None = None
    known_users: np.ndarray | None = None
    known_items: np.ndarray | None = None
    #: Feedback: event ids accepted on earlier days (``seen_before``).
    seen_event_ids: np.ndarray | None = None
    #: Items: latest plausible release year.
    year_max: int | None = None
    year_min: int = 1870
    #: Table-level: an empty batch is allowed (first night, empty delta).
    allow_empty: bool = False
    #: Table-level: columns outside the contract are dropped instead of failing the batch.
    allow_extra_columns: bool = False
    #: Table-level volume floor (0 = none): fewer rows is a collapse.
    min_rows: int = 0
    #: Describes ``min_rows`` in the error message (e.g. "20% of the trailing median 500").
    min_rows_note: str = ""
    #: Table-level: quarantined / rows_in above this fails the batch.
    max_quarantine_share: float = 1.0
    #: Separator of genres given as one string.
    genre_sep: str = "|"


@dataclass
class Outcome:
    """Result of validating one batch."""

    kind: Kind
    rows_in: int
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    reasons: dict[str, int]
    expectations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.valid)

    @property
    def quarantined(self) -> int:
        return len(self.quarantine)

    def summary(self) -> dict[str, Any]:
        """Counts and reasons, JSON-serialisable and deterministic."""
        return {
            "rows_in": self.rows_in,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "reasons": dict(sorted(self.reasons.items())),
            "expectations_failed": sorted(
                {e["reason"] for e in self.expectations if not e["success"]},
            ),
            "expectations_run": len(self.expectations),
        }


# ---------------------------------------------------------------------------------------- GX context
_GX_LOCK = threading.RLock()
_GX: dict[str, Any] = {}


def gx_context() -> AbstractDataContext:
    """The process-wide ephemeral GX context (created once: GX is slow to start)."""
    with _GX_LOCK:
        if "ctx" not in _GX:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
            # Airflow logs are not a terminal: no metric progress bars.
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = ctx.data_sources.add_pandas("deepcuts")
            _GX["ctx"] = ctx
            _GX["batch"] = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
            _GX["sites"] = set()
        return _GX["ctx"]


def _docs_site(docs_dir: Path) -> str:
    """Name of the GX Data Docs site writing to ``docs_dir`` (added on first use)."""
    ctx = gx_context()
    name = "deepcuts-" + hashlib.sha1(str(docs_dir.resolve()).encode()).hexdigest()[:10]
    if name not in _GX["sites"]:
        ctx.add_data_docs_site(
            name,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        _GX["sites"].add(name)
    return name


def _expectation(cls_name: str, reason: str, level: str = "row", **kwargs: Any) -> Any:
    import great_expectations as gx

    cls = getattr(gx.expectations, cls_name)
    return cls(meta={"reason": reason, "level": level}, **kwargs)


def _run_suite(
    name: str,
    frame: pd.DataFrame,
    expectations: list[Any],
    run_name: str,
    run_time: datetime,
) -> list[Any]:
    """Run one suite on one dataframe batch; returns GX's per-expectation results."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    ctx = gx_context()
    with _GX_LOCK:
        # Validating the batch directly skips saving the suite in the context (the costliest part of
        # a run: suites are rebuilt per batch because their value sets depend on the batch).
        batch = _GX["batch"].get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            gx.ExpectationSuite(name=name, expectations=expectations),
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [C.SOURCE_ROW],
                "return_unexpected_index_query": False,
            },
        )
        run_id = RunIdentifier(run_name=run_name, run_time=run_time)
        result.meta["run_id"] = run_id
        result.meta["validation_time"] = run_time
        # Kept (in memory) until build_data_docs renders it.
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
            run_id=run_id,
            batch_identifier=batch.id,
        )
        ctx.validation_results_store.set(key, result)
    for res in result.results:
        info = res.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(
                f"GX expectation {res.expectation_config.type} on {name} raised: "
                f"{info.get('exception_message')}"
            )
    return list(result.results)


def build_data_docs(docs_dir: Path) -> Path:
    """Render GX Data Docs for the validations run since the last call into ``docs_dir``.

    The in-memory results are then dropped, so a long process (the simulator) does not accumulate them.
    Values from data are HTML-escaped before GX renders them, and the pages are left without script or
    CDN assets, with a static index (``pipelines.data_docs``). Returns the site's ``index.html``.
    """
    from pipelines.data_docs import escape_results, secure_site

    ctx = gx_context()
    with _GX_LOCK:
        store = ctx.validation_results_store
        keys = list(store.list_keys())
        if keys:
            escape_results(store)
            ctx.build_data_docs(site_names=[_docs_site(docs_dir)], resource_identifiers=keys)
        for key in keys:
            store.remove_key(key)
    if keys:
        return secure_site(docs_dir)
    return docs_dir / "index.html"


def discard_results() -> None:
    """Drop GX's in-memory validation results without rendering them."""
    ctx = gx_context()
    with _GX_LOCK:
        store = ctx.validation_results_store
        for key in list(store.list_keys()):
            store.remove_key(key)


# ------------------------------------------------------------------------------------------ parsing
def _is_native(series: pd.Series, logical: str) -> bool:
    """True when a column already has the contract's kind of dtype and needs no text parsing."""
    dtype = series.dtype
    if logical == "int":
        return pd.api.types.is_integer_dtype(dtype)
    if logical == "float":
        return pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)
    if logical == "ts":
        return pd.api.types.is_datetime64_any_dtype(dtype)
    return False


def _as_text(series: pd.Series) -> pd.Series:
    """Values as strings (nulls stay null) for format checks and the quarantine."""
    if pd.api.types.is_string_dtype(series.dtype) and (
        series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
    ):
        return series.astype(object).where(series.notna(), None)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        out = series.astype(object).map(lambda v: v.isoformat() if not pd.isna(v) else None)
        return out.astype(object)
    values = series.astype(object).to_numpy()
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = _one_text(value)
    return pd.Series(out, index=series.index, dtype=object)


def _one_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return "|".join(str(v) for v in value)
    if isinstance(value, float | np.floating) and np.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _parse(text: pd.Series, raw: pd.Series, logical: str, genre_sep: str) -> pd.Series:
    """Parse one column into its contract dtype; malformed values become null."""
    if logical == "int":
        if _is_native(raw, "int"):
            return raw.astype("Int64")
        ints = exact_int64(text)
        if pd.api.types.is_float_dtype(raw.dtype):
            # A float column cannot hold every integer above 2^53: such a value may be a rounded id.
            ints = ints.where(raw.abs().le(FLOAT_EXACT_MAX).to_numpy(), pd.NA)
        return ints
    if logical == "float":
        if _is_native(raw, "float"):
            return raw.astype("float64")
        ok = text.str.fullmatch(FLOAT_REGEX, na=False) if len(text) else text.astype(bool)
        return pd.to_numeric(text.where(ok, None).str.strip(), errors="coerce").astype("float64")
    if logical == "ts":
        if _is_native(raw, "ts"):
            ts = raw if raw.dt.tz is not None else raw.dt.tz_localize("UTC")
            return ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        return _parse_ts(text)
    if logical == "list":
        return raw.map(lambda v: _genres(v, genre_sep)).astype(object)
    return text.astype(object)


def exact_int64(text: pd.Series) -> pd.Series:
    """Integers written as text -> nullable ``Int64``, exactly; anything else (or outside int64) -> null.

    Accepts what ``INT_REGEX`` matches: surrounding blanks, a sign, a ``.0`` tail. No float round trip,
    so ``9007199254740993`` stays itself and ``2**62`` and ``2**62 + 1`` stay distinct.
    """
    text = text.astype(object).where(text.notna(), None)
    as_int = {pa.int64(): pd.Int64Dtype()}.get
    try:  # fast path: plain digits only (Arrow's cast is exact and refuses an int64 overflow)
        ints = pc.cast(pa.array(text.to_numpy(object), type=pa.string(), from_pandas=True), pa.int64())
        return pd.Series(ints.to_pandas(types_mapper=as_int), index=text.index)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    ok = text.str.fullmatch(INT_REGEX, na=False) if len(text) else text.astype(bool)
    # Strip, drop a ".0" tail and a "+" sign; a 19-digit value may overflow int64: checked exactly.
    digits = text.where(ok, None).str.strip().str.replace(r"\.0*$", "", regex=True).str.removeprefix("+")
    long = digits.str.lstrip("-").str.len().ge(19).fillna(False).astype(bool)
    if long.any():
        fits = digits[long].map(lambda d: INT64_MIN <= int(d) <= INT64_MAX)
        digits = digits.where(~long, digits.where(fits.reindex(digits.index, fill_value=True), None))
    ints = pc.cast(pa.array(digits.to_numpy(object), type=pa.string(), from_pandas=True), pa.int64())
    return pd.Series(ints.to_pandas(types_mapper=as_int), index=text.index)


def _parse_ts(text: pd.Series) -> pd.Series:
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    ok = text.str.fullmatch(TS_REGEX, na=False) if len(text) else text.astype(bool)
    epoch = ok & text.str.fullmatch(_EPOCH_REGEX, na=False)
    iso = ok & ~epoch
    if epoch.any():
        secs = pd.to_numeric(text[epoch].str.strip(), errors="coerce")
        out[epoch] = pd.to_datetime(secs, unit="s", utc=True, errors="coerce")
    if iso.any():
        cleaned = text[iso].str.strip().str.replace(r"\s*UTC$", "Z", regex=True)
        out[iso] = pd.to_datetime(cleaned, utc=True, errors="coerce", format="ISO8601")
    return out


def _genres(value: Any, sep: str) -> list[str] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    text = str(value).strip()
    return [g.strip() for g in text.split(sep) if g.strip()] if text else []


# --------------------------------------------------------------------------------------- the suites
def _raw_suite(kind: Kind, raw: pd.DataFrame, rules: Rules) -> list[Any]:
    cols = columns_of(kind)
    expected = [c.name for c in cols]
    present = set(raw.columns)
    exps: list[Any] = [
        _expectation(
            "ExpectTableColumnsToMatchSet",
            "schema",
            level="table",
            column_set=[*expected, C.SOURCE_ROW, *(c for c in LINE_COLUMNS if c in present)],
            exact_match=not rules.allow_extra_columns,
        )
    ]
    if C.RAW_LINE in present:
        exps.append(_expectation("ExpectColumnValuesToBeNull", MALFORMED_LINE, column=C.RAW_LINE))
    if not rules.allow_empty:
        exps.append(_expectation("ExpectTableRowCountToBeBetween", "empty", level="table", min_value=1))
    if rules.min_rows > 0:
        exps.append(
            _expectation("ExpectTableRowCountToBeBetween", "volume", level="table", min_value=rules.min_rows)
        )
    for col in cols:
        if col.name not in present:
            continue
        if col.required:
            exps.append(
                _expectation("ExpectColumnValuesToNotBeNull", Reason.NULL.of(col.name), column=col.name)
            )
        if col.logical == "list" or _is_native(raw[col.name], col.logical):
            continue
        if col.logical == "str" and col.name not in ENUM_COLUMNS:
            # Free text only: undecodable bytes fail the format check of numbers and times, and the
            # allowed-values check of enum columns, already.
            exps.append(
                _expectation(
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
                _expectation(
                    "ExpectColumnValuesToNotMatchRegex",
                    Reason.EPOCH_UNIT.of(col.name),
                    column=col.name,
                    regex=EPOCH_FINE_REGEX,
                )
            )
        pattern = {"int": INT_REGEX, "float": FLOAT_REGEX, "ts": TS_REGEX}.get(col.logical)
        if pattern:
            exps.append(
                _expectation(
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


def _typed_suite(
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
                _expectation(
                    "ExpectColumnValuesToBeInSet",
                    Reason.BAD_TYPE.of(col.name),
                    column=_helper(col.name, "parsed"),
                    value_set=[True],
                )
            )

    def between(column: str, reason: str, **kw: Any) -> None:
        exps.append(_expectation("ExpectColumnValuesToBeBetween", reason, column=column, **kw))

    def in_set(column: str, reason: str, values: Iterable[Any]) -> None:
        exps.append(
            _expectation("ExpectColumnValuesToBeInSet", reason, column=column, value_set=list(values))
        )

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
            _expectation("ExpectColumnValuesToBeUnique", Reason.DUPLICATE.of(C.EVENT_ID), column=C.EVENT_ID)
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
            _expectation(
                "ExpectColumnValuesToNotBeNull",
                Reason.NULL.of(C.RATING),
                column=C.RATING,
                row_condition=GXColumn(C.EVENT_TYPE) == EventType.RATING.value,
            )
        )
    if kind == Kind.ITEMS:
        exps.append(
            _expectation("ExpectColumnValuesToBeUnique", Reason.DUPLICATE.of(C.ITEM_ID), column=C.ITEM_ID)
        )
        # Genre names are free text too (a list, so checked here rather than by a regex on a column).
        bad_bytes = re.compile(BAD_BYTES_REGEX)
        batch[_helper(C.GENRES, "clean")] = typed[C.GENRES].map(
            lambda gs: gs is None or not any(bad_bytes.search(g) for g in gs)
        )
        in_set(_helper(C.GENRES, "clean"), Reason.BAD_ENCODING.of(C.GENRES), [True])
        between(C.YEAR, Reason.OUT_OF_RANGE.of(C.YEAR), min_value=rules.year_min, max_value=rules.year_max)
    return exps, batch


# ------------------------------------------------------------------------------------------- driver
def validate_frame(
    frame: pd.DataFrame,
    kind: Kind | str,
    rules: Rules,
    *,
    name: str = "batch",
    run_date: date | None = None,
    source_rows: np.ndarray | None = None,
) -> Outcome:
    """Validate one batch with GX and split it into valid and quarantined rows.

    ``frame`` may hold text (CSV) or typed columns. ``source_rows`` are the original row positions
    (default ``0..n-1``). Raises :class:`ValidationFailed` for table-level failures. Valid rows come back
    typed with exactly the contract's columns, in input order; quarantined rows keep every input column
    as text plus ``source_row`` and ``quarantine_reason``.
    """
    kind = Kind(kind)
    n = len(frame)
    raw = frame.reset_index(drop=True).copy()
    if C.SOURCE_ROW in raw.columns:
        raw = raw.drop(columns=[C.SOURCE_ROW])
    rows = np.arange(n, dtype=np.int64) if source_rows is None else np.asarray(source_rows, np.int64)
    cols = columns_of(kind)
    # Text view of every column that needs parsing; typed columns are checked as they are.
    texts: dict[str, pd.Series] = {}
    for col in cols:
        if col.name in raw.columns and col.logical != "list" and not _is_native(raw[col.name], col.logical):
            texts[col.name] = _as_text(raw[col.name])
    raw_batch = raw.copy()
    for column, text in texts.items():
        raw_batch[column] = text
    raw_batch[C.SOURCE_ROW] = rows
    run_time = datetime.combine(run_date or date(1970, 1, 1), datetime.min.time(), tzinfo=UTC)
    # Data Docs page folder: validations/<kind>/<raw|typed>/<run date>-<batch>/
    run_name = f"{run_date.isoformat() if run_date else 'adhoc'}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"

    raw_results = _run_suite(f"{kind.value}.raw", raw_batch, _raw_suite(kind, raw, rules), run_name, run_time)
    _raise_table_failures(kind, name, raw_results, raw, rules, n)

    typed = pd.DataFrame({C.SOURCE_ROW: rows})
    for col in cols:
        typed[col.name] = _parse(
            texts.get(col.name, raw[col.name]), raw[col.name], col.logical, rules.genre_sep
        )
    typed_suite, typed_batch = _typed_suite(kind, typed, rules, texts)
    typed_results = _run_suite(f"{kind.value}.typed", typed_batch, typed_suite, run_name, run_time)
    _raise_table_failures(kind, name, typed_results, raw, rules, n)

    position = pd.Series(np.arange(n), index=rows) if n else pd.Series([], dtype=np.int64)
    row_reasons: dict[int, set[str]] = {}
    expectations: list[dict[str, Any]] = []
    for res in [*raw_results, *typed_results]:
        meta = res.expectation_config.meta or {}
        reason = meta["reason"]
        unexpected = res.result.get("unexpected_index_list") or []
        expectations.append(
            {
                "type": res.expectation_config.type,
                "reason": reason,
                "success": bool(res.success),
                "unexpected": len(unexpected),
            }
        )
        if meta.get("level") != "row":
            continue
        for entry in unexpected:
            row_reasons.setdefault(int(entry[C.SOURCE_ROW]), set()).add(reason)
    # A required value missing from the input is reported as a null (an epoch in ms as its unit), not
    # also as unparseable; a line
    # that was not one CSV record has no values to check, only the one reason.
    for reasons in row_reasons.values():
        if MALFORMED_LINE in reasons:
            reasons.intersection_update({MALFORMED_LINE})
        for known in [r for r in reasons if r.startswith((Reason.NULL.of(""), Reason.EPOCH_UNIT.of("")))]:
            reasons.discard(Reason.BAD_TYPE.of(known.split(":", 1)[1]))
    bad_positions = np.sort(position.loc[list(row_reasons)].to_numpy()) if row_reasons else np.empty(0, int)
    mask = np.zeros(n, dtype=bool)
    mask[bad_positions] = True
    valid = typed.loc[~mask, [c.name for c in cols]].reset_index(drop=True)
    quarantine = _quarantine_frame(raw, rows, mask, row_reasons, texts)
    if len(valid) + len(quarantine) != n:  # an invariant, checked even under ``python -O``
        raise RuntimeError(f"{kind.value} {name}: {n} rows in, {len(valid)} + {len(quarantine)} out")
    counts: dict[str, int] = {}
    for reasons in row_reasons.values():
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
    outcome = Outcome(kind, n, valid, quarantine, counts, expectations)
    log.info(
        "%s %s: in=%d accepted=%d quarantined=%d %s",
        kind.value,
        name,
        n,
        outcome.accepted,
        outcome.quarantined,
        dict(sorted(counts.items())),
    )
    if n and outcome.quarantined / n > rules.max_quarantine_share:
        raise ValidationFailed(
            kind.value,
            name,
            [
                f"{outcome.quarantined} of {n} rows ({outcome.quarantined / n:.0%}) failed row checks, above "
                f"ingest.max_quarantine_share={rules.max_quarantine_share:.0%}; reasons: "
                f"{dict(sorted(counts.items()))}. Something upstream is broken: fix the producer, "
                "or raise the setting if this is expected",
            ],
        )
    return outcome


def _raise_table_failures(
    kind: Kind, name: str, results: list[Any], raw: pd.DataFrame, rules: Rules, n: int
) -> None:
    problems = []
    for res in results:
        meta = res.expectation_config.meta or {}
        if meta.get("level") != "table" or res.success:
            continue
        reason = meta["reason"]
        if reason == "schema":
            mismatch = (res.result.get("details") or {}).get("mismatched") or {}
            missing = sorted(set(mismatch.get("missing") or []) - {C.SOURCE_ROW})
            extra = sorted(set(mismatch.get("unexpected") or []) - {C.SOURCE_ROW})
            if missing:
                problems.append(
                    f"missing columns {missing}; the contract needs {[c.name for c in columns_of(kind)]}"
                )
            if extra:
                problems.append(
                    f"unexpected columns {extra}: the producer's format changed; drop them, add them to "
                    "the contract, or set ingest.allow_extra_columns=true to ignore them"
                )
        elif reason == "empty":
            problems.append("no rows: an empty day means the producer or the transfer is broken")
        elif reason == "volume":
            problems.append(
                f"volume collapse: {n} rows, fewer than the floor {rules.min_rows} "
                f"({rules.min_rows_note}); check the producer, or rerun once the data is complete"
            )
        else:  # pragma: no cover - every table-level expectation is listed above
            problems.append(reason)
    if problems:
        raise ValidationFailed(kind.value, name, problems)


def _quarantine_frame(
    raw: pd.DataFrame,
    rows: np.ndarray,
    mask: np.ndarray,
    row_reasons: dict[int, set[str]],
    texts: dict[str, pd.Series],
) -> pd.DataFrame:
    """Quarantined rows: position, reasons, then every input column as text."""
    bad_rows = rows[mask]
    out = pd.DataFrame(
        {
            C.SOURCE_ROW: bad_rows.astype(np.int64),
            C.QUARANTINE_REASON: pd.Series(
                ["; ".join(sorted(row_reasons[int(r)])) for r in bad_rows], dtype=object
            ),
        }
    )
    for column in raw.columns:
        if column in (C.SOURCE_ROW, C.QUARANTINE_REASON):
            continue
        text = texts[column][mask] if column in texts else _as_text(raw[column][mask])
        out[str(column)] = text.reset_index(drop=True).to_numpy()
    return out


def quarantine_table(quarantine: pd.DataFrame) -> pa.Table:
    """The quarantine frame as Arrow with a fixed schema (``source_row`` int64, the rest text)."""
    fields = [pa.field(C.SOURCE_ROW, pa.int64()), pa.field(C.QUARANTINE_REASON, pa.string())]
    fields += [pa.field(str(c), pa.string()) for c in quarantine.columns if c not in {f.name for f in fields}]
    schema = pa.schema(fields)
    arrays = [pa.array([_null_or(v) for v in quarantine[f.name].tolist()], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _null_or(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def day_bounds(run_date: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of the run date in UTC."""
    start = pd.Timestamp(run_date.isoformat(), tz="UTC")
    return start, start + pd.Timedelta(days=1)


# ---------------------------------------------------------------------------------------- reading
PARQUET_MAGIC = b"PAR1"


def read_raw(payload: bytes, where: str, fmt: str | None = None) -> pd.DataFrame:
    """Read one file's bytes (Parquet or CSV) into a raw frame, keeping every value.

    CSV cells are read as text (only an empty cell is null; ``NA`` stays the text ``NA``), and bytes
    that are not UTF-8 are kept as ``\\xNN`` escapes, so GX can flag the rows (``bad_encoding``) and the
    quarantine can store them as ``\\xNN`` escapes. Raises :class:`ValidationFailed` when the file cannot
    be read at all (garbage bytes, truncated Parquet).
    """
    import io

    import pyarrow.parquet as pq

    if fmt is None:
        fmt = "parquet" if payload[:4] == PARQUET_MAGIC else "csv"
    if fmt == "parquet":
        try:
            table = pq.read_table(io.BytesIO(payload))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValidationFailed(
                "file", where, [f"not a readable Parquet file ({exc}); re-export it or check the transfer"]
            ) from exc
        return _parquet_frame(table)
    if not payload.strip():
        return pd.DataFrame()
    return _read_csv(payload.decode("utf-8", "backslashreplace"), where)


def _parquet_frame(table: pa.Table) -> pd.DataFrame:
    """A Parquet table as a raw frame; a string column with bytes that are not UTF-8 keeps them as text.

    Arrow does not check UTF-8 when reading, and pandas then fails on the whole file: such a column is
    decoded value by value with ``backslashreplace`` (``\\xNN``) so that only its bad rows are quarantined
    (``bad_encoding``), as for a CSV file.
    """
    as_string = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get
    broken: dict[str, pd.Series] = {}
    for i, spec in enumerate(table.schema):
        if pa.types.is_string(spec.type) or pa.types.is_large_string(spec.type):
            column = table.column(i)
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                raw = column.cast(pa.large_binary() if pa.types.is_large_string(spec.type) else pa.binary())
                broken[spec.name] = pd.Series([_one_text(v) for v in raw.to_pylist()], dtype=object)
    frame = table.drop_columns(list(broken)).to_pandas(types_mapper=as_string)
    for name, values in broken.items():
        frame[name] = values
    return frame[table.column_names]


#: Line breaks as the CSV readers see them (``str.splitlines`` would also split on \x0b, \x1c, ...).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _read_csv(text: str, where: str) -> pd.DataFrame:
    """One row per physical line of a CSV text: a line that is not one CSV record is kept, not lost.

    Rows in are counted from the raw text (every non-empty line after the header), never from what a
    parser managed to read: a stray double quote makes a CSV parser swallow every line up to the next
    quote (1,343 lines read as 1,000 rows, silently). When the fast C parser returns exactly one row per
    line its result is used; otherwise each line is parsed on its own and a line that is not one
    record (an unbalanced quote, a quoted field spanning lines) becomes a row with only
    ``source_line`` (its 1-based line number in the file) and ``raw_line`` (its text) set, which
    :func:`validate_frame` quarantines as ``malformed_line``. A line with too many fields keeps them
    (folded into the last column, whose check then fails), a short one gets nulls, as before.
    """
    import csv
    import io

    text = text.removeprefix("\ufeff")  # a byte order mark is not part of the first column's name
    lines = [(number, line) for number, line in enumerate(_LINE_BREAK.split(text), start=1) if line != ""]
    header = lines[0][1]
    if "\x00" in header or re.search(BAD_BYTES_REGEX, header):
        raise ValidationFailed(
            "file",
            where,
            ["binary content (NUL or non-UTF-8 bytes) in the header line; is this a CSV export?"],
        )
    try:
        columns = next(csv.reader([header], strict=True))
    except csv.Error as exc:
        raise ValidationFailed(
            "file", where, [f"not a readable CSV header ({exc}): {header[:200]!r}"]
        ) from exc
    options: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_values": [""]}
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
        if len(frame) == len(lines) - 1 and list(frame.columns) == columns:
            return frame
    except (pd.errors.ParserError, ValueError):
        pass  # malformed lines: parse line by line (below)
    width = len(columns)
    records: list[list[str | None]] = []
    malformed: dict[int, tuple[int, str]] = {}
    for number, line in lines[1:]:
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error:
            malformed[len(records)] = (number, line)
            records.append([None] * width)
            continue
        # Extra fields go into the last column, joined back with commas: the row keeps its position
        # and its text, and the last column's format or value check quarantines it.
        if len(fields) > width:
            fields = [*fields[: width - 1], ",".join(fields[width - 1 :])]
        records.append([f if f != "" else None for f in fields] + [None] * (width - len(fields)))
    frame = pd.DataFrame(records, columns=columns, dtype=object)
    if malformed:
        frame[C.SOURCE_LINE] = pd.Series({i: str(n) for i, (n, _) in malformed.items()}, dtype=object)
        frame[C.RAW_LINE] = pd.Series({i: line for i, (_, line) in malformed.items()}, dtype=object)
        frame[[C.SOURCE_LINE, C.RAW_LINE]] = frame[[C.SOURCE_LINE, C.RAW_LINE]].astype(object)
    return frame
