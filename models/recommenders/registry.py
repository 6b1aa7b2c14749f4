"""Build an arm of the registry (deepcuts/arms.py) from the settings.

``build_recommender(arm, settings, seed)`` is the only way an arm is made: the train step,
``deepcuts evaluate``, the contract tests and the benchmarks all go through it, so an arm means the same
thing everywhere. There is no per-arm code here: the registry entry names the class and the settings
section, and the class's ``Recommender.from_settings`` builds it from that section. Two conventions of
the sections apply to every arm: a ``seed`` field that is set fixes the arm's seed, and a deep-cut arm's
``base`` field names the relevance arm it re-weights.
"""

from __future__ import annotations

import importlib
from typing import Any

from deepcuts.arms import ArmRole, arm_spec
from deepcuts.models.recommenders.base import Preference, Recommender
from deepcuts.models.recommenders.long_tail import scale_floor
from deepcuts.settings import Settings


def arm_class(arm: str) -> type[Recommender]:
    """The ``Recommender`` subclass of a registered arm (its module is imported on first use)."""
    spec = arm_spec(arm)
    module_name, _, class_name = spec.model.partition(":")
    if "." not in module_name:
        module_name = f"{__package__}.{module_name}"  # a module of this package
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise TypeError(
            f"arm {arm!r}: {spec.model} is not a deepcuts.models.recommenders.base.Recommender subclass"
        )
    return cls


def arm_config(arm: str, settings: Settings) -> Any:
    """The arm's settings section (``settings.arms.<section>``), None for an arm without one."""
    section = arm_spec(arm).section
    return getattr(settings.arms, section) if section is not None else None


def preference(settings: Settings) -> Preference:
    """The history weighting of the arms that score from history rows (``uses_preference``)."""
    arms = settings.arms
    scale = (settings.source.rating_min, settings.source.rating_max)
    return Preference(scale_floor(arms.preference_liked_5pt, scale), arms.preference_other_weight)


def base_arm(arm: str, settings: Settings) -> str | None:
    """The relevance arm whose scores a deep-cut ``arm`` re-weights (``arms.<section>.base``), else None."""
    if arm_spec(arm).role is not ArmRole.DEEP_CUT:
        return None
    return str(arm_config(arm, settings).base)


def build_recommender(
    arm: str, settings: Settings, seed: int, *, base: Recommender | None = None
) -> Recommender:
    """A recommender for ``arm`` configured from ``settings.arms`` (unfitted unless ``base`` is).

    ``seed`` is the arm's seed (the train step derives it from ``arms.seed`` and the run date); a set
    ``seed`` field of the arm's section (``arms.svd.seed``, ``arms.lightfm.seed``) overrides it. For a
    deep-cut arm, ``base`` is the relevance model to re-weight (default: a new ``base_arm`` model with
    ``seed``); a base already fitted on the same interactions is reused by ``fit`` instead of being
    refitted.
    """
    base_name = base_arm(arm, settings)
    if base is not None and base_name is None:
        raise ValueError(f"arm {arm!r} has no base model; pass base only for a deep-cut arm")
    if base_name is not None and base is None:
        # settings validation (ArmsSettings) already made base_name a relevance arm
        base = build_recommender(base_name, settings, seed)
    config = arm_config(arm, settings)
    fixed_seed = getattr(config, "seed", None)
    model = arm_class(arm).from_settings(
        settings, config, seed if fixed_seed is None else fixed_seed, base=base
    )
    if model.uses_preference:
        model.preference = preference(settings)
    return model
