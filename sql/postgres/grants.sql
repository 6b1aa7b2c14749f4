-- Applied by deepcuts.pipelines.serving.apply_roles() after the writer created the schema (ensure_schema).
-- The views keep these grants across CREATE OR REPLACE VIEW, so publishing never has to re-grant.
GRANT SELECT ON current_recommendations, current_assignments, current_bandit_policy, current_version
    TO {reader};
