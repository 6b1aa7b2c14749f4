"""Nightly step ``publish``: load the night's lists into a new serving version, gate it, switch to it.

``publish(settings, run_date)`` runs named stages (:data:`STAGES`); each one is a separate transaction
or a pure computation, so a failure (an exception, or the process being killed) after any stage leaves
the views on the previous complete version, and the next run cleans up and succeeds:

=================  =====================================================================================
``read``           read the arm lists, assignments and bandit policy of the run date; checksum them
``recover``        under the writers' lock: mark versions left ``loading``/``ready`` by a crash as
                   ``failed`` and drop their tables, and drop orphan version tables; stop here
                   (``status: pinned``) while an operator's rollback pins a version
``validate``       data gates (complete, unique, unseen, finite, known values, valid policy) and the
                   critical-alert gate; nothing is loaded when one fails
``register``       insert the ``publish_log`` row (status ``loading``); its id is the version number
``create_tables``  create ``lists_v<N>`` (nightly only), ``assignments_v<N>``, ``bandit_policy_v<N>``
``load_*``         bulk-load each table (COPY on PostgreSQL, executemany on SQLite)
``index``          primary keys + ANALYZE
``gates``          database gates on what was loaded: row counts, every assignment has its full list,
                   share of users whose list changed
``switch``         one transaction: views -> version N, N ``live``, the previous live ``retired``
``retention``      drop the tables of replaced versions and of retired versions beyond ``keep_versions``
=================  =====================================================================================

The nightly publish loads every list the night may serve (``arm_lists``: every bandit arm's re-ranked
list of each treatment user, the baseline list of each control user) with the assignments that pick one
per (user, daypart). An intraday refresh (``inputs=PublishInputs(assignments, policy)``, no lists) loads
only its assignments and policy: its version reads the lists table of the live version of the same run
date (``publish_log.lists_version``), so its publish is small, through the same gates, pin, switch and
retention; with no live version of that run date it publishes nothing (``status: no_lists``).

Publishing a run date whose identical data (same checksum) is already live is a no-op; different lists
for the same run date are a clean replace (the older versions of that date become ``replaced``); a run
date older than the newest one ever published is skipped (``skipped_older``), even after a rollback.
A gate failure marks the version ``rejected``, records an alert, and raises :class:`PublishRejectedError`:
the app keeps yesterday's version. The gates themselves (what is checked) are
:mod:`deepcuts.pipelines.publish_gates`; this module is the version state machine around them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines import serving
from deepcuts.pipelines.publish_gates import (
    changed_share,
    checksum,
    critical_alert_gate,
    data_gates,
    db_gates,
    seen_pairs,
    uncovered_assignments,
)
from deepcuts.pipelines.storage import Lake, MissingDataError, as_run_date
from deepcuts.progress import get_logger
from deepcuts.settings import Settings

log = get_logger(__name__)

STAGES: tuple[str, ...] = (
    "read",
    "recover",
    "validate",
    "register",
    "create_tables",
    "load_lists",
    "load_assignments",
    "load_policy",
    "index",
    "gates",
    "switch",
    "retention",
)

#: Called with the name of each stage once it has completed (fault-injection tests, progress).
StageHook = Callable[[str], None]

#: publish_log statuses of versions that were live at some point (the newest of them bounds backfills).
_WENT_LIVE = ("live", "retired", "replaced", "dropped")


class PublishRejectedError(RuntimeError):
    """The night's output failed a publish gate; the app keeps the previous version."""

    def __init__(self, run_date: date, version: int | None, failed: list[dict[str, Any]]) -> None:
        self.run_date = run_date
        self.version = version
        self.failed = failed
        lines = "; ".join(f"{g['gate']}: {g['detail']}" for g in failed)
        super().__init__(
            f"publish of {run_date} rejected by {len(failed)} gate(s): {lines}. The serving views still "
            "point at the previous version. Fix the upstream step and re-run it, then publish again "
            "(acknowledge a critical alert with deepcuts.pipelines.serving.acknowledge_alerts to accept it)."
        )


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class PublishInputs:
    """What a version is made of. ``lists`` (``ARM_LISTS_SCHEMA``): every list the version may serve,
    loaded as its own lists table (the nightly publish); ``None``: the version reads the lists of the
    live version of the same run date and loads only ``assignments`` and ``policy`` (an intraday
    refresh, pipelines/intraday.py)."""

    assignments: pd.DataFrame
    policy: pd.DataFrame
    lists: pd.DataFrame | None = None


def _read_inputs(lake: Lake, run_date: date) -> PublishInputs:
    lake.require_inputs(
        run_date, Dataset.ARM_LISTS, Dataset.ASSIGNMENTS, Dataset.BANDIT_POLICY, missing_ok=True
    )
    try:
        lists = lake.read_df(Dataset.ARM_LISTS, run_date)
        assignments = lake.read_df(Dataset.ASSIGNMENTS, run_date)
        policy = lake.read_df(Dataset.BANDIT_POLICY, run_date)
    except MissingDataError as exc:
        raise MissingDataError(
            f"publish {run_date}: {exc} (arm_lists is written by the assign step; re-run assign)"
        ) from exc
    return PublishInputs(assignments, policy, lists)


def _version_digest(lists_digest: str, assignments: pd.DataFrame, policy: pd.DataFrame) -> str:
    """A version's content: its lists (by their checksum) and its assignments and policy."""
    return hashlib.sha256(f"{lists_digest}:{checksum(assignments, policy)}".encode()).hexdigest()


# --------------------------------------------------------------------------- the step
def _recover(engine: Engine) -> list[int]:
    """Clean what a crashed publish left: in-flight versions -> failed, their and orphan tables dropped
    (a lists table only once no retained version reads it)."""
    cleaned: set[int] = set()
    with engine.begin() as conn:
        versions = serving.list_versions(conn)
        keep = {v.version for v in versions if v.status in serving.RETAINED and not v.dropped}
        keep.add(serving.EMPTY_VERSION)
        stale = [v.version for v in versions if v.status in serving.IN_FLIGHT]
        if stale:
            conn.execute(
                sa.text(
                    "UPDATE publish_log SET status = 'failed', error = COALESCE(error, :e) "
                    "WHERE status IN ('loading', 'ready')"
                ),
                {"e": "interrupted (process killed or connection lost); cleaned by the next publish"},
            )
        tables = serving.version_tables(conn)
        for version in sorted(v for v, kinds in tables.items() if v not in keep and kinds - {"lists"}):
            serving.drop_version_tables(conn, version)
            cleaned.add(version)
        cleaned.update(serving.drop_unreferenced_lists(conn))
    cleaned_list = sorted(cleaned)
    if cleaned_list:
        log.warning("publish recovery: dropped tables of interrupted/orphan versions %s", cleaned_list)
    return cleaned_list


def _set_status(engine: Engine, version: int, status: str, **fields: Any) -> None:
    assigns = ", ".join(["status = :status", *(f"{k} = :{k}" for k in fields)])
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE publish_log SET {assigns} WHERE version = :v"),
            {"status": status, "v": version, **fields},
        )


def _reject(
    engine: Engine,
    settings: Settings,
    run_date: date,
    digest: str,
    gates: list[dict[str, Any]],
    version: int | None,
) -> PublishRejectedError:
    failed = [g for g in gates if not g["passed"]]
    report = json.dumps(gates, default=str)
    if version is None:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO publish_log (run_date, status, checksum, gate_report) "
                    "VALUES (:d, 'rejected', :c, :g)"
                ),
                {"d": run_date.isoformat(), "c": digest, "g": report},
            )
    else:
        with engine.begin() as conn:
            # status first: its own lists table is dropped only once nothing in flight reads it
            conn.execute(
                sa.text(
                    "UPDATE publish_log SET status = 'rejected', gate_report = :g, "
                    "dropped_at = CURRENT_TIMESTAMP WHERE version = :v"
                ),
                {"g": report, "v": version},
            )
            serving.drop_version_tables(conn, version)
    from deepcuts.pipelines.alerting import send_alerts

    alert = {
        "check_name": "publish_gates",
        "category": "publish",
        "severity": "critical",
        "value": float(len(failed)),
        "threshold": "0 failed gates",
        "message": f"publish of {run_date} rejected: "
        + "; ".join(f"{g['gate']}: {g['detail']}" for g in failed),
    }
    serving.replace_alerts(engine, run_date, "publish", [alert])
    send_alerts(settings, [alert])
    return PublishRejectedError(run_date, version, failed)


def _retention(engine: Engine, keep_versions: int, lock_timeout_ms: int) -> list[int]:
    """Drop tables of replaced versions and of retired versions beyond the newest ``keep_versions - 1``."""
    with engine.begin() as conn:
        versions = serving.list_versions(conn)
    retired = [v for v in versions if v.status == "retired" and not v.dropped]
    replaced = [v for v in versions if v.status == "replaced" and not v.dropped]
    doomed = [(v, "replaced") for v in replaced] + [
        (v, "dropped") for v in retired[max(keep_versions - 1, 0) :]
    ]
    dropped = []
    for info, status in doomed:
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                conn.execute(
                    sa.text(
                        "UPDATE publish_log SET status = :s, dropped_at = CURRENT_TIMESTAMP "
                        "WHERE version = :v"
                    ),
                    {"s": status, "v": info.version},
                )
                # its lists table stays while a retained version of the same night reads it
                serving.drop_version_tables(conn, info.version)
            dropped.append(info.version)
        except sa.exc.OperationalError as exc:
            # A long reader still holds the old table: harmless, the next publish retries.
            log.warning(
                "retention: could not drop version %s yet (%s); will retry next run", info.version, exc
            )
    return dropped


def publish(
    settings: Settings,
    run_date: date | str,
    on_stage: StageHook | None = None,
    inputs: PublishInputs | None = None,
) -> dict[str, Any]:
    """Publish the night's lists, assignments and policy as a new serving version.

    Returns ``{"status": "published" | "unchanged" | "skipped_older" | "pinned" | "no_lists",
    "version", "list_version", ...}``; raises :class:`PublishRejectedError` when a gate fails (the
    previous version stays live), ``MissingDataError`` when an input is missing, and a one-line
    ``ServingError`` when the database is unreachable, the writers' lock stays taken or readers keep the
    views locked. ``on_stage`` is called after each of :data:`STAGES`. ``inputs`` replaces the run date's
    lake partitions; without lists (an intraday refresh, pipelines/intraday.py) the version loads only
    its assignments and policy and reads the lists of the live version of ``run_date``.
    """
    run_date = as_run_date(run_date)
    started = time.monotonic()
    stage_seconds: dict[str, float] = {}
    last = [started]

    def hook(stage: str) -> None:
        now = time.monotonic()
        stage_seconds[stage] = round(now - last[0], 3)
        last[0] = now
        if on_stage is not None:
            on_stage(stage)

    lake = Lake(settings.home)
    cfg = settings.publish

    data = _read_inputs(lake, run_date) if inputs is None else inputs
    assignments, policy, lists = data.assignments, data.policy, data.lists
    lists_digest = checksum(lists) if lists is not None else None
    hook("read")

    with serving.writer_session(settings) as engine:
        recovered = _recover(engine)
        hook("recover")

        with engine.connect() as conn:
            versions = serving.list_versions(conn)
            live = next((v for v in versions if v.status == "live"), None)
            critical = serving.open_critical_alerts(conn, run_date)
            pin = serving.current_pin(conn)
        newest = max((v.run_date for v in versions if v.status in _WENT_LIVE), default=None)
        # an intraday version reads the lists of the live version of its run date
        base = None if lists is not None or live is None or live.run_date != run_date else live
        if base is not None:
            lists_digest = base.lists_checksum
        digest = _version_digest(lists_digest or "", assignments, policy)

        def outcome(status: str) -> dict[str, Any]:
            return {
                "status": status,
                "version": (pin.version if pin is not None else live.version if live else None),
                "list_version": live.list_version if live else None,
                "run_date": run_date.isoformat(),
                "checksum": digest,
            }

        if pin is not None:
            log.warning(
                "publish %s: version %s is pinned (%s, %s); loading nothing and leaving the views "
                "alone. Release it with `deepcuts rollback --release`, then publish again.",
                run_date,
                pin.version,
                pin.reason,
                pin.pinned_at,
            )
            return outcome("pinned")
        if live is not None and live.run_date == run_date and live.checksum == digest:
            log.info(
                "publish %s: identical data already live as %s; nothing to do",
                run_date,
                live.list_version,
            )
            return outcome("unchanged")
        if newest is not None and newest > run_date and cfg.skip_older_run_dates:
            log.warning(
                "publish %s: a newer run date (%s) has been published; not switching back (a backfill "
                "or a stale rerun). Use `deepcuts rollback --to VERSION` to serve an older version "
                "on purpose.",
                run_date,
                newest,
            )
            return outcome("skipped_older")
        if lists is None and base is None:
            log.warning(
                "publish %s: assignments without lists refer to the lists of the live version of the "
                "same run date, and the live version is %s; publishing nothing (publish the night first)",
                run_date,
                live.list_version if live else "none",
            )
            return outcome("no_lists")

        seen = (
            # repeats and all: deduplicating the whole history costs more than the check that needs
            # the pairs only to look items up (data_gates deduplicates them if an item is seen)
            seen_pairs(lake, run_date, lists[C.USER_ID].to_numpy(), distinct=False)
            if lists is not None
            else pd.DataFrame({C.USER_ID: pd.Series(dtype="int64"), C.ITEM_ID: pd.Series(dtype="int64")})
        )
        length = settings.rerank.list_length
        gates = data_gates(lists, assignments, policy, seen, length, seen_distinct=False)
        gates.append(critical_alert_gate(critical))
        hook("validate")
        if not all(g["passed"] for g in gates):
            raise _reject(engine, settings, run_date, digest, gates, None)

        with engine.begin() as conn:
            version = int(
                conn.execute(
                    sa.text(
                        "INSERT INTO publish_log (run_date, status, checksum, lists_version, "
                        "lists_checksum, n_recommendations, n_assignments, n_policy, n_users) "
                        "VALUES (:d, 'loading', :c, :lv, :lc, :nr, :na, :np, :nu) "
                        "RETURNING version"
                    ),
                    {
                        "d": run_date.isoformat(),
                        "c": digest,
                        "lv": base.lists_version if base is not None else None,
                        "lc": lists_digest,
                        "nr": len(assignments) * length,  # the rows the views show
                        "na": len(assignments),
                        "np": len(policy),
                        "nu": int(assignments[C.USER_ID].nunique()),
                    },
                ).scalar_one()
            )
            if base is None:  # a nightly version reads its own lists
                conn.execute(
                    sa.text("UPDATE publish_log SET lists_version = version WHERE version = :v"),
                    {"v": version},
                )
        label = serving.list_version_label(run_date, version)
        hook("register")
        try:
            result = _load_gate_switch(
                engine,
                settings,
                run_date,
                _Version(version, label, base.lists_version if base is not None else version),
                data,
                gates,
                digest,
                live,
                hook,
            )
        except PublishRejectedError:
            raise
        except BaseException as exc:
            _mark_failed(engine, version, exc)
            raise
        result["recovered"] = recovered
        result["seconds"] = round(time.monotonic() - started, 3)
        result["stage_seconds"] = stage_seconds
        return result


@dataclass(frozen=True)
class _Version:
    number: int
    label: str
    lists_version: int

    @property
    def suffix(self) -> str:
        return serving.version_suffix(self.number)


def _mark_failed(engine: Engine, version: int, exc: BaseException) -> None:
    """Best effort: an in-flight version that hit an error becomes ``failed`` and loses its tables.

    A version that already went live is left alone (the error came after the switch).
    """
    try:
        with engine.begin() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM publish_log WHERE version = :v"), {"v": version}
            ).scalar_one_or_none()
            if status not in serving.IN_FLIGHT:
                return
            conn.execute(
                sa.text(
                    "UPDATE publish_log SET status = 'failed', error = :e, dropped_at = CURRENT_TIMESTAMP "
                    "WHERE version = :v"
                ),
                {"e": f"{type(exc).__name__}: {exc}"[:2000], "v": version},
            )
            serving.drop_version_tables(conn, version)
    except Exception:  # the next publish's recovery stage finishes the job
        log.exception("could not mark version %s failed; the next publish will clean it", version)


def _load_gate_switch(
    engine: Engine,
    settings: Settings,
    run_date: date,
    new: _Version,
    data: PublishInputs,
    gates: list[dict[str, Any]],
    digest: str,
    live: serving.VersionInfo | None,
    hook: StageHook,
) -> dict[str, Any]:
    cfg = settings.publish
    with_lists = data.lists is not None
    with engine.begin() as conn:
        serving.create_version_tables(conn, new.number, lists=with_lists)
    hook("create_tables")

    loads = (
        ("load_lists", serving.LISTS_TABLE, data.lists),
        ("load_assignments", "assignments", data.assignments),
        ("load_policy", "bandit_policy", data.policy),
    )
    counts: dict[str, int] = {}
    for stage, table, frame in loads:
        if frame is not None:
            if C.IS_LONG_TAIL in frame.columns:
                frame = frame.assign(**{C.IS_LONG_TAIL: frame[C.IS_LONG_TAIL].astype(bool)})
            with engine.begin() as conn:
                counts[table] = serving.bulk_insert(conn, f"{table}_{new.suffix}", frame, cfg.load_chunk_rows)
        hook(stage)

    with engine.begin() as conn:
        serving.index_version_tables(conn, new.number, lists=with_lists)
    hook("index")

    with engine.begin() as conn:
        loaded = {
            table: int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}_{new.suffix}").scalar_one())
            for table in counts
        }
        uncovered = uncovered_assignments(conn, new.number, new.lists_version, settings.rerank.list_length)
        previous = live if live is not None and live.version != serving.EMPTY_VERSION else None
        share = changed_share(
            conn,
            new.number,
            previous.version if previous else None,
            new.lists_version,
            previous.lists_version if previous else None,
        )
    loaded_gates = db_gates(loaded, counts, share, cfg, uncovered)
    all_gates = gates + loaded_gates
    if not all(g["passed"] for g in loaded_gates):
        raise _reject(engine, settings, run_date, digest, all_gates, new.number)
    _set_status(
        engine,
        new.number,
        "ready",
        list_version=new.label,
        changed_share=share,
        gate_report=json.dumps(all_gates, default=str),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE publish_log SET loaded_at = CURRENT_TIMESTAMP WHERE version = :v"),
            {"v": new.number},
        )
    hook("gates")

    def replace_same_night(conn: Connection) -> None:
        # New lists for a run date replace every older version of that date (nightly and intraday);
        # an intraday version leaves them retired (a rollback may return to the night's policy).
        conn.execute(
            sa.text(
                "UPDATE publish_log SET status = 'replaced' WHERE run_date = :d AND version <> :v "
                "AND status = 'retired'"
            ),
            {"d": run_date.isoformat(), "v": new.number},
        )

    serving.switch_with_retry(
        engine,
        new.number,
        new.label,
        cfg.switch_lock_timeout_ms,
        cfg.switch_attempts,
        also=replace_same_night if with_lists else None,
    )
    hook("switch")

    dropped = _retention(engine, cfg.keep_versions, cfg.switch_lock_timeout_ms)
    hook("retention")
    log.info(
        "published %s (%s): %s rows loaded, %d users, changed share %s; previous %s",
        new.label,
        "with its lists" if with_lists else f"on the lists of version {new.lists_version}",
        counts,
        int(data.assignments[C.USER_ID].nunique()),
        share,
        live.list_version if live else None,
    )
    return {
        "status": "published",
        "run_date": run_date.isoformat(),
        "version": new.number,
        "list_version": new.label,
        "lists_version": new.lists_version,
        "previous_version": live.version if live else None,
        "checksum": digest,
        "rows": counts,
        "changed_share": share,
        "dropped_versions": dropped,
        "gates": {g["gate"]: g["passed"] for g in all_gates},
    }
