-- Remove the two roles (tests, decommissioning). Run as a superuser in the serving database.
-- The writer's objects are dropped with it: reassign them first (REASSIGN OWNED) to keep the data.
DROP OWNED BY {reader};
DROP OWNED BY {writer};
DROP ROLE IF EXISTS {reader};
DROP ROLE IF EXISTS {writer};
