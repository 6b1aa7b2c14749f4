"""Reading one landing file's bytes (Parquet or CSV) into a raw frame without losing a row or a value."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pyarrow as pa

from deepcuts.contracts import C
from pipelines.validation.parsing import BAD_BYTES_REGEX, one_text
from pipelines.validation.rules import ValidationFailed

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
                broken[spec.name] = pd.Series([one_text(v) for v in raw.to_pylist()], dtype=object)
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
