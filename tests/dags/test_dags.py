"""DAG integrity: the DAG files parse, and the nightly DAG has the wiring operators rely on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(airflow_db: Path):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert {"deepcuts_nightly", "deepcuts_reports", "deepcuts_weekly"} <= set(dagbag.dag_ids)


def test_nightly_schedule_retries_and_tags(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.get_dag("deepcuts_nightly")
    assert dag.max_active_runs == 1
    assert "deepcuts" in dag.tags
    assert set(dag.params.keys()) >= {"run_date", "arms", "n_shards"}
    for t in dag.tasks:
        assert t.retries == 2, f"{t.task_id} has {t.retries} retries"
        assert t.on_failure_callback, f"{t.task_id} has no failure notifier"
    assert dag.get_task("publish").pool == "deepcuts_publish"


def test_retries_come_from_the_airflow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from deepcuts.airflow_support import retry_args

    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    assert retry_args() == {"retries": 2, "retry_delay": timedelta(minutes=5)}
    monkeypatch.setenv("DEEPCUTS_AIRFLOW__TASK_RETRIES", "0")
    monkeypatch.setenv("DEEPCUTS_AIRFLOW__QUICK_RETRY_DELAY_MINUTES", "1")
    assert retry_args(quick=True) == {"retries": 0, "retry_delay": timedelta(minutes=1)}
    monkeypatch.setenv("DEEPCUTS_TASK_RETRIES", "0")  # the old variable: refused, not silently ignored
    with pytest.raises(ValueError, match="DEEPCUTS_AIRFLOW__TASK_RETRIES"):
        retry_args()


def test_parsing_the_dag_files_imports_no_pandas() -> None:
    """Parsing builds the settings (retries) but stays at the cost of importing Airflow: no pandas,
    numpy or pyarrow (a fresh process, as the dag-processor parses a file)."""
    import subprocess
    import sys

    paths = sorted(str(p) for p in DAGS_FOLDER.glob("*.py"))
    code = (
        f"import runpy, sys\nfor path in {paths!r}:\n    runpy.run_path(path)\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def _downstream(dag, task_id: str) -> set[str]:  # type: ignore[no-untyped-def]
    return set(dag.get_task(task_id).downstream_task_ids)


def test_nightly_edges(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.get_dag("deepcuts_nightly")
    assert "ingest" in _downstream(dag, "plan")
    assert "train" in _downstream(dag, "arms_of")
    assert "candidates" in _downstream(dag, "train")
    assert "score" in _downstream(dag, "candidates")
    # the bandit's update needs only ingest's feedback: beside train, and assign waits for both
    assert "bandit_update" in _downstream(dag, "ingest")
    assert {"assign"} == _downstream(dag, "bandit_update")
    assert "assign" in _downstream(dag, "score")
    assert {"evaluate", "ab_analysis", "ope"} <= _downstream(dag, "assign")
    for check in ("evaluate", "ab_analysis", "ope"):
        assert "monitor" in _downstream(dag, check)
    # the report reads only the lake: beside publish, so a rejected publish does not skip it
    assert _downstream(dag, "monitor") == {"publish", "report"}
    assert _downstream(dag, "publish") == set()


def test_mapped_tasks(dagbag) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dagbag.get_dag("deepcuts_nightly")
    for task_id in ("train", "candidates", "score"):
        assert isinstance(dag.get_task(task_id), MappedOperator), task_id


def test_report_dag_is_triggered_by_the_serving_asset(dagbag) -> None:  # type: ignore[no-untyped-def]
    from deepcuts.airflow_support import SERVING_TABLES

    nightly = dagbag.get_dag("deepcuts_nightly")
    assert SERVING_TABLES in nightly.get_task("publish").outlets
    reports = dagbag.get_dag("deepcuts_reports")
    assert list(reports.timetable.asset_condition.objects) == [SERVING_TABLES]


def test_weekly_review_runs_sundays_and_reads_the_nightly_report(dagbag) -> None:  # type: ignore[no-untyped-def]
    from deepcuts.airflow_support import NIGHTLY_REPORT, WEEKLY_REVIEW

    weekly = dagbag.get_dag("deepcuts_weekly")
    assert weekly.timetable.expression in ("@weekly", "0 0 * * 0")
    assert weekly.catchup is False and "run_date" in weekly.params
    task = weekly.get_task("weekly_review")
    assert NIGHTLY_REPORT in task.inlets and WEEKLY_REVIEW in task.outlets
    assert task.retries == 2 and task.on_failure_callback
    # the same weekly run re-tunes the arms, independently of the review
    assert weekly.has_task("tune") and not weekly.get_task("tune").upstream_task_ids
    assert weekly.params["tune"] is True


def test_a_weekly_run_reviews_the_nights_before_its_date() -> None:
    from deepcuts.airflow_support import last_night_of_week

    # The Sunday-midnight run of 2026-01-11 reviews the week up to Saturday 2026-01-10.
    assert last_night_of_week({"ds": "2026-01-11"}) == "2026-01-10"
    assert last_night_of_week({"ds": "2026-01-11"}, "2026-01-04") == "2026-01-04"


def test_dag_files_import_nothing_heavy_at_top_level() -> None:
    heavy = {"pandas", "numpy", "pyarrow", "scipy", "lightfm", "great_expectations"}
    heavy |= {"deepcuts.pipelines", "deepcuts.models", "pipelines", "models"}  # ours, installed or bare
    for path in DAGS_FOLDER.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                is_heavy = any(name == h or name.startswith(h + ".") for h in heavy)
                assert not is_heavy, f"{path.name} imports {name} at top level"


#: Tasks of the nightly DAG that wire the run (plan, the lists the mapped tasks expand over); every other
#: task is one step of the registry.
WIRING_TASKS = {"plan", "arms_of", "shards_of"}


def _task_bodies() -> dict[str, ast.FunctionDef]:
    """The ``@task`` functions of dags/deepcuts_nightly.py by name."""
    tree = ast.parse((DAGS_FOLDER / "deepcuts_nightly.py").read_text())
    return {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and any("task" in ast.unparse(d) for d in node.decorator_list)
    }


def test_nightly_tasks_are_the_step_registry(dagbag) -> None:  # type: ignore[no-untyped-def]
    """One list of steps: the DAG runs exactly ``deepcuts.pipelines.nightly.STEPS``, each task calling its
    registry function, mapped per arm / per shard as registered, in an order ``run_night`` may follow."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from deepcuts.pipelines.nightly import STEPS

    dag = dagbag.get_dag("deepcuts_nightly")
    assert set(dag.task_ids) - WIRING_TASKS == {s.name for s in STEPS}
    bodies = _task_bodies()
    for i, step in enumerate(STEPS):
        task = dag.get_task(step.name)
        assert isinstance(task, MappedOperator) == (step.fanout != "once"), step.name
        calls = {
            (node.module, alias.name)
            for node in ast.walk(bodies[step.name])
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert (step.module, step.function) in calls, (
            f"task {step.name} does not import its registry function"
        )
        called = {
            n.func.id
            for n in ast.walk(bodies[step.name])
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        assert step.function in called, f"task {step.name} does not call {step.function}"
        # run_night runs STEPS in order: no later step may be upstream of an earlier one in the DAG
        later = {s.name for s in STEPS[i + 1 :]}
        assert not later & task.get_flat_relative_ids(upstream=True), step.name


def test_side_by_side_steps_are_parallel_in_the_dag(dagbag) -> None:  # type: ignore[no-untyped-def]
    """``deepcuts bench`` runs the SIDE_BY_SIDE steps together: the DAG must really run them side by side
    (the same upstream registry steps, none upstream of another) and they must follow each other in the
    registry."""
    from deepcuts.pipelines.nightly import SIDE_BY_SIDE, STEP_NAMES, STEPS, stages

    dag = dagbag.get_dag("deepcuts_nightly")
    for group in SIDE_BY_SIDE:
        # wiring tasks (plan, arms_of) sit between ingest and train: compare the registry steps upstream
        upstreams = {
            frozenset(dag.get_task(name).get_flat_relative_ids(upstream=True) - WIRING_TASKS)
            for name in group
        }
        assert len(upstreams) == 1, group
        for name in group:
            assert not (group - {name}) & dag.get_task(name).get_flat_relative_ids(upstream=True), name
        positions = sorted(STEP_NAMES.index(name) for name in group)
        assert positions == list(range(positions[0], positions[0] + len(group))), group
    assert [tuple(s.name for s in stage) for stage in stages() if len(stage) > 1] == [
        ("train", "bandit_update"),
        ("evaluate", "ab_analysis", "ope"),
        ("publish", "report"),
    ]
    assert tuple(s for stage in stages() for s in stage) == STEPS  # every step once, in order
