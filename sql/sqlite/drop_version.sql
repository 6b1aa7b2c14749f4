-- Remove the data tables of version {v} (retention, rejected or failed versions). Never the live one.
DROP TABLE IF EXISTS recommendations_{v};
DROP TABLE IF EXISTS assignments_{v};
DROP TABLE IF EXISTS bandit_policy_{v};
