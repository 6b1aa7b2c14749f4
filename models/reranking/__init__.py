"""From an arm's candidates to a served list: the deep-cut scores (``deepcut_scores``) and the
constrained re-ranker (``rerank``)."""
