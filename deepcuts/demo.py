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
REPORTS_DAG_ID = "deepcuts_reports"
WEEKLY_DAG_ID = "deepcuts_weekly"


class DemoNightFailedError(RuntimeError):
    """A night of the demo did not succeed. Its task logs (with the traceback) are already on the
    terminal, so ``deepcuts demo`` ends with this one line instead of a second traceback."""


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


#: Run ids of the demo's runs: ``deepcuts_demo__2026-01-08`` names the night, where ``dag.test()`` would
#: name the wall-clock time of the call (``manual__2026-11-30T12:43:56...``).
DEMO_RUN_ID_PREFIX = "deepcuts_demo"

#: What the demo and ``deepcuts ui`` write into ``airflow.cfg`` (other keys keep Airflow's defaults).
#: A file, not only environment variables, so that any ``airflow`` command run with this
#: ``AIRFLOW_HOME`` (``airflow standalone``, ``airflow dags list``) sees our DAGs and no examples.
AIRFLOW_CFG_KEYS: dict[str, dict[str, str]] = {
    "core": {
        "load_examples": "False",
        # A paused DAG is never scheduled on its own: the UI's scheduler must not start a real-time
        # nightly run for today's date against the demo's simulated calendar.
        "dags_are_paused_at_creation": "True",
        # The LocalExecutor starts this many worker processes; a demo needs few (Airflow's 32 fill
        # a two-core laptop with idle workers).
        "parallelism": "4",
    },
}


def airflow_cfg_values(airflow_home: Path, dags_folder: Path) -> dict[str, dict[str, str]]:
    """The ``airflow.cfg`` values of a demo ``AIRFLOW_HOME``: our DAGs, its SQLite DB, no examples."""
    values = {section: dict(keys) for section, keys in AIRFLOW_CFG_KEYS.items()}
    values["core"]["dags_folder"] = str(dags_folder)
    values["database"] = {"sql_alchemy_conn": f"sqlite:///{airflow_home / 'airflow.db'}"}
    return values


def write_airflow_cfg(airflow_home: Path, dags_folder: Path) -> Path:
    """Write (or update) ``airflow.cfg`` with :func:`airflow_cfg_values`; other keys are kept.

    The JWT secret is generated once and kept, so that the api-server, the scheduler and the demo's
    ``dag.test()`` runs of one ``AIRFLOW_HOME`` all sign and accept the same tokens.
    """
    import configparser

    path = airflow_home / "airflow.cfg"
    cfg = configparser.ConfigParser(interpolation=None)
    if path.exists():
        cfg.read(path)
    for section, keys in airflow_cfg_values(airflow_home, dags_folder).items():
        if not cfg.has_section(section):
            cfg.add_section(section)
        for key, value in keys.items():
            cfg.set(section, key, value)
    if not cfg.has_section("api_auth"):
        cfg.add_section("api_auth")
    if not cfg.get("api_auth", "jwt_secret", fallback=""):
        cfg.set("api_auth", "jwt_secret", os.urandom(32).hex())
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as out:
        out.write("# Written by deepcuts (deepcuts/demo.py); keys it does not set keep Airflow's defaults.\n")
        cfg.write(out)
    tmp.replace(path)
    return path


def configure_airflow(home: Path, dags_folder: Path, quiet: bool = True) -> Path:
    """Point Airflow at a SQLite metadata DB under the lake. Must run before Airflow is imported."""
    if "airflow" in sys.modules:
        raise RuntimeError("configure_airflow() must run before Airflow is imported in this process")
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    write_airflow_cfg(airflow_home, dags_folder)
    # The environment repeats the file: it wins over an AIRFLOW__* variable of the caller's shell.
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW_CONFIG": str(airflow_home / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        }
    )
    os.environ.pop("AIRFLOW__API_AUTH__JWT_SECRET", None)  # the file's secret, shared by every process
    if quiet:
        # Task logs of a dag.test() run go to the terminal; keep warnings and our own progress lines.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
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


def demo_run_id(run_date: date) -> str:
    """The run id of the demo's run for ``run_date`` (the same for every DAG: one run per DAG a night)."""
    return f"{DEMO_RUN_ID_PREFIX}__{run_date.isoformat()}"


def run_dag_for_night(dag: Any, run_date: date, conf: dict[str, Any] | None = None) -> Any:
    """``dag.test()`` for one night, recorded as an operator expects to read it in the UI.

    ``dag.test()`` (Airflow 3.3) names its run after the wall-clock time and records the logical date
    as the run's start date, so the UI showed 331-day runs named after today. Here the run id names
    the night (:func:`demo_run_id`) and the start date is when the run really started.
    """
    from unittest import mock

    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.utils.session import create_session

    run_id = demo_run_id(run_date)
    started = timezone.utcnow()
    # dag.test() takes no run id: it asks DagRun.generate_run_id for one (and only for its own run).
    with mock.patch.object(DagRun, "generate_run_id", staticmethod(lambda **_: run_id)):
        logical_date = datetime(run_date.year, run_date.month, run_date.day, tzinfo=UTC)
        dag_run = dag.test(logical_date=logical_date, run_conf=conf)
    with create_session() as session:
        row = session.get(DagRun, dag_run.id)
        if row is not None:
            row.start_date = started
    return dag_run


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
    # dag.test() would sit out the retry delays of a failing task; fail the demo at once.
    os.environ["DEEPCUTS_AIRFLOW__TASK_RETRIES"] = "0"
    airflow_home = configure_airflow(home, dags_folder)
    print(f"deepcuts: Airflow metadata DB under {airflow_home}", flush=True)
    migrate_metadata_db(airflow_home)

    from airflow.dag_processing.dagbag import DagBag

    from deepcuts.pipelines.simulate import live_lists, serve_day
    from deepcuts.pipelines.simulate_worlds import prepare_world

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
    reports_dag = bag.get_dag(REPORTS_DAG_ID)
    weekly_dag = bag.get_dag(WEEKLY_DAG_ID)
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
        dag_run = run_dag_for_night(dag, run_date)
        state = str(getattr(dag_run.state, "value", dag_run.state))
        seconds = time.monotonic() - start
        if not dag_run.get_task_instances():
            raise RuntimeError(
                f"{DAG_ID} for {run_date} created no task instances "
                "(is the run date before the DAG's start_date?)"
            )
        if state != "success":
            failed = [ti.task_id for ti in dag_run.get_task_instances() if ti.state == "failed"]
            raise DemoNightFailedError(
                f"{DAG_ID} for {run_date} ended {state}; failed tasks: {failed}. "
                f"Task logs are above; rerun with `make run` once fixed (every step is idempotent)."
            )
        # dag.test() runs no scheduler, so nothing reacts to publish's asset event here: run the
        # asset-triggered index rebuild the same way, so the UI shows its runs beside the nightly ones.
        reports_run = run_dag_for_night(reports_dag, run_date)
        if str(getattr(reports_run.state, "value", reports_run.state)) != "success":
            raise DemoNightFailedError(f"{REPORTS_DAG_ID} for {run_date} ended {reports_run.state}")
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
    if summaries:
        # The weekly review of the nights so far (its page sits next to the nightly reports); the weekly
        # re-tuning is skipped here: it searches every arm's grid for minutes.
        last = date.fromisoformat(summaries[-1].run_date)
        weekly = run_dag_for_night(weekly_dag, last, conf={"run_date": last.isoformat(), "tune": False})
        if str(getattr(weekly.state, "value", weekly.state)) != "success":
            raise DemoNightFailedError(f"{WEEKLY_DAG_ID} for the week ending {last} ended {weekly.state}")
        print(f"deepcuts: weekly review of the week ending {last} written", flush=True)
    return summaries
