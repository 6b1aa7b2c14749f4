-- deepcuts experiment registry, PostgreSQL: one row per operator decision (`deepcuts experiment ...`).
-- Applied by pipelines.experiment_registry in the transaction that appends an entry; idempotent.
-- seq is given by the writer (last + 1), so two concurrent commands cannot both append entry N.
-- The nightly steps read the lake copy (<home>/experiments/registry.json), never this table.

CREATE TABLE IF NOT EXISTS experiment_log (
    seq                 INTEGER PRIMARY KEY,
    action              TEXT NOT NULL CHECK (action IN ('start', 'ramp', 'stop', 'ship')),
    experiment          TEXT NOT NULL,
    salt                TEXT NOT NULL,
    treatment_share     DOUBLE PRECISION NOT NULL CHECK (treatment_share > 0 AND treatment_share < 1),
    baseline_arm        TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('running', 'stopped', 'shipped')),
    shipped_variant     TEXT CHECK (shipped_variant IN ('control', 'treatment')),
    effective_from      DATE NOT NULL,  -- first run date the decision applies to
    created_at          TEXT NOT NULL,  -- ISO-8601 UTC, as written to the lake copy
    created_by          TEXT NOT NULL,
    verdict             TEXT,           -- A/B verdict of the latest analysed night at decision time
    forced              BOOLEAN NOT NULL DEFAULT FALSE,
    reason              TEXT NOT NULL DEFAULT ''
);
