"""The arm registry: the one list of the recommenders deepcuts trains each night.

Each arm declares its name (used in the settings, the lake paths and the ``arm`` column), its
recommender class and the ``settings.arms`` section holding its knobs. Everything else derives from
this list: the ``arms.enabled`` and ``bandit.arms`` defaults and their validation, the base arms the
deep-cut arms may re-weight, the DAG's ``arms`` param (through the settings), the contract tests and
the benchmarks. ``deepcuts.models.recommenders.registry`` builds an arm from its entry
(``build_recommender``).

The class is named by its module inside the ``models`` package and its class name, so that this
module stays light: the settings import it, and parsing the settings must not import numpy, scipy or
lightfm. Adding an arm: CONTRIBUTING.md ("Adding an arm").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class ArmRole(StrEnum):
    """What an arm does in the night, which decides how it is built and who may choose it."""

    #: Ranks by predicted relevance; may be the base of a deep-cut arm; a bandit arm.
    RELEVANCE = "relevance"
    #: Re-weights a relevance arm's scores (its settings section names that arm in ``base``); a bandit arm.
    DEEP_CUT = "deep_cut"
    #: A reference ranking trained and evaluated every night but never chosen by the bandit.
    BASELINE = "baseline"


@dataclass(frozen=True)
class ArmSpec:
    """One registry entry."""

    #: Arm name in settings, lake paths (``models/<name>``, ``candidates/<name>``) and the ``arm`` column.
    name: str
    #: ``"<module>:<Class>"``: the ``deepcuts.models.recommenders.base.Recommender`` subclass, in
    #: ``models/recommenders/<module>.py`` (a dotted module with a ``.`` is taken as an absolute import path,
    #: e.g. for a test's arm).
    model: str
    #: Field of ``settings.arms`` holding the arm's section (its config), None for an arm without knobs.
    section: str | None
    role: ArmRole

    @property
    def is_bandit_arm(self) -> bool:
        return self.role is not ArmRole.BASELINE


#: The registry, in the order the nightly steps train and report the arms (relevance arms first, so a
#: deep-cut arm finds its base already fitted in a sequential night).
ARMS: dict[str, ArmSpec] = {
    spec.name: spec
    for spec in (
        ArmSpec("svd", "svd:SVDRecommender", "svd", ArmRole.RELEVANCE),
        ArmSpec("lightfm", "lightfm_warp:LightFMRecommender", "lightfm", ArmRole.RELEVANCE),
        ArmSpec("graph", "graph:GraphRecommender", "graph", ArmRole.RELEVANCE),
        ArmSpec("item_cf", "item_cf:ItemCFRecommender", "item_cf", ArmRole.RELEVANCE),
        ArmSpec("long_tail", "long_tail:LongTailRecommender", "long_tail", ArmRole.DEEP_CUT),
        ArmSpec("serendipity", "serendipity:SerendipityRecommender", "serendipity", ArmRole.DEEP_CUT),
        ArmSpec("popularity", "popularity:PopularityRecommender", None, ArmRole.BASELINE),
    )
}


def arm_names() -> tuple[str, ...]:
    """Every registered arm, in registry order (read at call time: a test may register an arm)."""
    return tuple(ARMS)


def bandit_arm_names() -> tuple[str, ...]:
    """The arms the bandit chooses between (every arm but the baselines), in registry order."""
    return tuple(name for name, spec in ARMS.items() if spec.is_bandit_arm)


def relevance_arm_names() -> tuple[str, ...]:
    """The arms a deep-cut arm may re-weight (``arms.<deep-cut arm>.base``)."""
    return tuple(name for name, spec in ARMS.items() if spec.role is ArmRole.RELEVANCE)


def deep_cut_arm_names() -> tuple[str, ...]:
    """The arms that re-weight a relevance arm toward deep cuts."""
    return tuple(name for name, spec in ARMS.items() if spec.role is ArmRole.DEEP_CUT)


def arm_spec(name: str) -> ArmSpec:
    """The registry entry of ``name``; an unknown name is an error that lists the registered arms."""
    try:
        return ARMS[name]
    except KeyError:
        raise ValueError(
            f"unknown arm {name!r}; the registered arms are {list(ARMS)} (deepcuts/arms.py)"
        ) from None


def unknown_arms(names: Iterable[str]) -> list[str]:
    """The names in ``names`` that are not registered arms, sorted (empty when all are known)."""
    return sorted(set(names) - set(ARMS))


def in_registry_order(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` without duplicates, in registry order, so a plan is the same whatever order it was
    asked in (every step then writes and reports the arms in one order)."""
    wanted = set(names)
    missing = unknown_arms(wanted)
    if missing:
        raise ValueError(f"unknown arms {missing}; the registered arms are {list(ARMS)} (deepcuts/arms.py)")
    return tuple(name for name in ARMS if name in wanted)
