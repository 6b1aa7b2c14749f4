"""The night's plan: which arms run tonight, decided once per run and handed to every step.

Airflow's rule for mapped tasks is that the list a task maps over comes from one upstream value, never
from a second copy. The DAG's ``plan`` task and :func:`deepcuts.pipelines.nightly.run_night` call
:func:`plan_arms` once; every step of the run then gets settings whose ``arms.enabled`` is that plan
(:func:`with_arms`): ``train`` maps over it, ``candidates`` loops over it, ``score`` and ``evaluate``
read only its arms' lists, ``assign`` lets the bandit choose only among them. Lists of arms left out
of tonight's plan are not served.

The plan always keeps the A/B control arm, the baseline arm of the experiment in force for the run
date (``ab.baseline_arm``, ``svd`` by default; ``deepcuts experiment start --baseline-arm``):
``assign`` serves the control users that arm's candidates, so a night without it could not serve
them. The popularity baseline is not needed by any later step (no served list and no cold-start list
comes from it) and may be left out. A plan needs at least one bandit arm (``bandit.arms``): the
treatment users are served a bandit arm's re-ranked list.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from deepcuts.arms import in_registry_order
from deepcuts.pipelines.experiment_registry import state_for
from deepcuts.pipelines.storage import Lake
from deepcuts.progress import get_logger
from deepcuts.settings import Settings

log = get_logger(__name__)


def plan_arms(
    settings: Settings, run_date: date, requested: Iterable[str] | None = None, lake: Lake | None = None
) -> tuple[str, ...]:
    """Tonight's arms in registry order: ``requested`` (default ``arms.enabled``) plus the A/B control
    arm of the experiment in force for ``run_date``; unknown names and a plan without a bandit arm are
    errors that say what to pass instead."""
    asked = in_registry_order(requested or settings.arms.enabled)
    control = state_for(settings, run_date, lake).baseline_arm
    arms = in_registry_order([*asked, control])
    if control not in asked:
        log.info("plan %s: adding the A/B control arm %r to the requested %s", run_date, control, asked)
    if not set(arms) & set(settings.bandit.arms):
        raise ValueError(
            f"plan {run_date}: arms {list(arms)} hold no bandit arm (bandit.arms = "
            f"{list(settings.bandit.arms)}); the treatment users would get no list: add one of them"
        )
    return arms


def with_arms(settings: Settings, arms: Iterable[str]) -> Settings:
    """``settings`` with ``arms.enabled`` set to a plan's arms (validated by :func:`plan_arms`)."""
    planned = in_registry_order(arms)
    if planned == settings.arms.enabled:
        return settings
    return settings.model_copy(update={"arms": settings.arms.model_copy(update={"enabled": planned})})


def train_order(settings: Settings, arms: Iterable[str]) -> tuple[str, ...]:
    """The order in which to start the night's per-arm ``train`` tasks: first the arms that another planned
    arm re-weights (its ``base``: item_cf for long_tail and serendipity), then the others, each group in
    plan order.

    A deep-cut arm reuses tonight's artefact of its base when it exists (``pipelines/train.py``) instead
    of fitting the same base model again, so starting the bases first saves that refit whenever a base
    finishes before its deep-cut arms start (at ML-1M shape on 2 slots: two of the three EASE^R fits,
    docs/benchmarks.md). Only the start order changes: every arm's scores are the same in any order.
    """
    # imported here: the registry imports the model base classes (scipy.sparse), which the plan's other
    # callers do not need
    from deepcuts.models.recommenders.registry import base_arm

    planned = tuple(arms)
    bases = {b for arm in planned if (b := base_arm(arm, settings))}
    return tuple(a for a in planned if a in bases) + tuple(a for a in planned if a not in bases)
