"""The weekly ``tune`` step: grids, the choice rule, the lake document and its use by ``train``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pydantic
import pytest

from deepcuts.contracts import Dataset
from deepcuts.pipelines.storage import Lake
from deepcuts.pipelines.train import META_FILE, load_model, model_path, train_arm
from deepcuts.pipelines.tune import (
    TUNING_FILE,
    apply_tuning,
    chosen_params,
    grid,
    tune,
    tune_on_frames,
    tuned_settings,
)
from deepcuts.settings import Settings
from tests.models.recommenders.test_steps import DAY, write_world
from tests.models.recommenders.world import random_world, tiny_settings


def test_grid_starts_with_the_current_setting_without_duplicates() -> None:
    s = tiny_settings(arms={"item_cf": {"method": "auto", "ease_lambda": 200.0, "ease_max_items": 100}})
    small = grid("item_cf", s, n_items=50)
    assert small[0] == {"ease_lambda": 200.0}
    assert len(small) == len({p["ease_lambda"] for p in small})  # 200 is in the grid too, tried once
    # above ease_max_items item_cf fits shrunk cosine: its neighbours are searched instead
    large = grid("item_cf", s, n_items=500)
    assert large[0] == {"neighbours": s.arms.item_cf.neighbours} and all("neighbours" in p for p in large)
    svd = grid("svd", s, n_items=50)
    assert svd[0] == {"factors": s.arms.svd.factors, "popularity_exponent": s.arms.svd.popularity_exponent}
    n_product = len(s.tune.svd_factors) * len(s.tune.svd_popularity_exponents)
    assert s.arms.svd.factors not in s.tune.svd_factors and len(svd) == 1 + n_product
    in_grid = tiny_settings(arms={"svd": {"factors": 20, "popularity_exponent": 0.1}})
    assert len(grid("svd", in_grid, n_items=50)) == n_product  # the current point is tried once
    with pytest.raises(ValueError, match="no tuning grid"):
        grid("popularity", s, n_items=50)


def test_graph_and_lightfm_grids_search_every_listed_knob() -> None:
    s = tiny_settings(
        arms={"graph": {"top_k": 150}, "lightfm": {"learning_rate": 0.02, "max_sampled": 5}},
        tune={
            "graph_top_ks": (100, 300),
            "lightfm_learning_rates": (0.05,),
            "lightfm_max_sampled": (10, 30),
            "lightfm_genre_feature_weights": (0.5,),
        },
    )
    graph = grid("graph", s, n_items=50)
    assert graph[0] == {"alpha": s.arms.graph.alpha, "beta": s.arms.graph.beta, "top_k": 150}
    assert {p["top_k"] for p in graph[1:]} == {100, 300}
    assert len(graph) == 1 + len(s.tune.graph_alphas) * len(s.tune.graph_betas) * 2
    lightfm = grid("lightfm", s, n_items=50)
    assert lightfm[0]["learning_rate"] == 0.02 and lightfm[0]["max_sampled"] == 5
    searched = {(p["learning_rate"], p["max_sampled"], p["genre_feature_weight"]) for p in lightfm[1:]}
    assert searched == {(0.05, 10, 0.5), (0.05, 30, 0.5)}
    assert len(lightfm) == 1 + len(s.tune.lightfm_components) * len(s.tune.lightfm_epochs) * 2
    # every point is a valid setting of its arm, and a tuned point reaches the model's section
    tuned = apply_tuning(s, {"graph": graph[-1], "lightfm": lightfm[-1]})
    assert tuned.arms.graph.top_k == 300 and tuned.arms.lightfm.max_sampled == 30


def test_apply_tuning_replaces_only_the_named_fields_and_validates() -> None:
    s = tiny_settings()
    tuned = apply_tuning(s, {"item_cf": {"ease_lambda": 1000.0}, "graph": {"alpha": 0.6, "beta": 0.3}})
    assert tuned.arms.item_cf.ease_lambda == 1000.0
    assert tuned.arms.item_cf.neighbours == s.arms.item_cf.neighbours
    assert (tuned.arms.graph.alpha, tuned.arms.graph.beta) == (0.6, 0.3)
    assert tuned.arms.svd == s.arms.svd and s.arms.item_cf.ease_lambda != 1000.0  # input untouched
    with pytest.raises(pydantic.ValidationError):
        apply_tuning(s, {"item_cf": {"ease_lambda": -1.0}})
    with pytest.raises(ValueError, match="only"):
        apply_tuning(s, {"popularity": {"x": 1}})


def _frames() -> tuple:
    interactions, items = random_world(3, n_users=60, n_items=40, density=0.3)
    return interactions, items


def test_tune_on_frames_keeps_the_default_unless_a_value_beats_it_by_min_gain() -> None:
    interactions, items = _frames()
    base = tiny_settings(tune={"arms": ("item_cf", "svd"), "validation_protocol": "temporal"})
    doc = tune_on_frames(interactions, items, base)
    assert doc["validation_protocol"] == "temporal" and doc["n_validation_users"] > 0
    for arm in ("item_cf", "svd"):
        entry = doc["arms"][arm]
        assert entry["trials"][0]["params"] == entry["default_params"]
        best = max(t["ndcg"] for t in entry["trials"])
        if best >= entry["default_ndcg"] + base.tune.min_gain:
            assert entry["ndcg"] == best
        else:
            assert entry["params"] == entry["default_params"]
    # an unreachable min_gain keeps every default
    strict = tiny_settings(tune={"arms": ("item_cf", "svd"), "min_gain": 1.0})
    kept = tune_on_frames(interactions, items, strict)
    assert all(e["params"] == e["default_params"] for e in kept["arms"].values())
    # a tiny budget still tries the current setting of every arm, then stops
    rushed = tune_on_frames(
        interactions, items, tiny_settings(tune={"arms": ("svd",), "budget_seconds": 1e-6})
    )
    assert len(rushed["arms"]["svd"]["trials"]) == 1


def test_lightfm_epochs_above_the_update_cap_are_one_trial() -> None:
    interactions, items = _frames()
    tune_cfg = {
        "arms": ("lightfm",),
        "lightfm_components": (4,),
        "lightfm_epochs": (2, 5, 9),
        "lightfm_learning_rates": (0.05,),
        "lightfm_max_sampled": (3,),
        "lightfm_genre_feature_weights": (1.0,),
    }
    lightfm = {
        "components": 4,
        "epochs": 9,
        "learning_rate": 0.05,
        "max_sampled": 3,
        "genre_feature_weight": 1.0,
    }
    # enough updates for every epochs value: each is its own model
    roomy = tiny_settings(tune=tune_cfg, arms={"lightfm": {**lightfm, "max_updates": 10**9}})
    entry = tune_on_frames(interactions, items, roomy)["arms"]["lightfm"]
    assert [t["params"]["epochs"] for t in entry["trials"]] == [9, 2, 5] and entry["skipped_same_fit"] == 0
    # updates for a single epoch: 2, 5 and 9 epochs are the same fit, tried once (the current setting)
    capped = tiny_settings(tune=tune_cfg, arms={"lightfm": {**lightfm, "max_updates": 1}})
    entry = tune_on_frames(interactions, items, capped)["arms"]["lightfm"]
    assert [t["params"]["epochs"] for t in entry["trials"]] == [9] and entry["skipped_same_fit"] == 2
    assert entry["params"] == entry["default_params"]


def test_train_uses_the_newest_tuning_at_or_before_its_run_date(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    write_world(home)
    settings: Settings = tiny_settings(home=str(home))
    lake = Lake(home)
    assert tuned_settings(lake, settings, DAY) == (settings, None)  # no tuning: the defaults
    old = {"run_date": "2026-02-20", "arms": {"item_cf": {"params": {"ease_lambda": 77.0}}}}
    future = {"run_date": "2026-03-05", "arms": {"item_cf": {"params": {"ease_lambda": 99.0}}}}
    lake.write_json(Dataset.TUNING, date(2026, 2, 20), TUNING_FILE, old)
    lake.write_json(Dataset.TUNING, date(2026, 3, 5), TUNING_FILE, future)
    out = train_arm(settings, DAY, "item_cf")
    assert load_model(lake, DAY, "item_cf").config.ease_lambda == 77.0
    meta = lake.read_json(Dataset.MODELS, DAY, model_path("item_cf", META_FILE))
    assert meta["tuning_run_date"] == out["tuning_run_date"] == "2026-02-20"
    # the deep-cut arms re-weight the tuned base arm
    train_arm(settings, DAY, "long_tail")
    assert load_model(lake, DAY, "long_tail").base.config.ease_lambda == 77.0
    off = tiny_settings(home=str(home), tune={"use_in_train": False})
    assert tuned_settings(lake, off, DAY) == (off, None)


def test_tune_step_writes_its_document_to_the_lake(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    write_world(home)
    settings = tiny_settings(home=str(home), tune={"arms": ("svd",), "validation_protocol": "stratified"})
    out = tune(settings, DAY)
    doc = Lake(home).read_json(Dataset.TUNING, DAY, TUNING_FILE)
    assert doc["run_date"] == DAY.isoformat() and doc["validation_protocol"] == "stratified"
    assert chosen_params(doc) == chosen_params(out) and set(doc["arms"]) == {"svd"}


def test_report_shows_the_tuning_the_night_trained_with_escaped(tmp_path: Path) -> None:
    from deepcuts.pipelines.report import _tuning_section

    lake = Lake(tmp_path / "lake")
    assert "No tuning yet" in _tuning_section(lake, DAY).body
    doc = {
        "run_date": "2026-02-20",
        "validation_protocol": "temporal",
        "metric": "ndcg@10",
        "arms": {
            "item_cf": {
                "params": {"ease_lambda": 800.0},
                "ndcg": 0.25,
                "default_params": {"ease_lambda": 300.0},
                "default_ndcg": 0.24,
            },
            "<svd>": {"params": {}, "ndcg": 0.1, "default_params": {}, "default_ndcg": 0.1},
        },
    }
    lake.write_json(Dataset.TUNING, date(2026, 2, 20), TUNING_FILE, doc)
    body = _tuning_section(lake, DAY).body
    assert "ease_lambda=800.0" in body and "ease_lambda=300.0" in body and "2026-02-20" in body
    assert "&lt;svd&gt;" in body and "<svd>" not in body
