"""The experiment registry's storage: the serving DB's ``experiment_log`` table and its lake copy.

Operators append decisions with ``deepcuts experiment ...`` (``deepcuts.cli.experiment``): the rules
are :func:`deepcuts.experiment.next_entry`; this module checks the effective date against the runs
already made, appends the row in one serving-DB transaction and, inside that transaction, rewrites
the lake copy ``experiments/registry.json`` from the whole table. The nightly steps (``assign``,
``ab_analysis``, ``report``) read only the lake copy (:func:`state_for`): a step never reaches back to
the serving DB. If the lake write fails, the transaction rolls back and nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Final

from deepcuts.contracts import Dataset
from deepcuts.experiment import (
    Action,
    Command,
    Entry,
    ExperimentError,
    ExperimentState,
    next_entry,
    state_at,
)
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa

REGISTRY_FILE: Final = "registry.json"
SQL_FILE: Final = "experiments.sql"
_COLUMNS: Final = (
    "seq",
    "action",
    "experiment",
    "salt",
    "treatment_share",
    "baseline_arm",
    "status",
    "shipped_variant",
    "effective_from",
    "created_at",
    "created_by",
    "verdict",
    "forced",
    "reason",
)


# ----------------------------------------------------------------------------- the lake copy (steps)
def lake_entries(lake: Lake) -> list[Entry]:
    """The registry's entries in ``seq`` order, from the lake copy (empty before the first decision)."""
    if not lake.exists(Dataset.EXPERIMENTS, None, REGISTRY_FILE):
        return []
    doc = lake.read_json(Dataset.EXPERIMENTS, None, REGISTRY_FILE)
    return [Entry.from_record(row) for row in doc["entries"]]


def state_for(settings: Settings, run_date: date, lake: Lake | None = None) -> ExperimentState:
    """The experiment state in force for ``run_date``; the ``ab.*`` settings before any entry."""
    entries = lake_entries(lake or Lake(settings.home))
    return state_at(entries, run_date, ExperimentState.from_settings(settings.ab))


def write_lake_copy(lake: Lake, entries: list[Entry]) -> str:
    return lake.write_json(
        Dataset.EXPERIMENTS, None, REGISTRY_FILE, {"entries": [e.as_record() for e in entries]}
    )


def next_run_date(lake: Lake, today: date) -> date:
    """The first run date the ``assign`` step has not run for: a decision can take effect from there on
    (the day after the latest ``assignments``; ``today`` on a lake without any)."""
    dates = lake.run_dates(Dataset.ASSIGNMENTS)
    return dates[-1] + timedelta(days=1) if dates else today


def verdicts(lake: Lake, until: date | None = None) -> list[dict[str, Any]]:
    """Every ``verdict.json`` written by ``ab_analysis`` (up to ``until``), in run-date order."""
    from deepcuts.pipelines.ab_analysis import VERDICT_FILE

    return [
        lake.read_json(Dataset.AB_RESULTS, day, VERDICT_FILE)
        for day in lake.run_dates(Dataset.AB_RESULTS)
        if (until is None or day <= until) and lake.exists(Dataset.AB_RESULTS, day, VERDICT_FILE)
    ]


def latest_verdict(lake: Lake, experiment: str) -> dict[str, Any] | None:
    """The ``verdict.json`` of the latest analysed night of ``experiment`` (None before the first)."""
    from deepcuts.pipelines.ab_analysis import VERDICT_FILE

    for day in reversed(lake.run_dates(Dataset.AB_RESULTS)):
        if lake.exists(Dataset.AB_RESULTS, day, VERDICT_FILE):
            record = lake.read_json(Dataset.AB_RESULTS, day, VERDICT_FILE)
            if record.get("experiment") == experiment:
                return record
    return None


# ----------------------------------------------------------------------------- the serving DB (operators)
# sqlalchemy is imported inside the serving-DB functions: the nightly steps that import this module
# (assign, ab_analysis, report) read only the lake copy, and the import costs them ~0.15 CPU-s each.
def db_entries(conn: sa.Connection) -> list[Entry]:
    import sqlalchemy as sa

    rows = conn.execute(sa.text(f"SELECT {', '.join(_COLUMNS)} FROM experiment_log ORDER BY seq"))
    return [Entry.from_record(row._asdict()) for row in rows]


def append(settings: Settings, build: Callable[[ExperimentState], Command]) -> Entry:
    """Append the entry for the command ``build(current_state)`` returns; refresh the lake copy.

    Raises :class:`ExperimentError` when the command is not allowed (state rules, or an effective
    date on or before a run date that already has assignments: decisions are never retroactive).
    """
    import sqlalchemy as sa

    from deepcuts.pipelines.serving import run_sql_file, serving_engine

    lake = Lake(settings.home)
    default = ExperimentState.from_settings(settings.ab)
    engine = serving_engine(settings, writer=True)
    try:
        with engine.begin() as conn:
            run_sql_file(conn, SQL_FILE)
            entries = db_entries(conn)
            cmd = build(entries[-1].state if entries else default)
            first_open = next_run_date(lake, cmd.effective_from)
            if cmd.effective_from < first_open:
                raise ExperimentError(
                    f"{cmd.action.value} cannot take effect from {cmd.effective_from}: run dates up to "
                    f"{first_open - timedelta(days=1)} are already assigned; the earliest is {first_open}"
                )
            entry = next_entry(entries, default, cmd)
            columns = ", ".join(_COLUMNS)
            values = ", ".join(f":{c}" for c in _COLUMNS)
            insert = sa.text(f"INSERT INTO experiment_log ({columns}) VALUES ({values})")
            conn.execute(insert, entry.as_record())
            write_lake_copy(lake, [*entries, entry])
    finally:
        engine.dispose()
    return entry


def read_registry(settings: Settings) -> list[Entry]:
    """The entries as the serving DB has them (``deepcuts experiment status``)."""
    from deepcuts.pipelines.serving import run_sql_file, serving_engine

    engine = serving_engine(settings)
    try:
        with engine.begin() as conn:
            run_sql_file(conn, SQL_FILE)
            return db_entries(conn)
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- the history (report)
def experiment_history(
    entries: list[Entry], default: ExperimentState, verdicts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per experiment, oldest first: dates, treatment shares, decision and verdicts.

    ``verdicts`` are ``ab_analysis`` verdict records in run-date order; the last one of an experiment
    gives its verdict (frozen once shipped or stopped). The settings' experiment (the one before the
    registry's first ``start``) has no start entry: its start is its first analysed night.
    """
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        return rows.setdefault(
            name,
            {
                "experiment": name,
                "from": None,
                "until": None,
                "treatment shares": [],
                "decision": "running",
                "verdict at decision": None,
                "verdict": None,
            },
        )

    if not entries or entries[0].action is not Action.START:
        first = next((v["run_date"] for v in verdicts if v.get("experiment") == default.experiment), None)
        row(default.experiment)["from"] = first
        rows[default.experiment]["treatment shares"].append(f"{default.treatment_share:g} (settings)")
    for e in entries:
        r = row(e.state.experiment)
        day = e.effective_from.isoformat()
        if e.action is Action.START:
            r["from"] = day
        if e.action in (Action.START, Action.RAMP):
            r["treatment shares"].append(f"{e.state.treatment_share:g} from {day}")
        if e.action in (Action.STOP, Action.SHIP):
            r["until"] = day
            r["decision"] = "stopped" if e.action is Action.STOP else f"shipped {e.state.shipped_variant}"
            if e.forced:
                r["decision"] += f" (forced: {e.reason})"
            elif e.reason:
                r["decision"] += f" ({e.reason})"
            r["verdict at decision"] = e.verdict
    for v in verdicts:
        if v.get("experiment") in rows:
            final = " (final)" if v.get("final") else f" ({v.get('run_date')})"
            rows[str(v["experiment"])]["verdict"] = f"{v.get('verdict')}{final}"
    for r in rows.values():
        r["treatment shares"] = ", ".join(r["treatment shares"])
    return list(rows.values())
