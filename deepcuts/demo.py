"""``make run``: the main job on the embedded default, through the real Airflow DAG.

Builds the synthetic world (once), then for each night runs ``deepcuts_nightly`` with ``dag.test()``
against a local SQLite metadata DB under the lake, and between nights lets the simulator play the app:
it serves the published lists to the world's users and writes their feedback to the landing zone,
which the next night ingests. Ends with a summary a person can read.

This module imports Airflow, so it lives beside the DAG support code, not in ``pipelines/``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from deepcuts.settings import Settings

log = logging.getLogger("deepcuts.demo")

DAG_ID = "deepcuts_nightly"


@dataclass
class NightSummary:
    run_date: str
    seconds: float
    state: str
    feedback: dict[str, Any] = field(default_factory=dict)


def default_dags_folder() -> Path:
    """The repository's ``dags/`` (editable installs and the repo checkout), or Airflow's setting."""
    configured = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "dags"


def configure_airflow(home: Path, dags_folder: Path, quiet: bool = True) -> Path:
    """Point Airflow at a SQLite metadata DB under the lake. Must run before Airflow is imported."""
    if "airflow" in sys.modules:
        raise RuntimeError("configure_airflow() must run before Airflow is imported in this process")
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # dag.test() would sit out the retry delays of a failing task; fail the demo at once.
            "DEEPCUTS_TASK_RETRIES": "0",
        }
    )
    if quiet:
        # Task logs of a dag.test() run go to the terminal; keep warnings and our own progress lines.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", os.urandom(32).hex())
    return airflow_home


def migrate_metadata_db(airflow_home: Path) -> None:
    """``airflow db migrate`` in a subprocess (idempotent; a second call is a no-op)."""
    log_file = airflow_home / "db-migrate.log"
    with log_file.open("wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed (exit {result.returncode}); see {log_file}")


#: What ``--fresh`` keeps in the lake: the generated world (slow to rebuild, same bytes anyway) and the
#: Airflow metadata DB (``dag.test`` reruns a logical date cleanly).
KEPT_ON_FRESH = ("world", "airflow")


def first_demo_night(live_run_date: date | None, first_run_date: date) -> int:
    """Index (0 = the world's first run date) of the night a demo starts at: after the newest published
    night when the lake already holds an earlier demo, so a second ``make run`` continues the story
    (its app has been serving that night's lists) instead of replaying old nights against newer lists."""
    if live_run_date is None or live_run_date < first_run_date:
        return 0
    return (live_run_date - first_run_date).days + 1


def reset_demo_lake(home: Path) -> list[str]:
    """Remove everything in the demo lake but :data:`KEPT_ON_FRESH`; returns the removed names."""
    removed = []
    for child in sorted(home.iterdir()) if home.exists() else []:
        if child.name in KEPT_ON_FRESH:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
        removed.append(child.name)
    return removed


def run_demo(settings: Settings, nights: int, dags_folder: Path, fresh: bool = False) -> list[NightSummary]:
    if settings.source.dataset != "synthetic":
        raise ValueError(
            f"the demo runs on the synthetic world; source.dataset is {settings.source.dataset!r} "
            "(unset DEEPCUTS_SOURCE__DATASET or use `deepcuts simulate --world movielens`)"
        )
    if not settings.is_local_home:
        raise ValueError(f"the demo needs a local lake; DEEPCUTS_HOME is {settings.home!r}")
    home = Path(settings.home).resolve()
    if fresh:
        removed = reset_demo_lake(home)
        print(f"deepcuts: --fresh: removed {', '.join(removed) or 'nothing'} from {home}", flush=True)
    # Tasks read their settings from the environment: pin the lake to the absolute path.
    os.environ["DEEPCUTS_HOME"] = str(home)
    airflow_home = configure_airflow(home, dags_folder)
    print(f"deepcuts: Airflow metadata DB under {airflow_home}", flush=True)
    migrate_metadata_db(airflow_home)

    from airflow.dag_processing.dagbag import DagBag

    from pipelines.simulate import live_lists, prepare_world, serve_day

    print(
        f"deepcuts: synthetic world in {settings.source_path} "
        f"({settings.world.users} users x {settings.world.items} items; generated once, then reused)",
        flush=True,
    )
    world = prepare_world(settings, "synthetic")  # generates it once; same seed, same bytes
    meta = json.loads((Path(settings.source_path) / "world.json").read_text())
    first = date.fromisoformat(meta["first_run_date"])

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    summaries: list[NightSummary] = []
    previous = live_lists(settings)
    start_night = first_demo_night(previous[0] if previous else None, first)
    if start_night:
        print(
            f"deepcuts: this lake already ran the demo up to {previous[0]} (live lists {previous[1]}); "
            f"continuing with the next {nights} nights (`deepcuts demo --fresh` starts over)",
            flush=True,
        )
    for night in range(start_night, start_night + nights):
        run_date = first + timedelta(days=night)
        step = f"{night - start_night + 1}/{nights}"
        print(f"deepcuts: night {night + 1} ({step}, {run_date}): running {DAG_ID} ...", flush=True)
        start = time.monotonic()
        dag_run = dag.test(logical_date=datetime(run_date.year, run_date.month, run_date.day, tzinfo=UTC))
        state = str(getattr(dag_run.state, "value", dag_run.state))
        seconds = time.monotonic() - start
        if not dag_run.get_task_instances():
            raise RuntimeError(
                f"{DAG_ID} for {run_date} created no task instances "
                "(is the run date before the DAG's start_date?)"
            )
        if state != "success":
            failed = [ti.task_id for ti in dag_run.get_task_instances() if ti.state == "failed"]
            raise RuntimeError(
                f"{DAG_ID} for {run_date} ended {state}; failed tasks: {failed}. "
                f"Task logs are above; rerun with `make run` once fixed (every step is idempotent)."
            )
        live = live_lists(settings)
        if live is None:
            raise RuntimeError(f"{DAG_ID} for {run_date} succeeded but the serving DB has no live version")
        print(
            f"deepcuts: night {night + 1} done in {seconds:.0f}s (live lists: {live[1]}); "
            "the simulated app serves the next day ...",
            flush=True,
        )
        feedback = serve_day(settings, world, night + 1, run_date, live)
        summaries.append(NightSummary(run_date.isoformat(), seconds, state, feedback))
    return summaries
