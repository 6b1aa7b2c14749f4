"""Recommenders (one module per algorithm behind `deepcuts.models.base.Recommender`), the bandit and the
re-ranker."""
