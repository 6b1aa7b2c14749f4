"""Nightly step ``publish``: load the night's lists into a new serving version, gate it, switch to it.

``publish(settings, run_date)`` runs named stages (:data:`STAGES`); each one is a separate transaction
or a pure computation, so a failure (an exception, or the process being killed) after any stage leaves
the views on the previous complete version, and the next run cleans up and succeeds:

=================  =====================================================================================
``read``           read served lists, assignments and the bandit policy of the run date; checksum them
``recover``        under the writers' lock: mark versions left ``loading``/``ready`` by a crash as
                   ``failed`` and drop their tables, and drop orphan version tables; stop here
                   (``status: pinned``) while an operator's rollback pins a version
``validate``       data gates (complete, unique, unseen, finite, known values, valid policy) and the
                   critical-alert gate; nothing is loaded when one fails
``register``       insert the ``publish_log`` row (status ``loading``); its id is the version number
``create_tables``  create ``recommendations_v<N>``, ``assignments_v<N>``, ``bandit_policy_v<N>``
``load_*``         bulk-load each table (COPY on PostgreSQL, executemany on SQLite)
``index``          primary keys + ANALYZE
``gates``          database gates on what was loaded: row counts, share of users whose list changed
``switch``         one transaction: views -> version N, N ``live``, the previous live ``retired``
``retention``      drop the tables of replaced versions and of retired versions beyond ``keep_versions``
=================  =====================================================================================

Publishing a run date whose identical data (same checksum) is already live is a no-op; different data
for the same run date is a clean replace (the older version of that date becomes ``replaced``); a run
date older than the newest one ever published is skipped (``skipped_older``), even after a rollback.
A gate failure marks the version ``rejected``, records an alert, and raises :class:`PublishRejectedError`:
the app keeps yesterday's version.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from deepcuts.contracts import C, Dataset, Daypart, Variant
from deepcuts.pipelines import serving
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
    "load_recommendations",
    "load_assignments",
    "load_policy",
    "index",
    "gates",
    "switch",
    "retention",
)

#: Called with the name of each stage once it has completed (fault-injection tests, progress).
StageHook = Callable[[str], None]

_EXAMPLES = 5  # offending rows quoted per failed gate
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
def _read_inputs(lake: Lake, run_date: date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    lake.require_inputs(
        run_date, Dataset.SERVED_LISTS, Dataset.ASSIGNMENTS, Dataset.BANDIT_POLICY, missing_ok=True
    )
    try:
        served = lake.read_df(Dataset.SERVED_LISTS, run_date)
        assignments = lake.read_df(Dataset.ASSIGNMENTS, run_date)
        policy = lake.read_df(Dataset.BANDIT_POLICY, run_date)
    except MissingDataError as exc:
        raise MissingDataError(f"publish {run_date}: {exc}") from exc
    return served, assignments, policy


def checksum(*frames: pd.DataFrame) -> str:
    """SHA-256 over the rows of each frame in a canonical order (sorted by every column).

    Row order and ``run_date`` do not matter; any changed value does.
    """
    digest = hashlib.sha256()
    for frame in frames:
        cols = sorted(c for c in frame.columns if c != C.RUN_DATE)
        canon = frame[cols].sort_values(cols, kind="stable").reset_index(drop=True)
        digest.update(",".join(cols).encode())
        digest.update(str(len(canon)).encode())
        digest.update(pd.util.hash_pandas_object(canon, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def seen_pairs(lake: Lake, run_date: date, user_ids: np.ndarray) -> pd.DataFrame:
    """Distinct (user_id, item_id) pairs of the users' rating history as of ``run_date``.

    ``canonical/interactions(D)`` is a cumulative snapshot (everything up to the end of D, see
    pipelines/ingest.py), so the newest partition at or before ``run_date`` is the whole history; only
    the two id columns of the users being published are read.
    """
    days = [d for d in lake.run_dates(Dataset.INTERACTIONS) if d <= run_date]
    if not days:
        return pd.DataFrame({C.USER_ID: pd.Series(dtype="int64"), C.ITEM_ID: pd.Series(dtype="int64")})
    users = pc.field(C.USER_ID).isin(np.unique(user_ids))
    table = lake.read_table(Dataset.INTERACTIONS, days[-1], columns=[C.USER_ID, C.ITEM_ID], filter=users)
    return table.to_pandas().drop_duplicates()


# --------------------------------------------------------------------------- gates
def _gate(name: str, passed: bool, detail: str, value: float | None = None) -> dict[str, Any]:
    return {"gate": name, "passed": bool(passed), "value": value, "detail": detail}


def _examples(frame: pd.DataFrame, cols: list[str]) -> str:
    return json.dumps(frame[cols].head(_EXAMPLES).astype(object).to_dict("records"), default=str)


def data_gates(
    served: pd.DataFrame,
    assignments: pd.DataFrame,
    policy: pd.DataFrame,
    seen: pd.DataFrame,
    list_length: int,
) -> list[dict[str, Any]]:
    """The gates that need only the frames. Each returns passed + a detail naming offending rows.

    - ``assignments_unique``: one assignment per (user, daypart);
    - ``complete``: every active user (one with an assignment) has an assignment for every daypart, and
      every assigned (user, daypart) has exactly ``list_length`` rows with ranks 1..list_length; no
      list without an assignment;
    - ``lists_unique``: no duplicate (user, daypart, rank) nor (user, daypart, item);
    - ``no_seen_items``: no served (user, item) pair is in the user's history;
    - ``finite``: score, novelty, propensity finite; propensity in (0, 1];
    - ``known_values``: daypart and variant in their enums; list arm/variant equal the assignment's
      variant;
    - ``policy_valid``: probabilities finite in [0, 1], one row per (segment, daypart, arm), selection
      probabilities sum to 1 (+-1e-6) per context.
    """
    gates: list[dict[str, Any]] = []
    key = [C.USER_ID, C.DAYPART]

    dup_assign = assignments[assignments.duplicated(key, keep=False)]
    gates.append(
        _gate(
            "assignments_unique",
            dup_assign.empty,
            "ok"
            if dup_assign.empty
            else f"{len(dup_assign)} duplicated rows, e.g. {_examples(dup_assign, key)}",
            float(len(dup_assign)),
        )
    )

    problems: list[str] = []
    n_users = int(assignments[C.USER_ID].nunique())
    if n_users == 0:
        problems.append("no assignments: nothing to publish")
    dayparts = [d.value for d in Daypart]
    per_user = assignments.groupby(C.USER_ID)[C.DAYPART].nunique()
    partial_users = per_user[per_user < len(dayparts)]
    if len(partial_users):
        problems.append(
            f"{len(partial_users)} active users lack a daypart assignment, e.g. users "
            f"{partial_users.index[:_EXAMPLES].tolist()}"
        )
    lists = served.groupby(key).agg(
        n=(C.RANK, "size"), rmin=(C.RANK, "min"), rmax=(C.RANK, "max"), nr=(C.RANK, "nunique")
    )
    expected = assignments.drop_duplicates(key).set_index(key).index
    missing = expected.difference(lists.index)
    if len(missing):
        problems.append(
            f"{len(missing)} assigned (user, daypart) have no list, e.g. {missing[:_EXAMPLES].tolist()}"
        )
    orphan = lists.index.difference(expected)
    if len(orphan):
        problems.append(f"{len(orphan)} lists have no assignment, e.g. {orphan[:_EXAMPLES].tolist()}")
    full = (
        (lists["n"] == list_length)
        & (lists["nr"] == list_length)
        & (lists["rmin"] == 1)
        & (lists["rmax"] == list_length)
    )
    short = lists[~full]
    if len(short):
        problems.append(
            f"{len(short)} lists are not exactly ranks 1..{list_length}, e.g. "
            f"{short.head(_EXAMPLES).reset_index()[[*key, 'n']].to_dict('records')}"
        )
    gates.append(_gate("complete", not problems, "; ".join(problems) or "ok", float(n_users)))

    dup_rank = served[served.duplicated([*key, C.RANK], keep=False)]
    dup_item = served[served.duplicated([*key, C.ITEM_ID], keep=False)]
    ok = dup_rank.empty and dup_item.empty
    gates.append(
        _gate(
            "lists_unique",
            ok,
            "ok"
            if ok
            else f"{len(dup_rank)} rows share a rank, {len(dup_item)} rows repeat an item in their "
            f"list, e.g. {_examples(pd.concat([dup_rank, dup_item]), [*key, C.RANK, C.ITEM_ID])}",
            float(len(dup_rank) + len(dup_item)),
        )
    )

    hits = served.merge(seen, on=[C.USER_ID, C.ITEM_ID], how="inner")
    gates.append(
        _gate(
            "no_seen_items",
            hits.empty,
            "ok"
            if hits.empty
            else f"{len(hits)} served items are in the user's history, e.g. "
            f"{_examples(hits, [C.USER_ID, C.DAYPART, C.ITEM_ID])}",
            float(len(hits)),
        )
    )

    bad_parts = []
    for col, frame in ((C.SCORE, served), (C.NOVELTY, served), (C.PROPENSITY, assignments)):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if col == C.PROPENSITY:
            bad |= ~((values > 0) & (values <= 1))
        if bad.any():
            bad_parts.append(f"{int(bad.sum())} bad {col} values, e.g. {_examples(frame[bad], [*key, col])}")
    gates.append(_gate("finite", not bad_parts, "; ".join(bad_parts) or "ok", float(len(bad_parts))))

    value_problems = []
    for col, allowed, frame in (
        (C.DAYPART, set(dayparts), served),
        (C.DAYPART, set(dayparts), assignments),
        (C.VARIANT, {v.value for v in Variant}, served),
        (C.VARIANT, {v.value for v in Variant}, assignments),
    ):
        unknown = sorted(set(frame[col].unique()) - allowed)
        if unknown:
            value_problems.append(f"unknown {col} {unknown[:_EXAMPLES]} (allowed {sorted(allowed)})")
    joined = (
        served[[*key, C.VARIANT]]
        .drop_duplicates()
        .merge(assignments[[*key, C.VARIANT]], on=key, suffixes=("", "_a"))
    )
    mismatch = joined[joined[C.VARIANT] != joined[f"{C.VARIANT}_a"]]
    if len(mismatch):
        value_problems.append(f"{len(mismatch)} lists disagree with their assignment's variant")
    gates.append(_gate("known_values", not value_problems, "; ".join(value_problems) or "ok"))

    policy_problems = []
    ctx = [C.SEGMENT, C.DAYPART]
    for col in (C.THOMPSON_PROBABILITY, C.SELECTION_PROBABILITY, C.MEAN):
        values = policy[col].to_numpy(np.float64)
        if not (np.isfinite(values) & (values >= 0) & (values <= 1)).all():
            policy_problems.append(f"{col} outside [0, 1] or not finite")
    for col in (C.ALPHA, C.BETA):
        values = policy[col].to_numpy(np.float64)
        if not (np.isfinite(values) & (values > 0)).all():
            policy_problems.append(f"{col} not finite and positive")
    if policy.duplicated([*ctx, C.ARM]).any():
        policy_problems.append("duplicate (segment, daypart, arm) rows")
    if len(policy):
        sums = policy.groupby(ctx)[C.SELECTION_PROBABILITY].sum()
        off = sums[(sums - 1.0).abs() > 1e-6]
        if len(off):
            policy_problems.append(f"selection probabilities do not sum to 1 in {len(off)} contexts")
    else:
        policy_problems.append("the policy is empty")
    gates.append(_gate("policy_valid", not policy_problems, "; ".join(policy_problems) or "ok"))
    return gates


def changed_share(conn: Connection, new_version: int, previous_version: int | None) -> float | None:
    """Share of the new version's users whose list (any daypart) differs from the previous version's.

    changed = |{u : exists (u, daypart, rank, item) in new EXCEPT old}| / |users in new|; a user absent
    from the previous version counts as changed. ``None`` when there is no previous version.
    """
    if previous_version is None or previous_version == serving.EMPTY_VERSION:
        return None
    new_t = f"recommendations_{serving.version_suffix(new_version)}"
    old_t = f"recommendations_{serving.version_suffix(previous_version)}"
    cols = "user_id, daypart, rank, item_id"
    changed = conn.exec_driver_sql(
        f"SELECT COUNT(*) FROM (SELECT DISTINCT user_id FROM (SELECT {cols} FROM {new_t} "
        f"EXCEPT SELECT {cols} FROM {old_t}) d) u"
    ).scalar_one()
    total = conn.exec_driver_sql(f"SELECT COUNT(DISTINCT user_id) FROM {new_t}").scalar_one()
    return float(changed) / float(total) if total else None


# --------------------------------------------------------------------------- the step
def _recover(engine: Engine) -> list[int]:
    """Clean what a crashed publish left: in-flight versions -> failed, their and orphan tables dropped."""
    cleaned: list[int] = []
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
        for version in sorted(set(serving.version_table_names(conn)) - keep):
            serving.drop_version_tables(conn, version)
            cleaned.append(version)
    if cleaned:
        log.warning("publish recovery: dropped tables of interrupted/orphan versions %s", cleaned)
    return cleaned


def _recommendation_rows(served: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """Served lists with the assignment's segment, propensity and experiment (the app logs them back)."""
    extra = assignments[[C.USER_ID, C.DAYPART, C.SEGMENT, C.PROPENSITY, C.EXPERIMENT]]
    rows = served.merge(extra, on=[C.USER_ID, C.DAYPART], how="inner", validate="many_to_one")
    return rows.sort_values([C.USER_ID, C.DAYPART, C.RANK], kind="stable").reset_index(drop=True)


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
            serving.drop_version_tables(conn, version)
            conn.execute(
                sa.text(
                    "UPDATE publish_log SET status = 'rejected', gate_report = :g, "
                    "dropped_at = CURRENT_TIMESTAMP WHERE version = :v"
                ),
                {"g": report, "v": version},
            )
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
                serving.drop_version_tables(conn, info.version)
                conn.execute(
                    sa.text(
                        "UPDATE publish_log SET status = :s, dropped_at = CURRENT_TIMESTAMP "
                        "WHERE version = :v"
                    ),
                    {"s": status, "v": info.version},
                )
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
    inputs: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Publish the night's served lists, assignments and policy as a new serving version.

    Returns ``{"status": "published" | "unchanged" | "skipped_older" | "pinned", "version",
    "list_version", ...}``; raises :class:`PublishRejectedError` when a gate fails (the previous version
    stays live), ``MissingDataError`` when an input is missing, and a one-line ``ServingError`` when the
    database is unreachable, the writers' lock stays taken or readers keep the views locked.
    ``on_stage`` is called after each of :data:`STAGES`. ``inputs`` = (served lists, assignments,
    policy) replaces the run date's lake partitions: an intraday refresh (pipelines/intraday.py)
    publishes its re-assignment of the run date this way, through the same gates, pin and switch.
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

    served, assignments, policy = _read_inputs(lake, run_date) if inputs is None else inputs
    digest = checksum(served, assignments, policy)
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
        if pin is not None:
            log.warning(
                "publish %s: version %s is pinned (%s, %s); loading nothing and leaving the views "
                "alone. Release it with `deepcuts rollback --release`, then publish again.",
                run_date,
                pin.version,
                pin.reason,
                pin.pinned_at,
            )
            return {
                "status": "pinned",
                "version": pin.version,
                "list_version": live.list_version if live else None,
                "run_date": run_date.isoformat(),
                "checksum": digest,
            }
        if live is not None and live.run_date == run_date and live.checksum == digest:
            log.info(
                "publish %s: identical data already live as %s; nothing to do",
                run_date,
                live.list_version,
            )
            return {
                "status": "unchanged",
                "version": live.version,
                "list_version": live.list_version,
                "run_date": run_date.isoformat(),
                "checksum": digest,
            }
        if newest is not None and newest > run_date and cfg.skip_older_run_dates:
            log.warning(
                "publish %s: a newer run date (%s) has been published; not switching back (a backfill "
                "or a stale rerun). Use `deepcuts rollback --to VERSION` to serve an older version "
                "on purpose.",
                run_date,
                newest,
            )
            return {
                "status": "skipped_older",
                "version": live.version,
                "list_version": live.list_version,
                "run_date": run_date.isoformat(),
                "checksum": digest,
            }

        seen = seen_pairs(lake, run_date, served[C.USER_ID].to_numpy())
        gates = data_gates(served, assignments, policy, seen, settings.rerank.list_length)
        gates.append(
            _gate(
                "no_critical_alert",
                not critical,
                "ok" if not critical else "; ".join(f"{a['check_name']}: {a['message']}" for a in critical),
                float(len(critical)),
            )
        )
        hook("validate")
        if not all(g["passed"] for g in gates):
            raise _reject(engine, settings, run_date, digest, gates, None)

        recs = _recommendation_rows(served, assignments)
        with engine.begin() as conn:
            version = int(
                conn.execute(
                    sa.text(
                        "INSERT INTO publish_log (run_date, status, checksum, n_recommendations, "
                        "n_assignments, n_policy, n_users) "
                        "VALUES (:d, 'loading', :c, :nr, :na, :np, :nu) "
                        "RETURNING version"
                    ),
                    {
                        "d": run_date.isoformat(),
                        "c": digest,
                        "nr": len(recs),
                        "na": len(assignments),
                        "np": len(policy),
                        "nu": int(assignments[C.USER_ID].nunique()),
                    },
                ).scalar_one()
            )
        label = serving.list_version_label(run_date, version)
        suffix = serving.version_suffix(version)
        hook("register")
        try:
            result = _load_gate_switch(
                engine,
                settings,
                run_date,
                version,
                label,
                suffix,
                recs,
                assignments,
                policy,
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
            serving.drop_version_tables(conn, version)
            conn.execute(
                sa.text(
                    "UPDATE publish_log SET status = 'failed', error = :e, dropped_at = CURRENT_TIMESTAMP "
                    "WHERE version = :v"
                ),
                {"e": f"{type(exc).__name__}: {exc}"[:2000], "v": version},
            )
    except Exception:  # the next publish's recovery stage finishes the job
        log.exception("could not mark version %s failed; the next publish will clean it", version)


def _load_gate_switch(
    engine: Engine,
    settings: Settings,
    run_date: date,
    version: int,
    label: str,
    suffix: str,
    recs: pd.DataFrame,
    assignments: pd.DataFrame,
    policy: pd.DataFrame,
    gates: list[dict[str, Any]],
    digest: str,
    live: serving.VersionInfo | None,
    hook: StageHook,
) -> dict[str, Any]:
    cfg = settings.publish
    with engine.begin() as conn:
        serving.create_version_tables(conn, version)
    hook("create_tables")

    loads = (
        ("load_recommendations", "recommendations", recs),
        ("load_assignments", "assignments", assignments),
        ("load_policy", "bandit_policy", policy),
    )
    counts: dict[str, int] = {}
    for stage, table, frame in loads:
        frame = frame.copy()
        if C.IS_LONG_TAIL in frame.columns:
            frame[C.IS_LONG_TAIL] = frame[C.IS_LONG_TAIL].astype(bool)
        with engine.begin() as conn:
            counts[table] = serving.bulk_insert(conn, f"{table}_{suffix}", frame, cfg.load_chunk_rows)
        hook(stage)

    with engine.begin() as conn:
        serving.index_version_tables(conn, version)
    hook("index")

    with engine.begin() as conn:
        loaded = {
            table: int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}_{suffix}").scalar_one())
            for table in serving.VERSION_TABLES
        }
        share = changed_share(conn, version, live.version if live else None)
    count_ok = loaded == counts
    db_gates = [
        _gate("row_counts", count_ok, "ok" if count_ok else f"loaded {loaded}, expected {counts}"),
        _gate(
            "changed_share",
            share is None or cfg.min_changed_share <= share <= cfg.max_changed_share,
            "no previous version"
            if share is None
            else f"{share:.4f} of users have a changed list "
            f"(band [{cfg.min_changed_share}, {cfg.max_changed_share}])",
            share,
        ),
    ]
    all_gates = gates + db_gates
    if not all(g["passed"] for g in db_gates):
        raise _reject(engine, settings, run_date, digest, all_gates, version)
    _set_status(
        engine,
        version,
        "ready",
        list_version=label,
        changed_share=share,
        gate_report=json.dumps(all_gates, default=str),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE publish_log SET loaded_at = CURRENT_TIMESTAMP WHERE version = :v"), {"v": version}
        )
    hook("gates")

    def replace_same_night(conn: Connection) -> None:
        # A republish of the same run date replaces the older version of that date.
        conn.execute(
            sa.text(
                "UPDATE publish_log SET status = 'replaced' WHERE run_date = :d AND version <> :v "
                "AND status = 'retired'"
            ),
            {"d": run_date.isoformat(), "v": version},
        )

    serving.switch_with_retry(
        engine, version, label, cfg.switch_lock_timeout_ms, cfg.switch_attempts, also=replace_same_night
    )
    hook("switch")

    dropped = _retention(engine, cfg.keep_versions, cfg.switch_lock_timeout_ms)
    hook("retention")
    log.info(
        "published %s: %d list rows, %d users, changed share %s; previous %s",
        label,
        counts["recommendations"],
        int(assignments[C.USER_ID].nunique()),
        share,
        live.list_version if live else None,
    )
    return {
        "status": "published",
        "run_date": run_date.isoformat(),
        "version": version,
        "list_version": label,
        "previous_version": live.version if live else None,
        "checksum": digest,
        "rows": counts,
        "changed_share": share,
        "dropped_versions": dropped,
        "gates": {g["gate"]: g["passed"] for g in all_gates},
    }
