"""The night's plan (pipelines/plan.py): the arms are decided once and every step follows them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from deepcuts.arms import arm_names
from deepcuts.contracts import C, Dataset
from deepcuts.pipelines.nightly import run_night
from deepcuts.pipelines.plan import plan_arms, with_arms
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings, load_settings

D1 = date(2026, 3, 1)


def test_plan_is_in_registry_order_and_keeps_the_ab_control_arm(settings: Settings) -> None:
    assert plan_arms(settings, D1, ["long_tail", "item_cf", "item_cf"]) == ("svd", "item_cf", "long_tail")
    assert plan_arms(settings, D1) == arm_names()  # default: arms.enabled
    graph_control = load_settings(home=settings.home, ab={"baseline_arm": "graph"})
    assert plan_arms(graph_control, D1, ["popularity", "lightfm"]) == ("lightfm", "graph", "popularity")


def test_plan_refuses_unknown_arms_and_a_night_without_a_bandit_arm(settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"unknown arms \['knn'\]"):
        plan_arms(settings, D1, ["svd", "knn"])
    only_graph = load_settings(home=settings.home, bandit={"arms": ["graph"]})
    with pytest.raises(ValueError, match="hold no bandit arm"):
        plan_arms(only_graph, D1, ["popularity"])


def test_with_arms_narrows_only_the_enabled_arms(settings: Settings) -> None:
    narrowed = with_arms(settings, ["item_cf", "svd"])
    assert narrowed.arms.enabled == ("svd", "item_cf")
    assert narrowed.model_dump(exclude={"arms"}) == settings.model_dump(exclude={"arms"})
    assert narrowed.arms.model_dump(exclude={"enabled"}) == settings.arms.model_dump(exclude={"enabled"})
    assert with_arms(settings, arm_names()) is settings


def test_the_dags_plan_and_task_settings_agree(settings: Settings) -> None:
    from deepcuts.airflow_support import night_plan, settings_of

    plan = night_plan({"arms": ["popularity", "graph"], "n_shards": 2}, "2026-03-01")
    assert plan == {
        "run_date": "2026-03-01",
        "arms": ["svd", "graph", "popularity"],
        "train_order": ["svd", "graph", "popularity"],
        "n_shards": 2,
        "shards": [0, 1],
    }
    assert settings_of(plan).arms.enabled == ("svd", "graph", "popularity")
    # the param's default (null) is the settings' arms
    default = night_plan({"arms": None, "n_shards": None}, "2026-03-01")
    assert default["arms"] == list(arm_names()) and default["n_shards"] == settings.arms.user_shards


def test_a_night_with_a_subset_of_arms_completes_and_publishes_only_those(tmp_path: Path) -> None:
    from deepcuts.pipelines import serving
    from deepcuts.pipelines.simulate_worlds import prepare_world

    settings = load_settings(
        home=str(tmp_path / "lake"),
        seed=5,
        world={"users": 40, "items": 120, "history_days": 20, "ratings_per_user": 12.0, "seed": 5},
        arms={"candidates_n": 60, "user_shards": 2},
        # a tiny world's items miss the served-quality target (3.8): a monitoring matter, not the arms';
        # missing served lists and the arm balance still block the publish
        monitor={"critical_checks": ["served_lists_present", "arm_floor"]},
    )
    day = prepare_world(settings, "synthetic").first_night
    out = run_night(settings, day, arms=["long_tail", "item_cf"], skip=["report"])
    planned = ["svd", "item_cf", "long_tail"]  # svd: the A/B control arm (ab.baseline_arm)
    results = out["results"]
    assert list(results["train"]) == planned
    assert all(set(shard["rows"]) == set(planned) for shard in results["candidates"])
    assert all(list(shard["arms"]) == sorted(planned) for shard in results["score"])
    assert results["assign"]["arms"] == planned and results["assign"]["arms_dropped"] == [
        "lightfm", "graph", "serendipity",
    ]  # fmt: skip
    assert results["publish"]["status"] == "published"
    lake = Lake(settings.home)
    assert {p.split("/")[0] for p in lake.parts(Dataset.CANDIDATES, day)} == set(planned)
    evaluated = lake.read_df(Dataset.EVAL_OFFLINE, day)
    assert set(evaluated[C.ARM]) == set(planned)
    served = lake.read_df(Dataset.SERVED_LISTS, day)
    engine = serving.serving_engine(settings)
    query = sa.text("SELECT DISTINCT arm FROM current_recommendations")
    try:
        with engine.connect() as conn:
            published = {row[0] for row in conn.execute(query)}
    finally:
        engine.dispose()
    assert published == set(served[C.ARM]) <= set(planned)
    assert "svd" in published  # control users get the baseline arm's lists


@pytest.mark.slow
def test_the_dag_runs_a_night_with_a_subset_of_arms(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug this plan fixes: before it, ``train`` followed the ``arms`` param but ``candidates``
    looped over the settings, so a run triggered with a subset of arms failed (MissingDataError)."""
    from airflow.dag_processing.dagbag import DagBag

    from deepcuts.pipelines.simulate_worlds import prepare_world

    env = {
        "DEEPCUTS_HOME": str(tmp_path / "lake"),
        "DEEPCUTS_WORLD__USERS": "40",
        "DEEPCUTS_WORLD__ITEMS": "120",
        "DEEPCUTS_WORLD__HISTORY_DAYS": "20",
        "DEEPCUTS_ARMS__USER_SHARDS": "2",
        "DEEPCUTS_ARMS__CANDIDATES_N": "60",
        # as in the run_night test above: the tiny world misses the served-quality target
        "DEEPCUTS_MONITOR__CRITICAL_CHECKS": '["served_lists_present", "arm_floor"]',
        "DEEPCUTS_AIRFLOW__TASK_RETRIES": "0",  # fail at once instead of waiting out retry delays
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    day = prepare_world(load_settings(), "synthetic").first_night
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags")).get_dag("deepcuts_nightly")
    run = dag.test(
        logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC),
        run_conf={"arms": ["long_tail", "item_cf"]},
    )
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(getattr(run.state, "value", run.state)) == "success", states
    assert sorted(i for (task, i) in states if task == "train") == [0, 1, 2]  # svd, item_cf, long_tail
    lake = Lake(str(tmp_path / "lake"))
    from deepcuts.pipelines.train import model_path

    trained = {arm for arm in arm_names() if lake.exists(Dataset.MODELS, day, model_path(arm))}
    assert trained == {"svd", "item_cf", "long_tail"}
    assert {p.split("/")[0] for p in lake.parts(Dataset.CANDIDATES, day)} == trained
    assert set(lake.read_df(Dataset.SERVED_LISTS, day)[C.ARM]) <= {"svd", "item_cf", "long_tail"}


def test_train_starts_with_the_deep_cut_arms_bases(settings: Settings) -> None:
    from deepcuts.airflow_support import train_arms_of
    from deepcuts.pipelines.plan import train_order

    # long_tail and serendipity re-weight item_cf (arms.<arm>.base): item_cf first, the rest in plan order
    assert train_order(settings, arm_names()) == (
        "item_cf",
        *(a for a in arm_names() if a != "item_cf"),
    )
    assert train_order(settings, ("svd", "graph", "popularity")) == ("svd", "graph", "popularity")
    plan = {"arms": ["svd", "item_cf", "long_tail"], "train_order": ["item_cf", "svd", "long_tail"]}
    assert train_arms_of(plan) == ["item_cf", "svd", "long_tail"]
    assert train_arms_of({"arms": ["svd", "graph"]}) == ["svd", "graph"]  # a plan from before the key
