"""``deepcuts validate FILE --kind feedback|interactions|items [--run-date D]``: check one file.

Runs the same GX suites with the same rules as the nightly ingest (``pipelines.ingest.rules_for``) on
one Parquet or CSV file, against what the lake knows for the run date (catalog, users and already
accepted event ids of the newest partitions up to D), prints a readable summary, writes the rejected
rows to ``quarantine/<kind>(D)/validate-<file>.parquet`` (next to, never over, the nightly quarantine)
and exits with

* 0 when every row passed,
* 1 when rows were quarantined,
* 2 when the file failed as a whole (unreadable, wrong columns, empty).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepcuts.cli._common import settings_from

if TYPE_CHECKING:
    from pipelines.storage import Lake
    from pipelines.validation import Kind, Outcome, Rules

KINDS = ("feedback", "interactions", "items")
#: Example rows printed per reason.
EXAMPLES_PER_REASON = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="validate one feedback/interactions/items file (Parquet or CSV) and quarantine bad rows",
    )
    parser.add_argument("file", type=Path, help="the Parquet or CSV file to check")
    parser.add_argument("--kind", required=True, choices=KINDS, help="which contract the file follows")
    parser.add_argument(
        "--run-date",
        type=date.fromisoformat,
        default=None,
        help="the day the file belongs to (YYYY-MM-DD; default: today, UTC); sets the time window",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.contracts import Dataset
    from pipelines.storage import Lake
    from pipelines.validation import Kind, ValidationFailed, quarantine_table, read_raw, validate_frame

    settings = settings_from(args)
    kind = Kind(args.kind)
    run_date: date = args.run_date or datetime.now(UTC).date()
    path: Path = args.file
    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2
    lake = Lake(settings.home)
    fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else None
    try:
        frame = read_raw(path.read_bytes(), str(path), fmt)
        rules, notes = rules_for(settings, lake, kind, run_date)
        outcome = validate_frame(frame, kind, rules, name=path.name, run_date=run_date)
    except ValidationFailed as exc:
        print(f"FAILED  {path} ({kind.value}, run date {run_date})")
        for problem in exc.problems:
            print(f"  - {problem}")
        return 2
    dataset = {
        Kind.ITEMS: Dataset.QUARANTINE_ITEMS,
        Kind.INTERACTIONS: Dataset.QUARANTINE_INTERACTIONS,
        Kind.FEEDBACK: Dataset.QUARANTINE_FEEDBACK,
    }[kind]
    written = None
    if outcome.quarantined:
        part = "validate-" + re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
        written = lake.write_table(dataset, run_date, quarantine_table(outcome.quarantine), part=part)
    print(format_report(outcome, str(path), run_date, notes, written))
    return 1 if outcome.quarantined else 0


def rules_for(settings: Any, lake: Lake, kind: Kind, run_date: date) -> tuple[Rules, list[str]]:
    """The nightly rules for ``kind`` on ``run_date`` (``pipelines.ingest.rules_for``, the rule set ingest
    uses), with the reference data the lake holds: the newest catalog, users and seen event ids up to D.

    Returns the rules and notes on checks that could not run (nothing in the lake yet). The volume
    floor is the day's, not one file's, so it is not applied here.
    """
    import numpy as np

    from deepcuts.contracts import C, Dataset
    from pipelines.ingest import SUMMARY_FILE, previous_seen
    from pipelines.ingest import rules_for as nightly_rules
    from pipelines.validation import Kind

    notes: list[str] = []
    scale = (float(settings.source.rating_min), float(settings.source.rating_max))
    for day in reversed([d for d in lake.run_dates(Dataset.VALIDATION) if d <= run_date]):
        if lake.exists(Dataset.VALIDATION, day, SUMMARY_FILE):
            low, high = lake.read_json(Dataset.VALIDATION, day, SUMMARY_FILE)["rating_scale"]
            scale = (float(low), float(high))
            break

    def latest_ids(dataset: Dataset, column: str) -> np.ndarray | None:
        days = [d for d in lake.run_dates(dataset) if d <= run_date and lake.has(dataset, d)]
        if not days:
            notes.append(f"no {dataset.value} partition up to {run_date}: {column} not checked against it")
            return None
        table = lake.read_table(dataset, days[-1], columns=[column])
        return np.unique(table.column(column).to_numpy())

    if kind == Kind.ITEMS:
        return nightly_rules(settings, kind, run_date, scale), notes
    items = latest_ids(Dataset.ITEMS, C.ITEM_ID)
    if kind == Kind.INTERACTIONS:
        return nightly_rules(settings, kind, run_date, scale, known_items=items), notes
    rules = nightly_rules(
        settings,
        kind,
        run_date,
        scale,
        known_items=items,
        known_users=latest_ids(Dataset.INTERACTIONS, C.USER_ID),
        seen_event_ids=previous_seen(lake, run_date),
        first_night=lake.latest_before(Dataset.INTERACTIONS, run_date) is None,
    )
    return rules, notes


def format_report(outcome: Outcome, where: str, run_date: date, notes: list[str], written: str | None) -> str:
    """A readable summary: counts, then each reason with its count and a few example rows."""
    from deepcuts.contracts import C
    from pipelines.validation import MALFORMED_LINE

    verdict = "OK" if not outcome.quarantined else "PROBLEMS"
    lines = [
        f"{verdict}  {where} ({outcome.kind.value}, run date {run_date})",
        f"  rows in {outcome.rows_in} = accepted {outcome.accepted} + quarantined {outcome.quarantined}",
    ]
    q = outcome.quarantine
    for reason, count in sorted(outcome.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        column = reason.split(":", 1)[1] if ":" in reason else None
        lines.append(f"  {reason:<28} {count:>7} rows")
        hits = q[q[C.QUARANTINE_REASON].str.split("; ").map(lambda rs, r=reason: r in rs)]
        for _, row in hits.head(EXAMPLES_PER_REASON).iterrows():
            if reason == MALFORMED_LINE:
                lines.append(f"      row {row[C.SOURCE_ROW]}: line {row[C.SOURCE_LINE]}: {row[C.RAW_LINE]!r}")
                continue
            value = row.get(column) if column in q.columns else None
            lines.append(f"      row {row[C.SOURCE_ROW]}: {column}={value!r}")
    for note in notes:
        lines.append(f"  note: {note}")
    if written:
        lines.append(f"  quarantine written to {written}")
    return "\n".join(lines)
