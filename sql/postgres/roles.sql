-- Roles of the serving database (PostgreSQL). Applied by deepcuts.pipelines.serving.apply_roles() as a superuser
-- (or the database owner with CREATEROLE) BEFORE the writer creates the schema:
--   {writer}  the pipeline: creates and owns every table and view, loads versions, switches views.
--   {reader}  the app: SELECT on the current_* views only; no table, no write, no DDL, no temporary
--             objects, and no lock it could hold against the writer (see docs/serving.md, "Roles").
-- {reader}, {writer} and {database} are identifiers checked against ^[a-z_][a-z0-9_]*$ before use.
-- Passwords are not in this file: apply_roles() sets them afterwards as SCRAM verifiers computed by the
-- client (the password itself never reaches the server or its log), or ops set them out of band.
-- Views run with their owner's rights (the writer), which is why the reader needs no grant on tables.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{writer}') THEN
        CREATE ROLE {writer} LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{reader}') THEN
        CREATE ROLE {reader} LOGIN;
    END IF;
END
$$;

-- Every role gets TEMPORARY on a new database through PUBLIC: with it the app could create temporary
-- tables and pg_temp functions. Only the writer keeps it.
REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE {database} FROM {reader};
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {writer};
GRANT CONNECT ON DATABASE {database} TO {reader};
-- PostgreSQL < 15 lets PUBLIC create in schema public; >= 15 does not. Make it explicit either way.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO {writer};
GRANT USAGE ON SCHEMA public TO {reader};
REVOKE CREATE ON SCHEMA public FROM {reader};
-- A transaction the app leaves open holds its views' locks and so makes every switch wait: the server
-- ends such a session after a minute.
ALTER ROLE {reader} IN DATABASE {database} SET idle_in_transaction_session_timeout = '60s';
