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
:func:`validate_chunks` validates a big interactions batch (the first night's whole history) a slice
at a time with the same result, so the ingest's peak memory does not grow with the history.

GX is slow to start, so one ephemeral GX context is shared by the whole process (:func:`gx_context`).
Big id sets never go into an expectation (GX copies value sets many times per run): membership of an id
in the known users / items / seen event ids is a boolean helper column of the typed batch
(``user_id__known``, ``event_id__seen``) that GX checks with ``expect_column_values_to_be_in_set``.

The package, along its seams: :mod:`~deepcuts.pipelines.validation.rules` (kinds, contract columns, ``Rules``,
``Outcome``), :mod:`~deepcuts.pipelines.validation.gx` (the GX context, running a suite, Data Docs),
:mod:`~deepcuts.pipelines.validation.parsing` (text to contract types),
:mod:`~deepcuts.pipelines.validation.reading` (file bytes to a raw frame),
:mod:`~deepcuts.pipelines.validation.suites` (the raw and typed suites) and
:mod:`~deepcuts.pipelines.validation.batch` (:func:`validate_frame`, the quarantine). Import the public names
from ``deepcuts.pipelines.validation``.
"""

from deepcuts.pipelines.validation.batch import quarantine_table, validate_chunks, validate_frame
from deepcuts.pipelines.validation.gx import build_data_docs, discard_results, gx_context
from deepcuts.pipelines.validation.parsing import exact_int64
from deepcuts.pipelines.validation.reading import read_raw
from deepcuts.pipelines.validation.rules import (
    LINE_COLUMNS,
    MALFORMED_LINE,
    Column,
    Kind,
    Outcome,
    Rules,
    ValidationFailed,
    columns_of,
    day_bounds,
)

__all__ = [
    "LINE_COLUMNS",
    "MALFORMED_LINE",
    "Column",
    "Kind",
    "Outcome",
    "Rules",
    "ValidationFailed",
    "build_data_docs",
    "columns_of",
    "day_bounds",
    "discard_results",
    "exact_int64",
    "gx_context",
    "quarantine_table",
    "read_raw",
    "validate_chunks",
    "validate_frame",
]
