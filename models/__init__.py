"""The algorithms, in four groups (docs/architecture.md, "Code layout"):

- ``recommenders``: one module per arm behind ``recommenders.base.Recommender``, and the arm builder;
- ``reranking``: deep-cut scores and the re-ranker that turns candidates into served lists;
- ``policy``: the contextual bandit that picks an arm per user and daypart, and off-policy evaluation;
- ``abtest``: the A/B test statistics.
"""
