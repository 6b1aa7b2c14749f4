-- The live version: which list_version the app serves right now (empty before the first publish).
SELECT version, run_date, list_version, switched_at
FROM current_version;
