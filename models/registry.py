"""Arm name -> recommender class, and one factory that builds an arm from the settings.

``build_recommender(arm, settings, seed)`` is the only place that knows which settings section and
which base model belong to which arm; the train step, ``deepcuts evaluate`` and the benchmarks all go
through it so an arm means the same thing everywhere.
"""

from __future__ import annotations

from deepcuts.settings import ALL_ARMS, Settings
from models.base import Preference, Recommender
from models.graph import GraphRecommender
from models.item_cf import ItemCFRecommender
from models.lightfm_warp import LightFMRecommender
from models.long_tail import LongTailRecommender, scale_floor
from models.popularity import PopularityRecommender
from models.serendipity import SerendipityRecommender
from models.svd import SVDRecommender

#: Every arm's class, keyed by the arm name used in settings, the lake and the candidates table.
ARM_CLASSES: dict[str, type[Recommender]] = {
    "svd": SVDRecommender,
    "lightfm": LightFMRecommender,
    "graph": GraphRecommender,
    "item_cf": ItemCFRecommender,
    "long_tail": LongTailRecommender,
    "serendipity": SerendipityRecommender,
    "popularity": PopularityRecommender,
}

#: The arms that only rank by relevance (usable as the base of long_tail / serendipity).
RELEVANCE_ARMS: tuple[str, ...] = ("svd", "lightfm", "graph", "item_cf")

assert set(ARM_CLASSES) == set(ALL_ARMS), "ARM_CLASSES and settings.ALL_ARMS disagree"


def preference(settings: Settings) -> Preference:
    """The history weighting of the arms that score from history rows (item_cf, svd, graph)."""
    arms = settings.arms
    scale = (settings.source.rating_min, settings.source.rating_max)
    return Preference(scale_floor(arms.preference_liked_5pt, scale), arms.preference_other_weight)


def _relevance_model(arm: str, settings: Settings, seed: int) -> Recommender:
    arms = settings.arms
    batch = arms.batch_users
    model: Recommender
    if arm == "svd":
        svd_seed = arms.svd.seed if arms.svd.seed is not None else seed
        model = SVDRecommender(arms.svd, seed=svd_seed, batch_users=batch)
    elif arm == "lightfm":
        # LightFM learns from its own positives (arms.lightfm.positive_threshold), not history rows
        lf_seed = arms.lightfm.seed if arms.lightfm.seed is not None else seed
        return LightFMRecommender(arms.lightfm, seed=lf_seed, batch_users=batch)
    elif arm == "graph":
        model = GraphRecommender(arms.graph, seed=seed, batch_users=batch)
    elif arm == "item_cf":
        model = ItemCFRecommender(arms.item_cf, seed=seed, batch_users=batch)
    else:
        raise ValueError(f"{arm!r} is not a relevance arm; choose one of {list(RELEVANCE_ARMS)}")
    model.preference = preference(settings)
    return model


def base_arm(arm: str, settings: Settings) -> str | None:
    """The relevance arm whose scores ``arm`` re-weights (long_tail, serendipity), else None."""
    if arm == "long_tail":
        return settings.arms.long_tail.base
    if arm == "serendipity":
        return settings.arms.serendipity.base
    return None


def build_recommender(
    arm: str, settings: Settings, seed: int, *, base: Recommender | None = None
) -> Recommender:
    """A recommender for ``arm`` configured from ``settings.arms`` (unfitted unless ``base`` is).

    ``seed`` is the arm's seed (the train step derives it from ``arms.seed`` and the run date);
    ``arms.svd.seed`` / ``arms.lightfm.seed`` override it when set. For long_tail and serendipity,
    ``base`` is the relevance model to re-weight (default: a new ``base_arm`` model with ``seed``); a
    base already fitted on the same interactions is reused by ``fit`` instead of being refitted.
    """
    if arm not in ARM_CLASSES:
        raise ValueError(f"unknown arm {arm!r}; choose one of {list(ARM_CLASSES)} (settings.arms.enabled)")
    if base is not None and base_arm(arm, settings) is None:
        raise ValueError(f"arm {arm!r} has no base model; pass base only for long_tail or serendipity")
    arms = settings.arms
    scale = (settings.source.rating_min, settings.source.rating_max)
    if arm == "popularity":
        return PopularityRecommender(None, seed=seed, batch_users=arms.batch_users)
    if arm == "long_tail":
        return LongTailRecommender(
            arms.long_tail,
            seed=seed,
            batch_users=arms.batch_users,
            base=base if base is not None else _relevance_model(arms.long_tail.base, settings, seed),
            quality=arms.quality,
            rating_scale=scale,
        )
    if arm == "serendipity":
        return SerendipityRecommender(
            arms.serendipity,
            seed=seed,
            batch_users=arms.batch_users,
            base=base if base is not None else _relevance_model(arms.serendipity.base, settings, seed),
            quality=arms.quality,
            rating_scale=scale,
            head_share=arms.long_tail.head_share,
        )
    return _relevance_model(arm, settings, seed)
