-- deepcuts serving database, PostgreSQL (production).
-- Applied by deepcuts.pipelines.serving.ensure_schema() in one transaction; every statement is idempotent.
--
-- Layout:
--   publish_log            one row per publish attempt (the version registry)
--   alerts                 monitoring findings (written by the monitor step and by rejected publishes)
--   assignments_v<N>, bandit_policy_v<N>   per-version policy tables (version.sql); v000000 is the empty version
--   lists_v<N>             every servable list of a night (lists.sql), shared by that night's versions
--   current_*              stable views the app reads; re-pointed to a version in one transaction
--   current_version        the live version (version number, run date, list_version label)

CREATE TABLE IF NOT EXISTS publish_log (
    version             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_date            DATE NOT NULL,
    list_version        TEXT,
    status              TEXT NOT NULL CHECK (status IN
                            ('loading', 'ready', 'live', 'retired', 'replaced', 'rejected', 'failed',
                             'dropped')),
    checksum            TEXT NOT NULL,
    -- the version whose lists_v<N> table this version's assignments read (itself for a nightly
    -- publish, the night's version for an intraday refresh) and that table's content checksum
    lists_version       BIGINT,
    lists_checksum      TEXT,
    n_recommendations   BIGINT,
    n_assignments       BIGINT,
    n_policy            BIGINT,
    n_users             BIGINT,
    changed_share       DOUBLE PRECISION,
    gate_report         TEXT,
    error               TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    loaded_at           TIMESTAMPTZ,
    switched_at         TIMESTAMPTZ,
    retired_at          TIMESTAMPTZ,
    dropped_at          TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS publish_log_run_date_idx ON publish_log (run_date, status);

-- At most one live version, enforced by the database, not only by the code.
CREATE UNIQUE INDEX IF NOT EXISTS publish_log_one_live_idx ON publish_log (status) WHERE status = 'live';

CREATE TABLE IF NOT EXISTS alerts (
    alert_id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_date            DATE NOT NULL,
    check_name          TEXT NOT NULL,
    category            TEXT NOT NULL,
    severity            TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    value               DOUBLE PRECISION,
    threshold           TEXT,
    message             TEXT NOT NULL,
    source              TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    acknowledged_at     TIMESTAMPTZ,
    acknowledged_by     TEXT
);

CREATE INDEX IF NOT EXISTS alerts_run_date_idx ON alerts (run_date, severity);

-- The writers' lock (deepcuts.pipelines.serving.writer_lock): publish and rollback hold LOCK TABLE ... ACCESS
-- EXCLUSIVE on this empty table for their whole run. Nobody but the writer has any right on it, so the
-- app cannot take the lock or hold it against them (an advisory lock can be taken by any role).
CREATE TABLE IF NOT EXISTS serving_writer_lock (
    id                  INTEGER PRIMARY KEY
);

-- At most one row: the version an operator switched to with `deepcuts rollback`. While it is here, a
-- publish loads nothing and leaves the views alone; `deepcuts rollback --release` deletes it.
CREATE TABLE IF NOT EXISTS serving_pin (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    version             BIGINT NOT NULL REFERENCES publish_log (version),
    pinned_at           TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    reason              TEXT NOT NULL
);

-- Created once, never replaced: CREATE OR REPLACE VIEW would wait for every reader of the view.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_views WHERE schemaname = current_schema() AND viewname = 'current_version')
    THEN
        CREATE VIEW current_version AS
            SELECT version, run_date, list_version, switched_at
            FROM publish_log
            WHERE status = 'live';
    END IF;
END
$$;
