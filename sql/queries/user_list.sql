-- The app's read: one user's list for one daypart from the live version.
-- One index range scan on the primary key (user_id, daypart, rank) of the live recommendations table.
-- Bind :user_id (integer) and :daypart (morning | afternoon | evening | night).
-- Log back with every impression/click/rating (feedback_events, see docs/serving.md):
--   list_version, arm, variant, segment, daypart, propensity, position (= rank).
SELECT list_version,
       user_id,
       daypart,
       rank,
       item_id,
       arm,
       variant,
       segment,
       propensity,
       experiment,
       score,
       novelty,
       is_long_tail,
       reason
FROM current_recommendations
WHERE user_id = :user_id
  AND daypart = :daypart
ORDER BY rank;
