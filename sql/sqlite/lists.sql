-- Every list the night may serve, loaded once per night by the nightly publish of version {v}: the
-- baseline list of each control user and every bandit arm's re-ranked list of each treatment user, one
-- list per (user_id, variant, arm). The assignments of version {v} and of every intraday version of the
-- same night (which load only assignments and policy) pick one of them per (user, daypart) through the
-- views (views.sql), so switching a user's arm needs no recompute and no reload.
-- {v} is the version suffix generated from an integer (deepcuts.pipelines.serving.version_suffix()).

CREATE TABLE lists_{v} (
    user_id         INTEGER NOT NULL,
    variant         TEXT NOT NULL,
    arm             TEXT NOT NULL,
    rank            INTEGER NOT NULL,
    item_id         INTEGER NOT NULL,
    score           REAL NOT NULL,
    novelty         REAL NOT NULL,
    is_long_tail    INTEGER NOT NULL CHECK (is_long_tail IN (0, 1)),
    reason          TEXT NOT NULL
);
