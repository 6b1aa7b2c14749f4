-- Built after the bulk load of lists_{v} (nightly publish only). The key is what the views join on.
CREATE UNIQUE INDEX lists_{v}_pk ON lists_{v} (user_id, variant, arm, rank);
ANALYZE lists_{v};
