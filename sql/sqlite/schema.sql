-- deepcuts serving database, SQLite (the embedded default: <home>/serving/serving.db).
-- Applied by deepcuts.pipelines.serving.ensure_schema() in one transaction (the engine emits BEGIN itself, see
-- pipelines/serving.py, so this DDL is transactional); every statement is idempotent.
-- Dates are ISO-8601 TEXT, timestamps 'YYYY-MM-DD HH:MM:SS' UTC TEXT (CURRENT_TIMESTAMP).

CREATE TABLE IF NOT EXISTS publish_log (
    version             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so table names never collide
    run_date            TEXT NOT NULL,
    list_version        TEXT,
    status              TEXT NOT NULL CHECK (status IN
                            ('loading', 'ready', 'live', 'retired', 'replaced', 'rejected', 'failed',
                             'dropped')),
    checksum            TEXT NOT NULL,
    -- the version whose lists_v<N> table this version's assignments read (itself for a nightly
    -- publish, the night's version for an intraday refresh) and that table's content checksum
    lists_version       INTEGER,
    lists_checksum      TEXT,
    n_recommendations   INTEGER,
    n_assignments       INTEGER,
    n_policy            INTEGER,
    n_users             INTEGER,
    changed_share       REAL,
    gate_report         TEXT,
    error               TEXT,
    created_at          TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    loaded_at           TEXT,
    switched_at         TEXT,
    retired_at          TEXT,
    dropped_at          TEXT
);

CREATE INDEX IF NOT EXISTS publish_log_run_date_idx ON publish_log (run_date, status);

CREATE UNIQUE INDEX IF NOT EXISTS publish_log_one_live_idx ON publish_log (status) WHERE status = 'live';

CREATE TABLE IF NOT EXISTS alerts (
    alert_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_date            TEXT NOT NULL,
    check_name          TEXT NOT NULL,
    category            TEXT NOT NULL,
    severity            TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    value               REAL,
    threshold           TEXT,
    message             TEXT NOT NULL,
    source              TEXT NOT NULL,
    created_at          TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    acknowledged_at     TEXT,
    acknowledged_by     TEXT
);

CREATE INDEX IF NOT EXISTS alerts_run_date_idx ON alerts (run_date, severity);

-- At most one row: the version an operator switched to with `deepcuts rollback`. While it is here, a
-- publish loads nothing and leaves the views alone; `deepcuts rollback --release` deletes it.
-- (SQLite's writers' lock is an flock on <db>.lock, see deepcuts.pipelines.serving.writer_lock.)
CREATE TABLE IF NOT EXISTS serving_pin (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    version             INTEGER NOT NULL REFERENCES publish_log (version),
    pinned_at           TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    reason              TEXT NOT NULL
);

CREATE VIEW IF NOT EXISTS current_version AS
    SELECT version, run_date, list_version, switched_at
    FROM publish_log
    WHERE status = 'live';
