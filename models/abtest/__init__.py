"""A/B test statistics: always-valid (mSPRT) tests, intervals, SRM and guardrails (``ab_stats``)."""
