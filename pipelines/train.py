"""Nightly step ``train``: fit one arm on the canonical tables of the run date, store the artefact.

Reads ``canonical/items`` and ``canonical/interactions`` of the run date (the interactions partition of
``D`` is the history up to ``D`` as written by ingest), fits
``deepcuts.models.recommenders.registry.build_recommender(arm)`` with the seed
``derive_seed(settings.arms.seed, D, "train/<arm>")`` and writes

- ``models/run_date=D/<arm>/model.pkl``: ``Recommender.to_bytes()`` (load with
  ``deepcuts.models.recommenders.registry.arm_class(arm).from_bytes`` or :func:`load_model`);
- ``models/run_date=D/<arm>/meta.json``: fit seconds, sizes, seed, class, artefact bytes.

The long_tail and serendipity arms re-weight a relevance arm (``arms.<arm>.base``) seeded like that arm;
if that arm's artefact of ``D`` already exists with the same settings it is reused instead of refitted.
The newest ``tuning`` at or before ``D`` (weekly ``tune`` step, pipelines/tune.py) overrides the tuned
arms' hyperparameters; ``meta.json`` names its run date (``tuning_run_date``, null without tuning).

Idempotent: a rerun for ``D`` rewrites both files; ``model.pkl`` is byte-identical for deterministic arms
(all arms, with ``arms.lightfm.threads = 1``); only the timing in ``meta.json`` changes. (A deep-cut arm
fitted before vs after its base artefact existed scores identically but may pickle differently.)
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from deepcuts.arms import arm_spec
from deepcuts.contracts import C, Dataset
from deepcuts.models.recommenders.base import ARTEFACT_VERSION, Recommender, blas_threads
from deepcuts.models.recommenders.registry import arm_class, base_arm, build_recommender
from deepcuts.pipelines.storage import Lake, as_run_date
from deepcuts.pipelines.tune import tuned_settings
from deepcuts.progress import get_logger
from deepcuts.seeds import derive_seed
from deepcuts.settings import Settings

log = get_logger(__name__)

MODEL_FILE = "model.pkl"
META_FILE = "meta.json"


def arm_seed(settings: Settings, run_date: date | str, arm: str) -> int:
    """The fit seed of ``arm`` for ``run_date``: ``derive_seed(arms.seed, run_date, "train/<arm>")``."""
    return derive_seed(settings.arms.seed, as_run_date(run_date), f"train/{arm}")


def model_path(arm: str, name: str = MODEL_FILE) -> str:
    """Name of an arm's file inside the ``models`` partition of a run date."""
    return f"{arm}/{name}"


def load_model(lake: Lake, run_date: date | str, arm: str) -> Recommender:
    """The fitted ``arm`` stored for ``run_date`` (raises MissingDataError if train has not run)."""
    return arm_class(arm).from_bytes(lake.read_buffer(Dataset.MODELS, as_run_date(run_date), model_path(arm)))


def _base_model(lake: Lake, settings: Settings, day: date, name: str) -> Recommender:
    """The relevance model a deep-cut arm re-weights, seeded like the ``name`` arm itself.

    If tonight's ``name`` artefact exists and was built with the same settings and seed, it is reused
    (its fit is skipped when it was fitted on the same interactions); otherwise a new, unfitted model.
    Either way the deep-cut arm is the same model (identical scores), so task order does not matter;
    only the pickle's layout may differ between the two paths, and a rerun takes the same path.
    """
    fresh = build_recommender(name, settings, arm_seed(settings, day, name))
    if lake.exists(Dataset.MODELS, day, model_path(name)):
        try:
            stored = load_model(lake, day, name)
        except ValueError as exc:  # written by another code version: not reusable, fit a new one
            log.warning("not reusing tonight's %s model as the base: %s", name, exc)
            return fresh
        if stored.config == fresh.config and stored.seed == fresh.seed:
            log.info("reusing tonight's %s model as the base", name)
            return stored
    return fresh


def train_arm(settings: Settings, run_date: date | str, arm: str) -> dict[str, Any]:
    """Fit ``arm`` on the run date's canonical tables and write its artefact and metadata to the lake."""
    day = as_run_date(run_date)
    arm_spec(arm)  # an unknown arm fails here, before any read
    lake = Lake(settings.home)
    lake.require_inputs(day, Dataset.ITEMS, Dataset.INTERACTIONS)
    # the weekly tune step's choices (pipelines/tune.py); the settings' values when there are none
    settings, tuned_on = tuned_settings(lake, settings, day)
    items = lake.read_df(Dataset.ITEMS, day)
    interactions = lake.read_df(Dataset.INTERACTIONS, day, columns=[C.USER_ID, C.ITEM_ID, C.RATING, C.TS])
    if interactions.empty:
        raise ValueError(
            f"train {arm}: canonical/interactions for {day} is empty; check the ingest step's output"
        )
    seed = arm_seed(settings, day, arm)
    base_name = base_arm(arm, settings)
    base = _base_model(lake, settings, day, base_name) if base_name else None
    model = build_recommender(arm, settings, seed, base=base)
    start = time.perf_counter()
    with blas_threads(settings.arms.blas_threads):
        model.fit(interactions, items)
    fit_seconds = time.perf_counter() - start
    payload = model.to_bytes()
    assert model.data is not None
    meta = {
        "arm": arm,
        "class": type(model).__name__,
        "artefact_version": ARTEFACT_VERSION,
        "run_date": day.isoformat(),
        "seed": seed,
        "fit_seconds": round(fit_seconds, 3),
        "n_users": model.data.n_users,
        "n_items": model.data.n_items,
        "n_interactions": int(model.data.ratings.nnz),
        "artefact_bytes": len(payload),
        "tuning_run_date": tuned_on,
    }
    path = lake.write_bytes(Dataset.MODELS, day, model_path(arm), payload)
    lake.write_json(Dataset.MODELS, day, model_path(arm, META_FILE), meta)
    lake.mark_complete(Dataset.MODELS, day, scope=arm)  # candidates and score check it
    log.info(
        "train %s for %s: %d users x %d items in %.2fs, %d bytes",
        arm, day, meta["n_users"], meta["n_items"], fit_seconds, len(payload),
    )  # fmt: skip
    return {**meta, "path": path}
