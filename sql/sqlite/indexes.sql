-- Built after the bulk load of version {v}. SQLite cannot add a primary key to an existing table, so
-- unique indexes play that role (and also enforce the no-duplicate gate).
CREATE UNIQUE INDEX assignments_{v}_pk ON assignments_{v} (user_id, daypart);
CREATE UNIQUE INDEX bandit_policy_{v}_pk ON bandit_policy_{v} (segment, daypart, arm);
ANALYZE assignments_{v};
