"""Validating one batch: both suites, the split into valid and quarantined rows, the quarantine table."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from deepcuts.contracts import C, Reason
from deepcuts.pipelines.validation.gx import run_suite
from deepcuts.pipelines.validation.parsing import as_text, is_native, parse_column
from deepcuts.pipelines.validation.rules import (
    MALFORMED_LINE,
    Kind,
    Outcome,
    Rules,
    ValidationFailed,
    columns_of,
)
from deepcuts.pipelines.validation.suites import raw_suite, typed_suite
from deepcuts.progress import get_logger

log = get_logger(__name__)


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
    outcome = _validate_batch(frame, kind, rules, name=name, run_date=run_date, source_rows=source_rows)
    _check_quarantine_share(outcome, name, rules)
    return outcome


def validate_chunks(
    frame: pd.DataFrame,
    kind: Kind | str,
    rules: Rules,
    *,
    chunk_rows: int,
    name: str = "batch",
    run_date: date | None = None,
    positions: np.ndarray | None = None,
) -> Outcome:
    """:func:`validate_frame` on the rows of ``frame`` at ``positions`` (default: all; they are also the
    ``source_rows``), at most ``chunk_rows`` rows at a time, merged into one outcome.

    Peak memory is that of one slice (GX and the parsing copy a batch several times) plus the valid
    rows, and the selected rows are never copied out as a whole. Only for interactions, whose checks
    are all per row or hold for any slice (no uniqueness, no row-count floor; the schema is the same in
    every slice): the valid and quarantined rows, the reason counts and the per-expectation results
    are those of one batch, and the quarantine share is checked on the total. At most ``chunk_rows``
    rows are one batch, exactly :func:`validate_frame`. Each slice gets its own GX validation result
    (Data Docs page, named ``<name> part i of m``).
    """
    kind = Kind(kind)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1 (got {chunk_rows}); see ingest.validate_chunk_rows")
    rows = np.arange(len(frame), dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
    n = rows.size
    if n <= chunk_rows:
        picked = frame if positions is None else frame.iloc[rows]
        return validate_frame(picked, kind, rules, name=name, run_date=run_date, source_rows=rows)
    if kind != Kind.INTERACTIONS or rules.min_rows > 0 or not rules.allow_empty:
        raise ValueError(f"{kind.value} batches have table-wide checks: validate them in one piece")
    n_chunks = -(-n // chunk_rows)
    parts: list[Outcome] = []
    for i, start in enumerate(range(0, n, chunk_rows)):
        chunk = rows[start : start + chunk_rows]
        parts.append(
            _validate_batch(
                frame.iloc[chunk],
                kind,
                rules,
                name=f"{name} part {i + 1} of {n_chunks}",
                run_date=run_date,
                source_rows=chunk,
            )
        )
    outcome = _merge_outcomes(kind, parts)
    _check_quarantine_share(outcome, name, rules)
    return outcome


def _merge_outcomes(kind: Kind, parts: list[Outcome]) -> Outcome:
    """One outcome from the outcomes of consecutive slices of a batch (same suites, in order)."""
    valid = pd.concat([p.valid for p in parts], ignore_index=True)  # typed: same dtypes in every slice
    # The text columns' dtype is inferred from their values (as in _quarantine_frame), so it is
    # inferred again from all of them, not taken from one slice's (an all-null slice is object).
    first = parts[0].quarantine
    quarantine = pd.DataFrame(
        {col: pd.concat([p.quarantine[col] for p in parts], ignore_index=True) for col in first.columns[:2]}
    )
    for col in first.columns[2:]:
        quarantine[col] = np.concatenate([p.quarantine[col].to_numpy(dtype=object) for p in parts])
    counts: dict[str, int] = {}
    for part in parts:
        for reason, count in part.reasons.items():
            counts[reason] = counts.get(reason, 0) + count
    # the same suites ran on every slice: merge expectation by expectation
    expectations = [
        {
            **same[0],
            "success": all(e["success"] for e in same),
            "unexpected": sum(e["unexpected"] for e in same),
        }
        for same in zip(*(p.expectations for p in parts), strict=True)
    ]
    return Outcome(kind, sum(p.rows_in for p in parts), valid, quarantine, counts, expectations)


def _check_quarantine_share(outcome: Outcome, name: str, rules: Rules) -> None:
    n, counts = outcome.rows_in, outcome.reasons
    if n and outcome.quarantined / n > rules.max_quarantine_share:
        raise ValidationFailed(
            outcome.kind.value,
            name,
            [
                f"{outcome.quarantined} of {n} rows ({outcome.quarantined / n:.0%}) failed row checks, above "
                f"ingest.max_quarantine_share={rules.max_quarantine_share:.0%}; reasons: "
                f"{dict(sorted(counts.items()))}. Something upstream is broken: fix the producer, "
                "or raise the setting if this is expected",
            ],
        )


def _validate_batch(
    frame: pd.DataFrame,
    kind: Kind | str,
    rules: Rules,
    *,
    name: str,
    run_date: date | None,
    source_rows: np.ndarray | None,
) -> Outcome:
    """Both suites on one batch and the split into valid and quarantined rows (no share check)."""
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
        if col.name in raw.columns and col.logical != "list" and not is_native(raw[col.name], col.logical):
            texts[col.name] = as_text(raw[col.name])
    raw_batch = raw.copy()
    for column, text in texts.items():
        raw_batch[column] = text
    raw_batch[C.SOURCE_ROW] = rows
    run_time = datetime.combine(run_date or date(1970, 1, 1), datetime.min.time(), tzinfo=UTC)
    # Data Docs page folder: validations/<kind>/<raw|typed>/<run date>-<batch>/
    run_name = f"{run_date.isoformat() if run_date else 'adhoc'}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"

    raw_results = run_suite(f"{kind.value}.raw", raw_batch, raw_suite(kind, raw, rules), run_name, run_time)
    _raise_table_failures(kind, name, raw_results, raw, rules, n)

    typed = pd.DataFrame({C.SOURCE_ROW: rows})
    for col in cols:
        typed[col.name] = parse_column(
            texts.get(col.name, raw[col.name]), raw[col.name], col.logical, rules.genre_sep
        )
    typed_exps, typed_batch = typed_suite(kind, typed, rules, texts)
    typed_results = run_suite(f"{kind.value}.typed", typed_batch, typed_exps, run_name, run_time)
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
        text = texts[column][mask] if column in texts else as_text(raw[column][mask])
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
