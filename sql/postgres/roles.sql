-- Roles of the serving database (PostgreSQL). Applied by pipelines.serving.apply_roles() as a superuser
-- (or a role with CREATEROLE) BEFORE the writer creates the schema:
--   {writer}  the pipeline: creates and owns every table and view, loads versions, switches views.
--   {reader}  the app: SELECT on the current_* views only; no table, no write, no DDL.
-- {reader}, {writer} and {database} are identifiers checked against ^[a-z_][a-z0-9_]*$ before use.
-- Passwords are not set here: ops set them out of band (ALTER ROLE ... PASSWORD) or use other auth.
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

GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {writer};
GRANT CONNECT ON DATABASE {database} TO {reader};
GRANT USAGE, CREATE ON SCHEMA public TO {writer};
GRANT USAGE ON SCHEMA public TO {reader};
-- PostgreSQL >= 15 no longer lets PUBLIC create in schema public; make the reader's rights explicit anyway.
REVOKE CREATE ON SCHEMA public FROM {reader};
