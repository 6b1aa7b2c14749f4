-- Built after the bulk load of lists_{v} (nightly publish only). The key is what the views join on.
ALTER TABLE lists_{v} ADD CONSTRAINT lists_{v}_pk PRIMARY KEY (user_id, variant, arm, rank);
ANALYZE lists_{v};
