"""The arms: one module per recommender behind ``base.Recommender``, built from the arm registry
(deepcuts/arms.py) by ``registry.build_recommender``; ``item_stats`` holds the item statistics
they share."""
