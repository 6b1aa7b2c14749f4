"""Weekly step ``tune``: pick each arm's key hyperparameters on the data it serves.

The hand-set defaults of ``settings.arms`` were tuned on ML-100k; on other data they leave accuracy
on the table (issue 18: item_cf lambda 1000 beats 300 on MovieLens-1M). This step searches a small grid
per arm (``settings.tune``) on a **validation split inside the training data**: by default temporal, each
user's latest ``tune.validation_share`` ratings held out (:func:`deepcuts.pipelines.evaluate.temporal_split`,
``tune.validation_protocol``; ``deepcuts evaluate --tune`` mirrors its own split's protocol), the arm is
fitted on the rest and its top-k lists are scored by nDCG@k (``evaluate.k``) against the held-out
ratings, exactly as ``deepcuts evaluate`` scores them. The current setting is always tried first; a
tried value replaces it only if it scores at least ``tune.min_gain`` higher, so a noisy grid cannot make
an arm worse than its default on validation. The search stops at ``tune.budget_seconds`` (each arm gets
an equal share of the time left; an arm out of time keeps its best value so far). LightFM points that
differ only in epochs above the ``arms.lightfm.max_updates`` cap fit the same model and are tried once.

Outputs ``tuning/run_date=D/tuning.json``: per arm the chosen parameters, their validation score, the
default's score, every trial and ``skipped_same_fit`` (points not fitted: the same model as a trial).
The nightly ``train`` step applies the newest tuning at or before its run date (:func:`tuned_settings`;
off with ``tune.use_in_train = false``); without any tuning the defaults stay. The deep-cut arms
(long_tail, serendipity) re-weight their base arm and so inherit its tuned values; their own knobs are
product choices (docs/deep-cuts.md) and are not searched.

Idempotent: a rerun for ``D`` rewrites the same file; the trials' scores are deterministic (seeds from
``arms.seed``, ``arms.lightfm.threads = 1``), only the timings differ.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines.storage import Lake, as_run_date
from deepcuts.progress import get_logger
from deepcuts.seeds import derive_seed
from deepcuts.settings import Settings

log = get_logger(__name__)

TUNING_FILE = "tuning.json"
#: Arms with a grid (``arms.<arm>`` sections); other names in ``tune.arms`` are an error.
TUNABLE_ARMS: tuple[str, ...] = ("item_cf", "svd", "graph", "lightfm")


def item_cf_method(settings: Settings, n_items: int) -> str:
    """The method item_cf fits on a catalog of ``n_items`` (``method = auto`` picks by size)."""
    cfg = settings.arms.item_cf
    if cfg.method != "auto":
        return cfg.method
    return "ease" if n_items <= cfg.ease_max_items else "cosine"


def grid(arm: str, settings: Settings, n_items: int) -> list[dict[str, Any]]:
    """Parameter sets to try for ``arm`` on a catalog of ``n_items``, the current setting first, no
    duplicates (item_cf searches lambda for EASE^R or neighbours for shrunk cosine, whichever it fits)."""
    t, arms = settings.tune, settings.arms
    points: list[dict[str, Any]]
    if arm == "item_cf":
        if item_cf_method(settings, n_items) == "ease":
            points = [{"ease_lambda": v} for v in (arms.item_cf.ease_lambda, *t.item_cf_ease_lambdas)]
        else:
            points = [{"neighbours": v} for v in (arms.item_cf.neighbours, *t.item_cf_neighbours)]
    elif arm == "svd":
        current = {"factors": arms.svd.factors, "popularity_exponent": arms.svd.popularity_exponent}
        product = itertools.product(t.svd_factors, t.svd_popularity_exponents)
        points = [current, *({"factors": f, "popularity_exponent": g} for f, g in product)]
    elif arm == "graph":
        current = {"alpha": arms.graph.alpha, "beta": arms.graph.beta, "top_k": arms.graph.top_k}
        product = itertools.product(t.graph_alphas, t.graph_betas, t.graph_top_ks)
        points = [current, *({"alpha": a, "beta": b, "top_k": n} for a, b, n in product)]
    elif arm == "lightfm":
        f = arms.lightfm
        keys = ("components", "epochs", "learning_rate", "max_sampled", "genre_feature_weight")
        current = {key: getattr(f, key) for key in keys}
        product = itertools.product(
            t.lightfm_components,
            t.lightfm_epochs,
            t.lightfm_learning_rates,
            t.lightfm_max_sampled,
            t.lightfm_genre_feature_weights,
        )
        points = [current, *(dict(zip(keys, values, strict=True)) for values in product)]
    else:
        raise ValueError(f"arm {arm!r} has no tuning grid; tune.arms may hold {list(TUNABLE_ARMS)}")
    unique: list[dict[str, Any]] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


def lightfm_positives(train: pd.DataFrame, items: pd.DataFrame, settings: Settings) -> int:
    """LightFM's positives in ``train`` (the ratings at or above ``arms.lightfm.positive_threshold`` of
    the interaction matrix its fit sees): what its update budget divides."""
    from deepcuts.models.recommenders.base import InteractionMatrix

    ratings = InteractionMatrix.from_frames(train, items).ratings
    return int(np.count_nonzero(ratings.data >= settings.arms.lightfm.positive_threshold))


def same_fit(arm: str, point: Mapping[str, Any], settings: Settings, positives: int) -> dict[str, Any]:
    """``point`` as the model will fit it: LightFM runs the epochs its update budget allows
    (:func:`~deepcuts.models.recommenders.lightfm_warp.epochs_within_budget`), so on large data (ML-1M:
    3) every epochs value above the cap is the same trial and is tried only once."""
    if arm == "lightfm" and "epochs" in point:
        from deepcuts.models.recommenders.lightfm_warp import epochs_within_budget

        epochs = epochs_within_budget(int(point["epochs"]), settings.arms.lightfm.max_updates, positives)
        return {**point, "epochs": epochs}
    return dict(point)


def apply_tuning(settings: Settings, params: Mapping[str, Mapping[str, Any]]) -> Settings:
    """``settings`` with ``arms.<arm>`` fields replaced by ``params[arm]`` (validated like the TOML file)."""
    updates = {}
    for arm, values in params.items():
        if arm not in TUNABLE_ARMS:
            raise ValueError(f"tuning names arm {arm!r}; only {list(TUNABLE_ARMS)} are tuned")
        section = getattr(settings.arms, arm)
        updates[arm] = type(section).model_validate({**section.model_dump(), **dict(values)})
    return settings.model_copy(update={"arms": settings.arms.model_copy(update=updates)})


def tune_on_frames(
    train: pd.DataFrame,
    items: pd.DataFrame,
    settings: Settings,
    *,
    arms: list[str] | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """Search each arm's grid on a validation split of ``train`` (``protocol``, default
    ``tune.validation_protocol``); returns the tuning document."""
    # imported here: the train step imports this module only for tuned_settings
    from deepcuts.metrics import ListContext, score_lists
    from deepcuts.models.recommenders.base import blas_threads
    from deepcuts.models.recommenders.registry import build_recommender
    from deepcuts.pipelines.evaluate import make_holdout, stratified_split, temporal_split

    cfg = settings.tune
    names = list(arms) if arms is not None else [a for a in cfg.arms if a in settings.arms.enabled]
    unknown = [a for a in names if a not in TUNABLE_ARMS]
    if unknown:
        raise ValueError(f"tune.arms holds {unknown}; only {list(TUNABLE_ARMS)} have a grid")
    protocol = protocol or cfg.validation_protocol
    k = settings.evaluate.k
    if protocol == "temporal":
        if C.TS not in train.columns:
            raise ValueError(f"tuning needs the {C.TS!r} column for its temporal validation split")
        fit_part, held_out = temporal_split(train, cfg.validation_share)
    elif protocol == "stratified":
        fit_part, held_out = stratified_split(train, 1.0 - cfg.validation_share, settings.evaluate.split_seed)
    else:
        raise ValueError(f"unknown validation protocol {protocol!r}; choose temporal or stratified")
    holdout = make_holdout(fit_part, held_out)
    if holdout.users.size == 0:
        raise ValueError("tuning: no user has both a fitting and a validation history; need more data")
    ctx = ListContext.build(
        k=k,
        train=holdout.train,
        items=items,
        head_share=settings.arms.long_tail.head_share,
        truth=holdout.test,
    )
    n_items = int(np.union1d(items[C.ITEM_ID].to_numpy(np.int64), train[C.ITEM_ID].to_numpy(np.int64)).size)
    # the validation fit has fewer positives than the nightly one, so its cap is at least the nightly
    # cap: two points that fit the same here also fit the same on the full data
    positives = lightfm_positives(holdout.train, items, settings) if "lightfm" in names else 0
    deadline = time.perf_counter() + cfg.budget_seconds
    out_arms: dict[str, Any] = {}
    for position, arm in enumerate(names):
        share = (deadline - time.perf_counter()) / (len(names) - position)
        arm_deadline = time.perf_counter() + share
        points = grid(arm, settings, n_items)
        seed = derive_seed(settings.arms.seed, "tune", arm)
        trials: list[dict[str, Any]] = []
        fitted: list[dict[str, Any]] = []
        skipped = 0
        for point in points:
            if trials and time.perf_counter() >= arm_deadline:
                log.info("tune %s: time share used up after %d of %d trials", arm, len(trials), len(points))
                break
            if (fit_as := same_fit(arm, point, settings, positives)) in fitted:
                skipped += 1  # the same model as an earlier trial: its score is known
                continue
            fitted.append(fit_as)
            started = time.perf_counter()
            model = build_recommender(arm, apply_tuning(settings, {arm: point}), seed)
            with blas_threads(settings.arms.blas_threads):
                model.fit(holdout.train, items)
                recs = model.recommend(holdout.users, k)
            score = float(score_lists(recs, ctx, users=holdout.users)[f"ndcg@{k}"])
            trials.append(
                {"params": point, "ndcg": round(score, 6), "seconds": round(time.perf_counter() - started, 3)}
            )
            log.info("tune %s %s: ndcg@%d %.4f", arm, point, k, score)
        default = trials[0]
        best = max(trials, key=lambda t: t["ndcg"])  # first of equal scores: the earlier trial
        chosen = best if best["ndcg"] >= default["ndcg"] + cfg.min_gain else default
        out_arms[arm] = {
            "params": chosen["params"],
            "ndcg": chosen["ndcg"],
            "default_params": default["params"],
            "default_ndcg": default["ndcg"],
            "trials": trials,
            "skipped_same_fit": skipped,
        }
    return {
        "metric": f"ndcg@{k}",
        "validation_protocol": protocol,
        "validation_share": cfg.validation_share,
        "n_validation_users": int(holdout.users.size),
        "n_validation_ratings": len(holdout.test),
        "arms": out_arms,
    }


def chosen_params(tuning: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{arm: params}`` of a tuning document."""
    return {arm: dict(entry["params"]) for arm, entry in tuning.get("arms", {}).items()}


def tune(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """Weekly step: tune on the run date's canonical interactions, write ``tuning/run_date=D/tuning.json``."""
    day = as_run_date(run_date)
    lake = Lake(settings.home)
    lake.require_inputs(day, Dataset.ITEMS, Dataset.INTERACTIONS)
    items = lake.read_df(Dataset.ITEMS, day)
    interactions = lake.read_df(Dataset.INTERACTIONS, day, columns=[C.USER_ID, C.ITEM_ID, C.RATING, C.TS])
    if interactions.empty:
        raise ValueError(f"tune: canonical/interactions for {day} is empty; check the ingest step's output")
    started = time.perf_counter()
    doc = tune_on_frames(interactions, items, settings)
    doc = {"run_date": day.isoformat(), "seconds": round(time.perf_counter() - started, 3), **doc}
    path = lake.write_json(Dataset.TUNING, day, TUNING_FILE, doc)
    log.info("tune %s: chose %s in %.1fs", day, chosen_params(doc), doc["seconds"])
    return {**doc, "path": path}


def latest_tuning(lake: Lake, run_date: date | str) -> dict[str, Any] | None:
    """The newest tuning document at or before ``run_date``, if any."""
    day = as_run_date(run_date)
    dates = [d for d in lake.run_dates(Dataset.TUNING) if d <= day]
    for d in reversed(dates):
        if lake.exists(Dataset.TUNING, d, TUNING_FILE):
            return lake.read_json(Dataset.TUNING, d, TUNING_FILE)
    return None


def tuned_settings(lake: Lake, settings: Settings, run_date: date | str) -> tuple[Settings, str | None]:
    """``settings`` with the newest tuning at or before ``run_date`` applied, and that tuning's date.

    Unchanged (and ``None``) when there is no tuning or ``tune.use_in_train`` is off: the defaults are
    the fallback. Arms no longer in ``TUNABLE_ARMS`` are ignored rather than failing the night.
    """
    if not settings.tune.use_in_train:
        return settings, None
    doc = latest_tuning(lake, run_date)
    if doc is None:
        return settings, None
    params = {arm: p for arm, p in chosen_params(doc).items() if arm in TUNABLE_ARMS}
    return apply_tuning(settings, params), doc.get("run_date")
