-- Per-version data tables. {v} is replaced by the version suffix (v000012) generated from an integer
-- by deepcuts.pipelines.serving.version_suffix(); nothing else is ever formatted into DDL.
-- Tables are created without indexes, bulk-loaded (COPY), then indexed (indexes.sql): faster than
-- maintaining the index row by row. They stay invisible to the app until the views switch to them.

CREATE TABLE recommendations_{v} (
    user_id         BIGINT NOT NULL,
    daypart         TEXT NOT NULL,
    rank            INTEGER NOT NULL,
    item_id         BIGINT NOT NULL,
    arm             TEXT NOT NULL,
    variant         TEXT NOT NULL,
    score           REAL NOT NULL,
    novelty         REAL NOT NULL,
    is_long_tail    BOOLEAN NOT NULL,
    reason          TEXT NOT NULL,
    -- denormalised from the assignment so that the app's lookup is one index range scan
    segment         TEXT NOT NULL,
    propensity      DOUBLE PRECISION NOT NULL,
    experiment      TEXT NOT NULL
);

CREATE TABLE assignments_{v} (
    user_id         BIGINT NOT NULL,
    daypart         TEXT NOT NULL,
    segment         TEXT NOT NULL,
    arm             TEXT NOT NULL,
    propensity      DOUBLE PRECISION NOT NULL,
    variant         TEXT NOT NULL,
    experiment      TEXT NOT NULL
);

CREATE TABLE bandit_policy_{v} (
    segment         TEXT NOT NULL,
    daypart         TEXT NOT NULL,
    arm             TEXT NOT NULL,
    alpha           DOUBLE PRECISION NOT NULL,
    beta            DOUBLE PRECISION NOT NULL,
    mean            DOUBLE PRECISION NOT NULL,
    thompson_probability  DOUBLE PRECISION NOT NULL,  -- P(arm is the argmax of the Beta draws)
    selection_probability DOUBLE PRECISION NOT NULL   -- after the exploration floor: what assignments used
);
