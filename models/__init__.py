"""Recommenders (one module per algorithm behind `models.base.Recommender`), the bandit and the re-ranker."""
