-- Per-version tables of the policy: who gets which list (assignments) and the bandit policy that chose
-- it. Every version has them; the lists themselves are in lists_{v} (lists.sql), loaded only by a nightly
-- publish and shared by the intraday versions of the same night.
-- {v} is replaced by the version suffix (v000012) generated from an integer
-- by deepcuts.pipelines.serving.version_suffix(); nothing else is ever formatted into DDL.
-- Tables are created without indexes, bulk-loaded (COPY), then indexed (indexes.sql): faster than
-- maintaining the index row by row. They stay invisible to the app until the views switch to them.

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
