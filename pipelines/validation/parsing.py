"""Parsing raw values (text from a CSV, or already typed columns) into the contract types, exactly."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


_EPOCH_REGEX = re.compile(r"^\s*\d{1,11}\s*$")


def is_native(series: pd.Series, logical: str) -> bool:
    """True when a column already has the contract's kind of dtype and needs no text parsing."""
    dtype = series.dtype
    if logical == "int":
        return pd.api.types.is_integer_dtype(dtype)
    if logical == "float":
        return pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)
    if logical == "ts":
        return pd.api.types.is_datetime64_any_dtype(dtype)
    return False


def as_text(series: pd.Series) -> pd.Series:
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
        out[i] = one_text(value)
    return pd.Series(out, index=series.index, dtype=object)


def one_text(value: Any) -> str | None:
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


def parse_column(text: pd.Series, raw: pd.Series, logical: str, genre_sep: str) -> pd.Series:
    """Parse one column into its contract dtype; malformed values become null."""
    if logical == "int":
        if is_native(raw, "int"):
            return raw.astype("Int64")
        ints = exact_int64(text)
        if pd.api.types.is_float_dtype(raw.dtype):
            # A float column cannot hold every integer above 2^53: such a value may be a rounded id.
            ints = ints.where(raw.abs().le(FLOAT_EXACT_MAX).to_numpy(), pd.NA)
        return ints
    if logical == "float":
        if is_native(raw, "float"):
            return raw.astype("float64")
        ok = text.str.fullmatch(FLOAT_REGEX, na=False) if len(text) else text.astype(bool)
        return pd.to_numeric(text.where(ok, None).str.strip(), errors="coerce").astype("float64")
    if logical == "ts":
        if is_native(raw, "ts"):
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
