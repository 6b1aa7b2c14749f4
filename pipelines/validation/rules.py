"""What a batch is checked against: the three kinds, their contract columns, the rules, the outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from deepcuts.contracts import FEEDBACK_SCHEMA, INTERACTIONS_SCHEMA, ITEMS_SCHEMA, C, Reason

#: Reason of a CSV line that is not one record (see :func:`read_raw`); the row has only these columns.
MALFORMED_LINE = Reason.MALFORMED_LINE.value
LINE_COLUMNS = (C.SOURCE_LINE, C.RAW_LINE)


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


def day_bounds(run_date: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of the run date in UTC."""
    start = pd.Timestamp(run_date.isoformat(), tz="UTC")
    return start, start + pd.Timedelta(days=1)
