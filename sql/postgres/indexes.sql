-- Built after the bulk load of version {v}. The primary keys also enforce the no-duplicate gate.
ALTER TABLE assignments_{v} ADD CONSTRAINT assignments_{v}_pk PRIMARY KEY (user_id, daypart);
ALTER TABLE bandit_policy_{v} ADD CONSTRAINT bandit_policy_{v}_pk PRIMARY KEY (segment, daypart, arm);
ANALYZE assignments_{v};
