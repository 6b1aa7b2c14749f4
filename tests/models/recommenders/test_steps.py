"""The ``train`` and ``candidates`` steps on a tiny world written into a temporary lake."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deepcuts.arms import arm_names, deep_cut_arm_names
from deepcuts.contracts import CANDIDATES_SCHEMA, INTERACTIONS_SCHEMA, ITEMS_SCHEMA, C, Dataset
from deepcuts.models.recommenders.registry import build_recommender
from deepcuts.pipelines.candidates import candidates_shard, shard_part, user_shard
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.pipelines.train import META_FILE, arm_seed, load_model, model_path, train_arm
from deepcuts.settings import Settings
from tests.models.recommenders.world import block_world, tiny_settings

DAY = date(2026, 3, 1)


def write_world(home: Path, day: date = DAY) -> tuple[pd.DataFrame, pd.DataFrame]:
    interactions, items = block_world()
    lake = Lake(home)
    lake.write_table(
        Dataset.ITEMS, day, pa.Table.from_pandas(items, schema=ITEMS_SCHEMA, preserve_index=False)
    )
    lake.write_table(
        Dataset.INTERACTIONS,
        day,
        pa.Table.from_pandas(interactions, schema=INTERACTIONS_SCHEMA, preserve_index=False),
    )
    lake.mark_all_complete()  # as ingest does when it finishes
    return interactions, items


@pytest.fixture
def world_settings(tmp_path: Path) -> Settings:
    home = tmp_path / "lake"
    write_world(home)
    return tiny_settings(home=str(home))


def test_user_shard_by_hand() -> None:
    assert user_shard([0, 1, 5, 7, 12], 3).tolist() == [0, 1, 2, 1, 0]
    assert user_shard([4, 9], 1).tolist() == [0, 0]
    with pytest.raises(ValueError, match="n_shards"):
        user_shard([1], 0)


def test_arm_seed_is_derived_per_arm_and_date() -> None:
    s = tiny_settings()
    assert arm_seed(s, DAY, "svd") == arm_seed(s, "2026-03-01", "svd")
    assert arm_seed(s, DAY, "svd") != arm_seed(s, DAY, "graph")
    assert arm_seed(s, DAY, "svd") != arm_seed(s, date(2026, 3, 2), "svd")


@pytest.mark.parametrize("arm", arm_names())
def test_train_writes_a_loadable_reproducible_artefact(arm: str, world_settings: Settings) -> None:
    lake = Lake(world_settings.home)
    out = train_arm(world_settings, DAY, arm)
    assert out["n_users"] == 20 and out["n_items"] == 11 and out["n_interactions"] == 99
    first = lake.read_bytes(Dataset.MODELS, DAY, model_path(arm))
    assert len(first) == out["artefact_bytes"]
    meta = lake.read_json(Dataset.MODELS, DAY, model_path(arm, META_FILE))
    assert meta["seed"] == arm_seed(world_settings, DAY, arm) and meta["fit_seconds"] >= 0
    # the stored model recommends exactly what a fresh fit with the derived seed recommends
    interactions, items = block_world()
    fresh = build_recommender(arm, world_settings, arm_seed(world_settings, DAY, arm)).fit(
        interactions, items
    )
    users = np.arange(1, 22)
    pd.testing.assert_frame_equal(load_model(lake, DAY, arm).recommend(users, 5), fresh.recommend(users, 5))
    # idempotent: a rerun writes the same bytes
    train_arm(world_settings, DAY.isoformat(), arm)
    assert lake.read_bytes(Dataset.MODELS, DAY, model_path(arm)) == first


def test_train_without_ingest_says_what_to_run(tmp_path: Path) -> None:
    settings = tiny_settings(home=str(tmp_path / "empty"))
    with pytest.raises(MissingDataError, match="run the step"):
        train_arm(settings, DAY, "svd")
    with pytest.raises(ValueError, match="unknown arm"):
        train_arm(settings, DAY, "knn")


def test_candidates_cover_every_user_once_with_the_contract_schema(world_settings: Settings) -> None:
    for arm in world_settings.arms.enabled:
        train_arm(world_settings, DAY, arm)
    n_shards = 3
    results = [candidates_shard(world_settings, DAY, shard, n_shards) for shard in range(n_shards)]
    assert sum(r["users"] for r in results) == 20
    lake = Lake(world_settings.home)
    interactions, _ = block_world()
    seen = set(zip(interactions[C.USER_ID], interactions[C.ITEM_ID], strict=True))
    for arm in world_settings.arms.enabled:
        table = lake.read_table(Dataset.CANDIDATES, DAY, subdir=arm)
        assert table.schema.equals(CANDIDATES_SCHEMA)
        frame = table.to_pandas()
        assert set(frame[C.ARM]) == {arm} and set(frame[C.RUN_DATE]) == {DAY}
        assert sorted(frame[C.USER_ID].unique()) == list(range(1, 21))
        assert not seen.intersection(zip(frame[C.USER_ID], frame[C.ITEM_ID], strict=True))
        assert frame.groupby(C.USER_ID).size().max() <= world_settings.arms.candidates_n
        assert sum(r["rows"][arm] for r in results) == len(frame)
        for shard in range(n_shards):
            part = lake.read_df(Dataset.CANDIDATES, DAY, parts=[shard_part(arm, shard)])
            assert (user_shard(part[C.USER_ID], n_shards) == shard).all()
        # the held-out checkerboard item is user 1's first candidate
        first = frame[(frame[C.USER_ID] == 1) & (frame[C.RANK] == 1)]
        assert first[C.ITEM_ID].tolist() == [5]


def test_candidates_are_idempotent_and_independent_of_the_batch_size(world_settings: Settings) -> None:
    for arm in ("svd", "long_tail"):
        train_arm(world_settings, DAY, arm)
    settings = tiny_settings(home=world_settings.home, arms={"enabled": ["svd", "long_tail"]})
    lake = Lake(settings.home)
    candidates_shard(settings, DAY, 0, 2)
    path = lake.file_path(Dataset.CANDIDATES, DAY, shard_part("svd", 0) + ".parquet")
    first = Path(path).read_bytes()
    candidates_shard(settings, DAY, 0, 2)
    assert Path(path).read_bytes() == first
    small = tiny_settings(home=world_settings.home, arms={"enabled": ["svd", "long_tail"], "batch_users": 2})
    before = lake.read_df(Dataset.CANDIDATES, DAY, subdir="long_tail")
    candidates_shard(small, DAY, 0, 2)
    pd.testing.assert_frame_equal(lake.read_df(Dataset.CANDIDATES, DAY, subdir="long_tail"), before)


def test_candidates_errors(world_settings: Settings) -> None:
    with pytest.raises(ValueError, match="outside"):
        candidates_shard(world_settings, DAY, 3, 3)
    with pytest.raises(MissingDataError):
        candidates_shard(world_settings, DAY, 0, 1)  # no model trained yet


@pytest.mark.parametrize("arm", deep_cut_arm_names())
def test_deep_cut_arms_reuse_tonights_base(arm: str, tmp_path: Path) -> None:
    # base = svd (seeded): the model must not depend on whether svd was trained first
    overrides = {arm: {"base": "svd"}}
    alone = tiny_settings(home=str(tmp_path / "a"), arms=overrides)
    after_base = tiny_settings(home=str(tmp_path / "b"), arms=overrides)
    write_world(Path(alone.home))
    write_world(Path(after_base.home))
    train_arm(alone, DAY, arm)
    train_arm(after_base, DAY, "svd")
    train_arm(after_base, DAY, arm)
    users = np.arange(1, 22)
    fresh = load_model(Lake(alone.home), DAY, arm)
    reused = load_model(Lake(after_base.home), DAY, arm)
    assert reused.base.seed == fresh.base.seed == arm_seed(alone, DAY, "svd")  # type: ignore[attr-defined]
    expected = fresh.recommend(users, 6)
    pd.testing.assert_frame_equal(reused.recommend(users, 6), expected)
    # a rerun with the base present writes the same bytes
    first = Lake(after_base.home).read_bytes(Dataset.MODELS, DAY, model_path(arm))
    train_arm(after_base, DAY, arm)
    assert Lake(after_base.home).read_bytes(Dataset.MODELS, DAY, model_path(arm)) == first
    # a base artefact trained with other settings is not reused
    other = tiny_settings(home=after_base.home, arms={**overrides, "svd": {"factors": 1}})
    train_arm(other, DAY, "svd")
    train_arm(after_base, DAY, arm)
    pd.testing.assert_frame_equal(load_model(Lake(after_base.home), DAY, arm).recommend(users, 6), expected)


@pytest.mark.parametrize("blas_threads", [0, 1])
def test_train_and_candidates_cap_blas_threads(
    blas_threads: int, world_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arms.blas_threads caps the BLAS pools while an arm fits and scores (OpenBLAS's threaded LAPACK
    # spins when the other core is busy); 0 leaves the process's own setting (here 2 threads)
    from threadpoolctl import threadpool_info, threadpool_limits

    from deepcuts.models.recommenders.svd import SVDRecommender

    seen: list[set[int]] = []

    def spy(method: Any) -> Any:
        def wrapped(self: SVDRecommender, *args: Any) -> Any:
            seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
            return method(self, *args)

        return wrapped

    monkeypatch.setattr(SVDRecommender, "_fit", spy(SVDRecommender._fit))
    monkeypatch.setattr(SVDRecommender, "_score", spy(SVDRecommender._score))
    settings = tiny_settings(
        home=world_settings.home, arms={"enabled": ["svd"], "blas_threads": blas_threads}
    )
    with threadpool_limits(limits=2, user_api="blas"):
        train_arm(settings, DAY, "svd")
        candidates_shard(settings, DAY, 0, 1)
    assert len(seen) >= 2 and all(threads == {blas_threads or 2} for threads in seen)


def test_a_base_artefact_of_another_code_version_is_refit_not_reused(world_settings: Settings) -> None:
    """A class moved since tonight's base artefact was written (an upgrade between two runs of a night):
    loading it is a clear error, and the deep-cut arm fits a fresh base instead of failing."""
    lake = Lake(world_settings.home)
    train_arm(world_settings, DAY, "item_cf")
    train_arm(world_settings, DAY, "long_tail")
    users = np.arange(1, 22)
    expected = load_model(lake, DAY, "long_tail").recommend(users, 5)
    stale = lake.read_bytes(Dataset.MODELS, DAY, model_path("item_cf")).replace(
        b"deepcuts.models.",
        b"deepcuts.modelz.",  # same length: still a valid pickle, of a missing module
    )
    lake.write_bytes(Dataset.MODELS, DAY, model_path("item_cf"), stale)
    with pytest.raises(ValueError, match=r"another code version.*retrain the model"):
        load_model(lake, DAY, "item_cf")
    train_arm(world_settings, DAY, "long_tail")
    pd.testing.assert_frame_equal(load_model(lake, DAY, "long_tail").recommend(users, 5), expected)


def test_no_blas_library_loads_after_train_caps_the_threads() -> None:
    """``blas_threads()`` caps only the BLAS libraries already loaded when it is entered: a library first
    loaded inside a fit (scipy.linalg brings its own OpenBLAS) would run multi-threaded and change the
    EASE^R weights. In a fresh process, as ``deepcuts step train`` runs, every BLAS library a fit uses
    must be loaded by the time the step module and the arm classes are imported."""
    import subprocess
    import sys

    code = """
import numpy as np, pandas as pd
from threadpoolctl import threadpool_info
import deepcuts.pipelines.train
from deepcuts.arms import arm_names
from deepcuts.models.recommenders.registry import arm_class
for arm in arm_names():
    arm_class(arm)
def blas():
    return sorted(lib["filepath"] for lib in threadpool_info() if lib["user_api"] == "blas")
before = blas()
rng = np.random.default_rng(0)
frame = pd.DataFrame({"user_id": rng.integers(0, 40, 400), "item_id": rng.integers(0, 30, 400),
                      "rating": rng.integers(1, 6, 400).astype("float32")})
frame = frame.drop_duplicates(["user_id", "item_id"])
items = pd.DataFrame({"item_id": np.arange(30), "title": "t", "genres": [("Drama",)] * 30})
for arm in ("item_cf", "svd"):
    arm_class(arm)(seed=1).fit(frame, items)
print(before == blas(), before, blas())
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("True"), out.stdout
