"""The serving database layer: engines, schema, per-version tables, the view switch and rollback.

The app reads stable views (``current_recommendations``, ``current_assignments``,
``current_bandit_policy``, ``current_version``). Each publish writes a new *version*: the tables
``assignments_v<NNNNNN>`` (which list each (user, daypart) gets) and ``bandit_policy_v<NNNNNN>``, that the
app cannot see, loaded and indexed outside any reader's path. A nightly publish also loads
``lists_v<NNNNNN>``: every list the night may serve (the baseline list of each control user, every bandit
arm's re-ranked list of each treatment user); an intraday refresh loads only assignments and policy and
its version reads the night's lists table (``publish_log.lists_version``), so an arm switch reloads no
list. ``current_recommendations`` joins a version's assignments with its lists. Switching is one
transaction that re-points the views and flips ``publish_log`` statuses, so a reader sees the old version
or the new one, never a mix. Version ``0`` is the empty version the views point at before the first
publish. A lists table is dropped only once no live, retained or in-flight version reads it.

All DDL lives in ``sql/<dialect>/*.sql``. The only values ever formatted into SQL text are the version
suffix (from an integer), the ``list_version`` label (a date and an integer) and role/database names
checked against ``^[a-z_][a-z0-9_]*$``; data always travels as bound parameters (or COPY on PostgreSQL).

SQLite: pysqlite does not emit ``BEGIN`` before DDL, so DDL would autocommit statement by statement.
:func:`make_engine` applies SQLAlchemy's documented recipe (``isolation_level = None`` on connect and an
explicit ``BEGIN`` in the ``begin`` event), which makes DDL transactional; the writer engine uses
``BEGIN IMMEDIATE`` to take the write lock up front. The database runs in WAL mode so readers never block
the writer and never see uncommitted DDL.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from deepcuts.progress import get_logger
from deepcuts.settings import Settings
from deepcuts.sql_files import read_query, read_sql  # the .sql files ship as package data

log = get_logger(__name__)

#: The empty version the views point at until the first publish.
EMPTY_VERSION = 0
EMPTY_LABEL = "none"

#: The tables every version has (its policy: assignments and the bandit policy), in load order.
VERSION_TABLES: tuple[str, ...] = ("assignments", "bandit_policy")
#: The table of every servable list of a night, loaded by the nightly publish only (sql/<dialect>/lists.sql).
LISTS_TABLE = "lists"
VIEWS: tuple[str, ...] = (
    "current_recommendations",
    "current_assignments",
    "current_bandit_policy",
    "current_version",
)

#: Columns of each per-version table, in DDL order (see sql/<dialect>/version.sql and lists.sql).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "lists": (
        "user_id",
        "variant",
        "arm",
        "rank",
        "item_id",
        "score",
        "novelty",
        "is_long_tail",
        "reason",
    ),
    "assignments": ("user_id", "daypart", "segment", "arm", "propensity", "variant", "experiment"),
    "bandit_policy": (
        "segment",
        "daypart",
        "arm",
        "alpha",
        "beta",
        "mean",
        "thompson_probability",
        "selection_probability",
    ),
}

#: Statuses in publish_log. ``live``: the views point here. ``retired``: was live, tables kept for
#: rollback. ``replaced``: superseded by a republish of the same run date. ``dropped``: tables removed by
#: retention. ``loading``/``ready``: in flight (left over only by a crash; cleaned by the next publish).
RETAINED = ("live", "retired")
IN_FLIGHT = ("loading", "ready")

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_LABEL = re.compile(r"^(none|\d{4}-\d{2}-\d{2}\.v\d+)$")
#: ``recommendations``: the one-table layout of versions published before the lists were shared (dropped
#: like the others by retention; such a version cannot be rolled back to).
_VERSION_TABLE = re.compile(r"^(lists|assignments|bandit_policy|recommendations)_v(\d{6,})$")
#: Statuses whose versions' lists tables must stay (they are, or may become, what the views read).
_READS_LISTS = ("live", "retired", "loading", "ready")
#: PostgreSQL: the empty table whose ACCESS EXCLUSIVE lock is the writers' lock (sql/postgres/schema.sql).
WRITER_LOCK_TABLE = "serving_writer_lock"
#: SQLSTATE of ``lock_timeout`` expiring (LockNotAvailable).
_LOCK_NOT_AVAILABLE = "55P03"


class ServingError(RuntimeError):
    """A serving-database operation could not be done; the message says what to do."""

    #: The message is complete in one line: the CLI prints it instead of a traceback.
    user_error: ClassVar[bool] = True


def is_lock_timeout(exc: BaseException) -> bool:
    """True for a PostgreSQL ``lock_timeout`` (55P03) or SQLite's "database is locked"."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "pgcode", None) == _LOCK_NOT_AVAILABLE:
        return True
    return "database is locked" in str(orig)


def check_reachable(engine: Engine) -> None:
    """Open (and close) one connection, or raise a one-line :class:`ServingError` saying where and why.

    A server that is down otherwise surfaces as a driver traceback of some 40 frames.
    """
    try:
        with engine.connect():
            pass
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise ServingError(
            f"cannot connect to the serving database at {engine.url.render_as_string(hide_password=True)}"
            f" ({reason[0] if reason else type(exc).__name__}); is it running, and is "
            "DEEPCUTS_SERVING_URL right?"
        ) from None


# --------------------------------------------------------------------------- names and SQL files
def version_suffix(version: int) -> str:
    """Table suffix of a version: ``v000012``. Accepts only a non-negative integer."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"version must be a non-negative int, got {version!r}")
    return f"v{version:06d}"


def list_version_label(run_date: date, version: int) -> str:
    """The ``list_version`` the app logs back: ``<run date>.v<version>``, e.g. ``2026-03-01.v12``."""
    return f"{run_date.isoformat()}.v{int(version)}"


def dialect_dir(engine_or_conn: Engine | Connection) -> str:
    name = engine_or_conn.dialect.name
    if name == "postgresql":
        return "postgres"
    if name == "sqlite":
        return "sqlite"
    raise ServingError(f"unsupported serving database dialect {name!r}; use postgresql or sqlite")


def split_statements(text: str) -> list[str]:
    """Split a .sql file into statements on ``;`` at line ends, keeping ``$$`` blocks whole.

    Comment-only chunks are dropped. Our files never put ``;`` inside string literals.
    """
    statements: list[str] = []
    current: list[str] = []
    in_dollar = False
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        if line.count("$$") % 2 == 1:
            in_dollar = not in_dollar
        if not in_dollar and stripped.endswith(";"):
            statement = "\n".join(current).strip().rstrip(";").strip()
            if statement:
                statements.append(statement)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def _render(text: str, **values: str) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def run_sql_file(conn: Connection, name: str, **values: str) -> None:
    """Execute every statement of ``sql/<dialect>/<name>`` on ``conn`` (inside its transaction)."""
    for statement in split_statements(_render(read_sql(dialect_dir(conn), name), **values)):
        conn.exec_driver_sql(statement)


def check_identifier(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{what} {name!r} is not a plain lower-case SQL identifier (^[a-z_][a-z0-9_]*$)")
    return name


# --------------------------------------------------------------------------- engines
def make_engine(url: str, *, writer: bool = False, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for the serving database.

    SQLite: creates the parent folder, WAL journal, a 30 s busy timeout and transactional DDL (the
    documented SQLAlchemy recipe: disable pysqlite's own BEGIN handling and emit BEGIN in the ``begin``
    event). ``writer=True`` begins with ``BEGIN IMMEDIATE`` so a writer never fails on lock upgrade.
    PostgreSQL: ``pool_pre_ping`` so a reader survives a server restart.
    """
    sa_url = sa.engine.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", 30.0)
        connect_args.setdefault("check_same_thread", False)
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        begin_sql = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Disable pysqlite's implicit transaction handling entirely ...
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # ... and emit BEGIN ourselves, so DDL is inside the transaction too.
            conn.exec_driver_sql(begin_sql)

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def serving_engine(settings: Settings, *, writer: bool = False) -> Engine:
    return make_engine(settings.effective_serving_url, writer=writer)


# --------------------------------------------------------------------------- schema
def view_exists(conn: Connection, name: str) -> bool:
    return name in sa.inspect(conn).get_view_names()


#: Columns added to ``publish_log`` after its first release: (name, SQLite type, PostgreSQL type).
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("lists_version", "INTEGER", "BIGINT"),
    ("lists_checksum", "TEXT", "TEXT"),
)


def ensure_schema(engine: Engine) -> None:
    """Create the base tables, the empty version 0 and the views, in one transaction (idempotent)."""
    with engine.begin() as conn:
        run_sql_file(conn, "schema.sql")
        _add_missing_columns(conn)
        if not view_exists(conn, "current_recommendations"):
            suffix = version_suffix(EMPTY_VERSION)
            run_sql_file(conn, "version.sql", v=suffix)
            run_sql_file(conn, "lists.sql", v=suffix)
            run_sql_file(conn, "indexes.sql", v=suffix)
            run_sql_file(conn, "lists_indexes.sql", v=suffix)
            run_sql_file(conn, "views.sql", v=suffix, lists=suffix, list_version=EMPTY_LABEL)


def _add_missing_columns(conn: Connection) -> None:
    """A serving DB created before the shared lists: add the new ``publish_log`` columns (NULL = the
    version's own lists)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("publish_log")}
    pg = conn.dialect.name == "postgresql"
    for name, sqlite_type, pg_type in _ADDED_COLUMNS:
        if name not in present:
            column_type = pg_type if pg else sqlite_type
            conn.exec_driver_sql(f"ALTER TABLE publish_log ADD COLUMN {name} {column_type}")


def create_version_tables(conn: Connection, version: int, *, lists: bool = True) -> None:
    """The version's policy tables, and its lists table when ``lists`` (a nightly publish)."""
    run_sql_file(conn, "version.sql", v=version_suffix(version))
    if lists:
        run_sql_file(conn, "lists.sql", v=version_suffix(version))


def index_version_tables(conn: Connection, version: int, *, lists: bool = True) -> None:
    run_sql_file(conn, "indexes.sql", v=version_suffix(version))
    if lists:
        run_sql_file(conn, "lists_indexes.sql", v=version_suffix(version))


def drop_version_tables(conn: Connection, version: int) -> None:
    """Drop the policy tables of ``version``, then every lists table no version needs any more.

    Call it after the version's ``publish_log`` status left ``live``/``retired``/``loading``/``ready``
    (in the same transaction), or its own lists table is kept as still referenced.
    """
    if version == EMPTY_VERSION:
        raise ServingError("version 0 is the empty fallback version and is never dropped")
    run_sql_file(conn, "drop_version.sql", v=version_suffix(version))
    drop_unreferenced_lists(conn)


def referenced_lists(conn: Connection) -> set[int]:
    """Versions whose lists table a live, retained or in-flight version reads (version 0 always)."""
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT COALESCE(lists_version, version) FROM publish_log "
            "WHERE status IN ('live', 'retired', 'loading', 'ready') AND dropped_at IS NULL"
        )
    ).all()
    return {int(r[0]) for r in rows} | {EMPTY_VERSION}


def drop_unreferenced_lists(conn: Connection) -> list[int]:
    """Drop every ``lists_v<N>`` that no live, retained or in-flight version reads; returns their N."""
    keep = referenced_lists(conn)
    doomed = sorted(v for v, kinds in version_tables(conn).items() if LISTS_TABLE in kinds and v not in keep)
    for version in doomed:
        run_sql_file(conn, "drop_lists.sql", v=version_suffix(version))
    return doomed


def version_tables(conn: Connection) -> dict[int, set[str]]:
    """Per-version tables that exist: version number -> kinds (``lists``, ``assignments``, ...)."""
    out: dict[int, set[str]] = {}
    for name in sa.inspect(conn).get_table_names():
        match = _VERSION_TABLE.match(name)
        if match:
            out.setdefault(int(match.group(2)), set()).add(match.group(1))
    return out


def version_table_names(conn: Connection) -> dict[int, list[str]]:
    """Per-version tables that exist, by version number."""
    out: dict[int, list[str]] = {}
    for name in sa.inspect(conn).get_table_names():
        match = _VERSION_TABLE.match(name)
        if match:
            out.setdefault(int(match.group(2)), []).append(name)
    return out


# --------------------------------------------------------------------------- bulk load
def bulk_insert(conn: Connection, table: str, frame: pd.DataFrame, chunk_rows: int = 200_000) -> int:
    """Append ``frame`` (columns in ``TABLE_COLUMNS`` order) to ``<table>_v<N>``; returns rows written.

    PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)`` in chunks (psycopg2 or psycopg 3).
    SQLite: ``executemany`` of multi-row ``INSERT``s with ``?`` bound parameters, in chunks.
    """
    match = _VERSION_TABLE.match(table)
    if not match:
        raise ValueError(f"{table!r} is not a per-version table name")
    columns = list(TABLE_COLUMNS[match.group(1)])
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot load {table}: frame lacks columns {missing}")
    frame = frame[columns]
    total = 0
    if conn.dialect.name == "postgresql":
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
        raw = conn.connection.driver_connection
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start : start + chunk_rows]
            # Arrow's C++ CSV writer is ~10x faster than DataFrame.to_csv; quoting ("" escapes) and
            # booleans (true/false) match PostgreSQL's CSV COPY format.
            buf = io.BytesIO()
            pa_csv.write_csv(
                _without_nul(pa.Table.from_pandas(chunk, preserve_index=False), table),
                buf,
                write_options=pa_csv.WriteOptions(include_header=False),
            )
            payload = buf.getvalue()
            cursor = raw.cursor()
            try:
                if hasattr(cursor, "copy_expert"):  # psycopg2
                    cursor.copy_expert(copy_sql, io.BytesIO(payload))
                else:  # psycopg 3
                    with cursor.copy(copy_sql) as copy:
                        copy.write(payload)
            finally:
                cursor.close()
            total += len(chunk)
        return total
    for start in range(0, len(frame), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows]
        _sqlite_insert_chunk(conn, table, columns, chunk)
        total += len(chunk)
    return total


#: Rows per multi-row ``INSERT ... VALUES (...), (...)`` on SQLite. One statement step per row was most of
#: a big load (bind, step and reset per row, and a Python tuple per row); a few hundred rows per statement
#: make that overhead negligible while staying far below SQLite's bound-parameter limit (32,766 since 3.32).
_SQLITE_ROWS_PER_STATEMENT = 500


def _sqlite_insert_chunk(conn: Connection, table: str, columns: list[str], chunk: pd.DataFrame) -> None:
    """Insert ``chunk`` in row order (the same rows and rowids as one ``INSERT`` per row): full
    statements of :data:`_SQLITE_ROWS_PER_STATEMENT` rows, then one row per statement for the rest."""
    n_rows, n_cols = len(chunk), len(columns)
    per_statement = max(1, min(_SQLITE_ROWS_PER_STATEMENT, _sqlite_max_parameters(conn) // max(n_cols, 1)))
    cells = np.empty((n_rows, n_cols), dtype=object)
    for j, column in enumerate(columns):
        cells[:, j] = _python_values(chunk[column])
    one_row = "(" + ", ".join("?" for _ in columns) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    n_full = n_rows - n_rows % per_statement
    if n_full:
        # each parameter row is `per_statement` table rows laid end to end, in row order
        rows = cells[:n_full].reshape(n_full // per_statement, per_statement * n_cols).tolist()
        conn.exec_driver_sql(head + ", ".join([one_row] * per_statement), [tuple(r) for r in rows])
    if n_rows > n_full:
        conn.exec_driver_sql(head + one_row, [tuple(r) for r in cells[n_full:].tolist()])


def _sqlite_max_parameters(conn: Connection) -> int:
    """The most bound parameters one statement of this SQLite library takes (32,766 since SQLite 3.32,
    999 before: the library is the system's, so a statement sized for the new limit would fail there)."""
    raw = conn.connection.driver_connection
    return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def _python_values(series: pd.Series) -> list[Any]:
    """The column as the Python objects ``series.astype(object).tolist()`` gives, built faster.

    NumPy numbers and booleans: ``ndarray.tolist()`` (Python int/float/bool, the same values). Text
    without missing values: each distinct string once (factorized), repeated by reference, instead of a
    new str per row. Anything else (nullable or missing values, other types) goes the generic way.
    """
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
        return series.to_numpy().tolist()
    if pd.api.types.is_string_dtype(series.dtype) and not isinstance(series.dtype, np.dtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        if len(codes) == 0 or codes.min() >= 0:
            return np.asarray(uniques, dtype=object)[codes].tolist()
    return series.astype(object).tolist()


#: What a U+0000 in text becomes on PostgreSQL, whose text type cannot hold it (COPY fails on 0x00).
NUL_REPLACEMENT = "\ufffd"


def _without_nul(table: pa.Table, where: str) -> pa.Table:
    """``table`` with U+0000 in its text columns replaced by U+FFFD (logged), for PostgreSQL.

    Ingest sanitises text from outside; this keeps one stray NUL from failing every publish anyway.
    """
    for i, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        column = table.column(i)
        hits = pc.sum(pc.count_substring(column, "\x00")).as_py() or 0
        if hits:
            log.warning("%s.%s: %d NUL character(s) stored as U+FFFD", where, field.name, hits)
            table = table.set_column(i, field, pc.replace_substring(column, "\x00", NUL_REPLACEMENT))
    return table


# --------------------------------------------------------------------------- versions
@dataclass(frozen=True)
class VersionInfo:
    version: int
    run_date: date
    list_version: str | None
    status: str
    checksum: str
    dropped: bool
    #: The version whose lists table this version's assignments read (itself for a nightly publish).
    lists_version: int = 0
    lists_checksum: str | None = None


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def list_versions(conn: Connection) -> list[VersionInfo]:
    """Every publish_log row, newest first."""
    rows = conn.execute(
        sa.text(
            "SELECT version, run_date, list_version, status, checksum, dropped_at, lists_version, "
            "lists_checksum FROM publish_log ORDER BY version DESC"
        )
    ).all()
    return [
        VersionInfo(
            version=int(r.version),
            run_date=_as_date(r.run_date),
            list_version=r.list_version,
            status=r.status,
            checksum=r.checksum,
            dropped=r.dropped_at is not None,
            lists_version=int(r.lists_version if r.lists_version is not None else r.version),
            lists_checksum=r.lists_checksum,
        )
        for r in rows
    ]


def live_version(conn: Connection) -> VersionInfo | None:
    for info in list_versions(conn):
        if info.status == "live":
            return info
    return None


def switch_views(conn: Connection, version: int, label: str, lock_timeout_ms: int = 5000) -> None:
    """Inside the caller's transaction: point the views at ``version`` and make it the live one.

    The previously live version becomes ``retired`` (kept for rollback). On PostgreSQL a lock timeout
    bounds how long the switch may queue behind a long-running reader (queued readers wait behind it).
    """
    if not _LABEL.match(label):
        raise ValueError(f"list_version label {label!r} is not '<YYYY-MM-DD>.v<N>'")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        # Lock the views in the order readers use them, so the switch never deadlocks with a reader.
        conn.exec_driver_sql(
            "LOCK TABLE current_recommendations, current_assignments, current_bandit_policy "
            "IN ACCESS EXCLUSIVE MODE"
        )
    lists = conn.execute(
        sa.text("SELECT COALESCE(lists_version, version) FROM publish_log WHERE version = :v"), {"v": version}
    ).scalar_one_or_none()
    if lists is None:
        raise ServingError(f"version {version} is not in publish_log")
    run_sql_file(
        conn, "views.sql", v=version_suffix(version), lists=version_suffix(int(lists)), list_version=label
    )
    conn.execute(
        sa.text(
            "UPDATE publish_log SET status = 'retired', retired_at = CURRENT_TIMESTAMP "
            "WHERE status = 'live' AND version <> :v"
        ),
        {"v": version},
    )
    updated = conn.execute(
        sa.text(
            "UPDATE publish_log SET status = 'live', switched_at = CURRENT_TIMESTAMP, retired_at = NULL "
            "WHERE version = :v AND dropped_at IS NULL"
        ),
        {"v": version},
    ).rowcount
    if updated != 1:
        raise ServingError(f"version {version} is not in publish_log (or its tables were dropped)")


def switch_with_retry(
    engine: Engine,
    version: int,
    label: str,
    lock_timeout_ms: int,
    attempts: int,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """:func:`switch_views` in its own transaction (plus ``also(conn)`` in the same one), retried.

    Each attempt waits at most ``lock_timeout_ms`` for the readers' locks on the views. When every
    attempt times out, raises a one-line :class:`ServingError`: some session keeps a transaction open
    on the views. Nothing has changed then: the previous version is still live.
    """
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                switch_views(conn, version, label, lock_timeout_ms)
                if also is not None:
                    also(conn)
            return
        except sa.exc.OperationalError as exc:
            if not is_lock_timeout(exc):
                raise
            log.warning("switch to %s: attempt %d of %d timed out on a lock", label, attempt, attempts)
            if attempt < attempts:
                time.sleep(0.5 * attempt)
    raise ServingError(
        f"could not switch the serving views to {label}: they are in use by another session (a read "
        f"transaction left open?) through {attempts} attempt(s) of {lock_timeout_ms} ms; find it with "
        "SELECT pid, usename, state, xact_start FROM pg_stat_activity WHERE state LIKE 'idle in%', end it "
        "(pg_terminate_backend) or wait, then retry; the previous version is still live"
    ) from None


def rollback_to(
    engine: Engine, to: int | None = None, lock_timeout_ms: int = 5000, attempts: int = 1
) -> dict[str, Any]:
    """Switch the views back to a retained version, and pin it (see :func:`current_pin`).

    ``to=None`` picks the newest retained (``retired``, tables present) version older than the live one.
    Run under :func:`writer_lock`.
    """
    with engine.connect() as conn:
        versions = list_versions(conn)
    live = next((v for v in versions if v.status == "live"), None)
    retained = [v for v in versions if v.status == "retired" and not v.dropped]
    if to is None:
        older = [v for v in retained if live is None or v.version < live.version]
        if not older:
            raise ServingError(
                "no older retained version to roll back to; list versions with "
                "`deepcuts rollback --list` or pass --to VERSION"
            )
        target = older[0]
    else:
        target = next((v for v in versions if v.version == to), None)
        if target is None:
            raise ServingError(f"version {to} does not exist; see `deepcuts rollback --list`")
        if target.status == "live":
            with engine.begin() as conn:
                set_pin(conn, target.version, f"deepcuts rollback --to {to}")
            return {
                "status": "unchanged",
                "version": target.version,
                "list_version": target.list_version,
                "pinned": True,
            }
        if target.status != "retired" or target.dropped:
            dropped = " (tables dropped)" if target.dropped else ""
            raise ServingError(
                f"version {to} has status {target.status!r}{dropped}; only retained versions "
                "(status 'retired') can be switched to"
            )
    with engine.connect() as conn:
        kinds = version_tables(conn)
    if LISTS_TABLE not in kinds.get(target.lists_version, set()):
        raise ServingError(
            f"version {target.version} has no lists table (lists_v{target.lists_version:06d}): it was "
            "published before the lists were shared between versions; roll back to a newer one"
        )
    assert target.list_version is not None
    reason = "deepcuts rollback" + (f" --to {to}" if to is not None else "")
    switch_with_retry(
        engine,
        target.version,
        target.list_version,
        lock_timeout_ms,
        attempts,
        also=lambda conn: set_pin(conn, target.version, reason),
    )
    log.info(
        "rolled back serving views from %s to %s; pinned until `deepcuts rollback --release`",
        live.list_version if live else None,
        target.list_version,
    )
    return {
        "status": "rolled_back",
        "from_version": live.version if live else None,
        "version": target.version,
        "list_version": target.list_version,
        "run_date": target.run_date.isoformat(),
        "pinned": True,
    }


@contextlib.contextmanager
def writer_session(settings: Settings) -> Iterator[Engine]:
    """The writer's engine, checked reachable, schema ensured, under the writers' lock; disposed after."""
    engine = serving_engine(settings, writer=True)
    try:
        check_reachable(engine)
        ensure_schema(engine)
        cfg = settings.publish
        with writer_lock(engine, cfg.writer_lock_timeout_ms, cfg.writer_lock_attempts):
            yield engine
    finally:
        engine.dispose()


def rollback(settings: Settings, to: int | None = None) -> dict[str, Any]:
    """``deepcuts rollback [--to VERSION]``: switch the app back to a retained version and pin it."""
    with writer_session(settings) as engine:
        cfg = settings.publish
        return rollback_to(engine, to, cfg.switch_lock_timeout_ms, cfg.switch_attempts)


# --------------------------------------------------------------------------- pinning
@dataclass(frozen=True)
class PinInfo:
    version: int
    pinned_at: str
    reason: str


def current_pin(conn: Connection) -> PinInfo | None:
    """The version an operator pinned with ``deepcuts rollback``, if any."""
    row = conn.execute(sa.text("SELECT version, pinned_at, reason FROM serving_pin WHERE id = 1")).first()
    return None if row is None else PinInfo(int(row.version), str(row.pinned_at), str(row.reason))


def set_pin(conn: Connection, version: int, reason: str) -> None:
    """Inside the caller's transaction: pin ``version`` (replacing any earlier pin)."""
    conn.execute(sa.text("DELETE FROM serving_pin"))
    conn.execute(
        sa.text("INSERT INTO serving_pin (id, version, reason) VALUES (1, :v, :r)"),
        {"v": int(version), "r": reason},
    )


def release_pin(settings: Settings) -> dict[str, Any]:
    """``deepcuts rollback --release``: let publishes switch the views again (switches nothing now)."""
    with writer_session(settings) as engine, engine.begin() as conn:
        pin = current_pin(conn)
        conn.execute(sa.text("DELETE FROM serving_pin"))
    if pin is None:
        return {"status": "not_pinned"}
    log.info("released the pin on version %s; the next publish switches the views again", pin.version)
    return {"status": "released", "released_version": pin.version}


# --------------------------------------------------------------------------- the writers' lock
@contextlib.contextmanager
def writer_lock(engine: Engine, timeout_ms: int = 10_000, attempts: int = 3) -> Iterator[None]:
    """Only one writer (publish or rollback) at a time; waits at most ``attempts`` x ``timeout_ms``.

    PostgreSQL: ``LOCK TABLE serving_writer_lock IN ACCESS EXCLUSIVE MODE`` in a transaction held open
    on a connection of its own for the whole run (ended by the server if the holder dies). Only the
    writer has rights on that table, so the app's role can neither take this lock nor hold it against
    the writer (unlike an advisory lock, which any role may take).
    SQLite: an ``flock`` on ``<db>.lock`` (released by the kernel if the process dies).
    Raises a one-line :class:`ServingError` when another writer keeps the lock.
    """
    busy = (
        "another publish or rollback holds the serving writer lock ({where}); waited {attempts} x "
        "{timeout_ms} ms. Wait for it to finish (the DAG runs publish in the single-slot "
        "deepcuts_publish pool), then retry"
    )
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            for attempt in range(1, attempts + 1):
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
                # This transaction stays idle for the whole run: a server-wide idle limit must not end it.
                conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
                try:
                    conn.exec_driver_sql(f"LOCK TABLE {WRITER_LOCK_TABLE} IN ACCESS EXCLUSIVE MODE")
                    break
                except sa.exc.OperationalError as exc:
                    conn.rollback()
                    if not is_lock_timeout(exc):
                        raise
                    log.warning("writer lock: attempt %d of %d timed out", attempt, attempts)
            else:
                raise ServingError(
                    busy.format(where=WRITER_LOCK_TABLE, attempts=attempts, timeout_ms=timeout_ms)
                ) from None
            try:
                yield
            finally:
                conn.rollback()  # ends the transaction: releases the lock
        return
    database = engine.url.database or ""
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_suffix(Path(database).suffix + ".lock")
    deadline = time.monotonic() + attempts * timeout_ms / 1000
    with lock_path.open("a+") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServingError(
                        busy.format(where=lock_path, attempts=attempts, timeout_ms=timeout_ms)
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- reads
def read_user_list(conn: Connection, user_id: int, daypart: str) -> list[dict[str, Any]]:
    """Run the app's query (sql/queries/user_list.sql) for one user and daypart."""
    rows = conn.execute(sa.text(read_query("user_list.sql")), {"user_id": int(user_id), "daypart": daypart})
    return [dict(r._mapping) for r in rows]


# --------------------------------------------------------------------------- alerts
ALERT_COLUMNS: tuple[str, ...] = (
    "run_date",
    "check_name",
    "category",
    "severity",
    "value",
    "threshold",
    "message",
    "source",
)


def replace_alerts(engine: Engine, run_date: date, source: str, alerts: Sequence[dict[str, Any]]) -> int:
    """Replace the alerts of ``source`` for ``run_date`` (idempotent per run date) in one transaction.

    Acknowledgements of alerts with the same check name survive a re-run.
    """
    with engine.begin() as conn:
        acked = {
            r.check_name: (r.acknowledged_at, r.acknowledged_by)
            for r in conn.execute(
                sa.text(
                    "SELECT check_name, acknowledged_at, acknowledged_by FROM alerts "
                    "WHERE run_date = :d AND source = :s AND acknowledged_at IS NOT NULL"
                ),
                {"d": run_date.isoformat(), "s": source},
            )
        }
        conn.execute(
            sa.text("DELETE FROM alerts WHERE run_date = :d AND source = :s"),
            {"d": run_date.isoformat(), "s": source},
        )
        for alert in alerts:
            params = {k: alert.get(k) for k in ALERT_COLUMNS}
            params["run_date"] = run_date.isoformat()
            params["source"] = source
            if params["value"] is not None:
                params["value"] = float(params["value"])
            if params["threshold"] is not None and not isinstance(params["threshold"], str):
                params["threshold"] = json.dumps(params["threshold"])
            ack_at, ack_by = acked.get(str(params["check_name"]), (None, None))
            params["acknowledged_at"], params["acknowledged_by"] = ack_at, ack_by
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (run_date, check_name, category, severity, value, threshold, "
                    "message, source, acknowledged_at, acknowledged_by) VALUES (:run_date, :check_name, "
                    ":category, :severity, :value, :threshold, :message, :source, :acknowledged_at, "
                    ":acknowledged_by)"
                ),
                params,
            )
    return len(alerts)


def open_critical_alerts(
    conn: Connection, run_date: date, exclude_source: str | None = "publish"
) -> list[dict[str, Any]]:
    """Unacknowledged critical alerts of ``run_date`` (these block the publish).

    The publish step's own past rejections (source ``publish``) are excluded by default: once the
    upstream data is fixed, re-running publish must not be blocked by the report of its last attempt.
    """
    rows = conn.execute(
        sa.text(
            "SELECT check_name, message, source FROM alerts WHERE run_date = :d "
            "AND severity = 'critical' AND acknowledged_at IS NULL AND source <> :x ORDER BY alert_id"
        ),
        {"d": run_date.isoformat(), "x": exclude_source or ""},
    )
    return [dict(r._mapping) for r in rows]


def acknowledge_alerts(engine: Engine, run_date: date, by: str, check_name: str | None = None) -> int:
    """Mark alerts of ``run_date`` acknowledged (an operator accepts them; they stop blocking publish)."""
    sql = (
        "UPDATE alerts SET acknowledged_at = CURRENT_TIMESTAMP, acknowledged_by = :by "
        "WHERE run_date = :d AND acknowledged_at IS NULL"
    )
    params: dict[str, Any] = {"by": by, "d": run_date.isoformat()}
    if check_name is not None:
        sql += " AND check_name = :c"
        params["c"] = check_name
    with engine.begin() as conn:
        return int(conn.execute(sa.text(sql), params).rowcount)


# --------------------------------------------------------------------------- roles (PostgreSQL)
_SCRAM_VERIFIER = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


def apply_roles(
    admin_engine: Engine,
    reader: str,
    writer: str,
    *,
    reader_password: str | None = None,
    writer_password: str | None = None,
) -> None:
    """Create the reader/writer roles and their database/schema rights (run as a superuser).

    A password given is stored as a SCRAM-SHA-256 verifier computed here by libpq (PQencryptPasswordConn):
    the server, its log and ``pg_stat_activity`` never see the password. ``None`` leaves the role's
    password as it is. Run :func:`grant_reader` after the writer has created the schema.
    """
    if admin_engine.dialect.name != "postgresql":
        raise ServingError("roles exist only on PostgreSQL; SQLite has no users")
    database = check_identifier(admin_engine.url.database or "", "database")
    reader = check_identifier(reader, "reader role")
    writer = check_identifier(writer, "writer role")
    with admin_engine.begin() as conn:
        run_sql_file(conn, "roles.sql", reader=reader, writer=writer, database=database)
        for role, password in ((reader, reader_password), (writer, writer_password)):
            if password is not None:
                conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD '{_scram_verifier(conn, role, password)}'")


def _scram_verifier(conn: Connection, role: str, password: str) -> str:
    from psycopg2.extensions import encrypt_password

    if not password:
        raise ServingError(f"empty password for role {role}; set a long random one")
    verifier = encrypt_password(password, role, conn.connection.driver_connection, "scram-sha-256")
    if not _SCRAM_VERIFIER.match(verifier):  # it is formatted into SQL: only the verifier's alphabet
        raise ServingError(f"libpq returned an unexpected password verifier for role {role}")
    return verifier


def grant_reader(engine: Engine, reader: str) -> None:
    """Give the read-only role SELECT on the views (run as the writer, after ensure_schema)."""
    with engine.begin() as conn:
        run_sql_file(conn, "grants.sql", reader=check_identifier(reader, "reader role"))


def drop_roles(admin_engine: Engine, reader: str, writer: str) -> None:
    """Drop both roles and what they own in this database (tests, decommissioning)."""
    with admin_engine.begin() as conn:
        run_sql_file(
            conn,
            "drop_roles.sql",
            reader=check_identifier(reader, "reader role"),
            writer=check_identifier(writer, "writer role"),
        )
