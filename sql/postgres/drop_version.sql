-- Remove the policy tables of version {v} (retention, rejected or failed versions). Never the live one.
-- Its lists_{v}, which later versions of the same night may still read, is dropped separately
-- (drop_lists.sql) once no live, retained or in-flight version refers to it.
-- recommendations_{v}: the one-table layout of versions published before the lists were shared.
DROP TABLE IF EXISTS assignments_{v};
DROP TABLE IF EXISTS bandit_policy_{v};
DROP TABLE IF EXISTS recommendations_{v};
