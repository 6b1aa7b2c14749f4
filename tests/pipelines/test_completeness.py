"""Completeness manifests across the night (issue 14): every step marks what it wrote, every step that
reads a partition of tonight refuses one whose writer did not finish, and a full night still reruns to
the same bytes."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from deepcuts.contracts import Dataset
from deepcuts.pipelines.nightly import run_night
from deepcuts.pipelines.storage import MANIFEST_DIR, IncompleteDataError, Lake
from deepcuts.settings import Settings, load_settings

D = date(2026, 3, 10)
SHARDS = 2


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """One full night (every step of the registry) on a tiny synthetic world, in two user shards."""
    from deepcuts.pipelines.world import generate_world

    home = tmp_path_factory.mktemp("completeness") / "lake"
    settings = load_settings(
        home=str(home),
        seed=3,
        world={"users": 60, "items": 200, "history_days": 30, "ratings_per_user": 12.0, "seed": 3},
        arms={"candidates_n": 60, "user_shards": SHARDS},
        monitor={"critical_checks": []},  # a tiny world's lists miss quality bars; publish them anyway
    )
    generate_world(settings.source_path, settings.world)
    run_night(settings, D)
    yield settings, home


def _manifest(settings: Settings, dataset: Dataset, scope: str = "all") -> Path:
    return Path(Lake(settings.home).file_path(dataset, D, f"{MANIFEST_DIR}/{scope}.json"))


def test_every_partition_of_the_night_has_its_manifest(night: tuple[Settings, Path]) -> None:
    settings, _ = night
    lake = Lake(settings.home)
    sharded = {Dataset.CANDIDATES, Dataset.SCORED, Dataset.RERANKED, Dataset.LIST_METRICS}
    for dataset in Dataset:
        if dataset in (Dataset.LANDING_FEEDBACK, Dataset.EXPERIMENTS, Dataset.PUBLISH, Dataset.MODELS):
            continue  # written by the app / not by run date / not in the lake / per arm (below)
        if not lake.run_dates(dataset):
            continue
        assert lake.run_dates(dataset) == [D], dataset
        parts = lake.require_complete(dataset, D)  # shards: every shard-NNNN manifest
        assert parts == lake.parts(dataset, D), dataset
        if dataset in sharded:
            assert not _manifest(settings, dataset).exists(), dataset
            assert {p.rsplit("/", 1)[-1] for p in parts} == {f"shard-{k:04d}" for k in range(SHARDS)}
    for arm in settings.arms.enabled:
        lake.require_complete(Dataset.MODELS, D, scope=arm)
    validation = lake.read_json(Dataset.VALIDATION, D, f"{MANIFEST_DIR}/all.json")
    assert set(validation["files"]) == {"summary.json"}  # files other than Parquet parts are listed too


def _train(s: Settings) -> Any:
    from deepcuts.pipelines.train import train_arm

    return train_arm(s, D, "popularity")


def _candidates(s: Settings) -> Any:
    from deepcuts.pipelines.candidates import candidates_shard

    return candidates_shard(s, D, 0, SHARDS)


def _score(s: Settings) -> Any:
    from deepcuts.pipelines.score import score_shard

    return score_shard(s, D, 1, SHARDS)


def _step(module: str, function: str) -> Callable[[Settings], Any]:
    def call(s: Settings) -> Any:
        import importlib

        return getattr(importlib.import_module(module), function)(s, D)

    return call


#: (reader, the upstream partition it must refuse, the manifest removed, the step the error names)
READERS = [
    pytest.param(_train, Dataset.INTERACTIONS, "all", "ingest", id="train<-interactions"),
    pytest.param(_candidates, Dataset.MODELS, "svd", "train", id="candidates<-models"),
    pytest.param(_candidates, Dataset.INTERACTIONS, "all", "ingest", id="candidates<-interactions"),
    pytest.param(_score, Dataset.ITEMS, "all", "ingest", id="score<-items"),
    pytest.param(_score, Dataset.MODELS, "svd", "train", id="score<-models(svd)"),
    pytest.param(
        _step("deepcuts.pipelines.bandit_update", "bandit_update"),
        Dataset.FEEDBACK_EVENTS,
        "all",
        "ingest",
        id="bandit_update<-feedback",
    ),
    pytest.param(
        _step("deepcuts.pipelines.assign", "assign"),
        Dataset.RERANKED,
        "shard-0001",
        "score",
        id="assign<-reranked",
    ),
    pytest.param(
        _step("deepcuts.pipelines.assign", "assign"),
        Dataset.BANDIT_POSTERIOR,
        "all",
        "bandit_update",
        id="assign<-posterior",
    ),
    pytest.param(
        _step("deepcuts.pipelines.evaluate", "evaluate_night"),
        Dataset.CANDIDATES,
        "shard-0000",
        "candidates",
        id="evaluate<-candidates",
    ),
    pytest.param(
        _step("deepcuts.pipelines.ab_analysis", "ab_analysis"),
        Dataset.FEEDBACK_EVENTS,
        "all",
        "ingest",
        id="ab_analysis<-feedback",
    ),
    pytest.param(
        _step("deepcuts.pipelines.ope", "ope"), Dataset.BANDIT_POLICY, "all", "assign", id="ope<-policy"
    ),
    pytest.param(
        _step("deepcuts.pipelines.monitor", "monitor"),
        Dataset.SERVED_LISTS,
        "all",
        "assign",
        id="monitor<-served",
    ),
    pytest.param(
        _step("deepcuts.pipelines.publish", "publish"),
        Dataset.ASSIGNMENTS,
        "all",
        "assign",
        id="publish<-assignments",
    ),
]


@pytest.mark.parametrize(("reader", "dataset", "scope", "writer"), READERS)
def test_a_reader_refuses_an_upstream_partition_whose_writer_did_not_finish(
    night: tuple[Settings, Path],
    reader: Callable[[Settings], Any],
    dataset: Dataset,
    scope: str,
    writer: str,
) -> None:
    """The writer was killed after its data files and before its manifest: the reader stops with an
    error naming the partition and the step to rerun, and writes nothing."""
    settings, _ = night
    manifest = _manifest(settings, dataset, scope)
    saved = manifest.read_bytes()
    manifest.unlink()
    try:
        with pytest.raises(IncompleteDataError) as err:
            reader(settings)
    finally:
        manifest.write_bytes(saved)
    message = str(err.value)
    assert f"{dataset.value} ({D}, {scope}) is incomplete" in message
    assert "no manifest" in message and f"rerun the {writer} step" in message


def test_a_reader_refuses_a_part_rewritten_by_a_run_that_did_not_finish(night: tuple[Settings, Path]) -> None:
    """A rerun of ingest killed after rewriting interactions (other bytes) leaves yesterday's manifest:
    train refuses the part whose size no longer matches."""
    settings, _ = night
    part = Path(Lake(settings.home).file_path(Dataset.INTERACTIONS, D, "part-0.parquet"))
    saved = part.read_bytes()
    part.write_bytes(saved + b"\0")
    try:
        with pytest.raises(IncompleteDataError, match=r"part-0 changed since the manifest .*ingest step"):
            _train(settings)
    finally:
        part.write_bytes(saved)


def test_the_report_says_a_partition_is_incomplete(night: tuple[Settings, Path]) -> None:
    """The report renders what it can (a missing section is not a failed night) and says why a section
    is absent: the served lists' writer did not finish."""
    from deepcuts.pipelines.report import report

    settings, _ = night
    manifest = _manifest(settings, Dataset.SERVED_LISTS)
    saved = manifest.read_bytes()
    manifest.unlink()
    try:
        report(settings, D)
        stats = Lake(settings.home).read_json(Dataset.REPORTS, D, "stats.json")
    finally:
        manifest.write_bytes(saved)
        report(settings, D)
    assert "served" not in stats
    assert "served_lists" in stats["served_error"] and "is incomplete: no manifest" in stats["served_error"]


def _fingerprint(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


def _volatile(path: str) -> bool:
    """What a rerun may change, and why: the fit time in each model's ``meta.json`` (and so that file's
    size in the arm's manifest), the GX Data Docs pages (re-rendered) and the SQLite serving DB (a
    republish of the same lists changes no row, but SQLite rewrites pages). Model artefacts, every
    Parquet part and every other manifest must not change."""
    in_models = path.startswith("models/")
    return (
        (in_models and (path.endswith("/meta.json") or f"/{MANIFEST_DIR}/" in path))
        or path.startswith("reports/gx/")
        or path == "serving/serving.db"
    )


def test_a_full_night_reruns_to_the_same_bytes(night: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, home = night
    copy = tmp_path / "lake"
    shutil.copytree(home, copy)
    rerun = settings.model_copy(update={"home": str(copy)})
    before = _fingerprint(copy)
    run_night(rerun, D)
    after = _fingerprint(copy)
    assert sorted(after) == sorted(before)  # no file added or removed
    changed = sorted(k for k in before if before[k] != after[k] and not _volatile(k))
    assert changed == []
    assert any(k.endswith("/model.pkl") for k in before)  # the artefacts are compared
    manifests = [k for k in before if f"/{MANIFEST_DIR}/" in k and not _volatile(k)]
    assert len(manifests) >= 20  # the manifests themselves are part of the promise
