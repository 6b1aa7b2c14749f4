"""The little that the DAG files share: assets, the run's plan, run-date resolution and the failure notifier.

Kept out of ``dags/`` so DAG files stay pure wiring, and out of ``pipelines/`` because it imports Airflow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseNotifier

if TYPE_CHECKING:
    from deepcuts.settings import AirflowSettings, Settings

log = logging.getLogger("deepcuts.airflow")

#: The serving tables (the current version the app reads), updated by the nightly publish.
SERVING_TABLES = Asset(name="deepcuts_serving_tables", uri="deepcuts://serving/current", group="deepcuts")
#: The nightly HTML report.
NIGHTLY_REPORT = Asset(name="deepcuts_nightly_report", uri="deepcuts://reports/nightly", group="deepcuts")
#: The weekly diversity and performance review (``deepcuts_weekly``), built from the nightly outputs.
WEEKLY_REVIEW = Asset(name="deepcuts_weekly_review", uri="deepcuts://reports/weekly", group="deepcuts")

PUBLISH_POOL = "deepcuts_publish"

#: ``start_date`` of the deepcuts DAGs: early, so manual runs and backfills for any historical run date
#: (MovieLens replays start in 1997) get task instances; each DAG sets ``catchup=False`` so that the
#: scheduler does not create the missed runs.
EARLIEST_START = datetime(1995, 1, 1, tzinfo=UTC)

#: The variable that used to set the retries (before the ``airflow`` settings section); refused, so that
#: an old deployment's setting is not silently ignored.
OLD_RETRIES_ENV = "DEEPCUTS_TASK_RETRIES"


def dag_settings() -> AirflowSettings:
    """The ``airflow`` settings section of this process (``load_settings()``: defaults, the settings file,
    ``DEEPCUTS_AIRFLOW__*``), read when a DAG file is parsed. Light: it imports no pandas (the settings
    validate against name lists that import nothing heavy)."""
    from deepcuts.settings import load_settings

    if OLD_RETRIES_ENV in os.environ:
        raise ValueError(
            f"{OLD_RETRIES_ENV} is no longer read; set DEEPCUTS_AIRFLOW__TASK_RETRIES "
            "(or airflow.task_retries in the settings file) instead, and unset it"
        )
    return load_settings().airflow


def retry_args(*, quick: bool = False) -> dict[str, Any]:
    """The ``retries`` and ``retry_delay`` of a DAG's ``default_args``, from one settings load:
    ``airflow.task_retries`` and ``airflow.retry_delay_minutes`` (nightly, weekly) or, with ``quick``,
    ``airflow.quick_retry_delay_minutes`` (intraday, reports)."""
    section = dag_settings()
    minutes = section.quick_retry_delay_minutes if quick else section.retry_delay_minutes
    return {"retries": section.task_retries, "retry_delay": timedelta(minutes=minutes)}


def run_date_of(plan: dict[str, Any]) -> date:
    """The run date of a plan dict (XCom carries it as ISO text) as a ``date`` for the step functions."""
    return date.fromisoformat(plan["run_date"])


def night_plan(params: Mapping[str, Any], run_date: str) -> dict[str, Any]:
    """The plan of one DAG run, decided once by its ``plan`` task (an XCom every task receives).

    ``arms``: the ``arms`` param (default ``arms.enabled``) through :func:`deepcuts.pipelines.plan.plan_arms`
    (registry order, the A/B control arm always in); ``train_order``: the same arms in the order the
    ``train`` tasks are mapped (:func:`deepcuts.pipelines.plan.train_order`: the deep-cut arms' bases
    first); ``n_shards``: the param or ``arms.user_shards``.
    """
    from deepcuts.pipelines.plan import plan_arms, train_order
    from deepcuts.settings import load_settings

    settings = load_settings()
    arms = plan_arms(settings, date.fromisoformat(run_date), params.get("arms"))
    n_shards = int(params.get("n_shards") or settings.arms.user_shards)
    return {
        "run_date": run_date,
        "arms": list(arms),
        "train_order": list(train_order(settings, arms)),
        "n_shards": n_shards,
        "shards": list(range(n_shards)),
    }


def train_arms_of(plan: Mapping[str, Any]) -> list[str]:
    """The arms the ``train`` task maps over, in the plan's ``train_order`` (a plan made before that
    key existed, e.g. a retried older run: its ``arms``)."""
    return list(plan.get("train_order") or plan["arms"])


def settings_of(plan: Mapping[str, Any]) -> Settings:
    """A task's settings: ``load_settings()`` with ``arms.enabled`` set to the run's planned arms, so
    every task of a run (mapped or not) works on the same arms whatever the settings file says now."""
    from deepcuts.pipelines.plan import with_arms
    from deepcuts.settings import load_settings
    from deepcuts.startup import freeze_start_up

    settings = with_arms(load_settings(), plan["arms"])
    # Every task body imports its step, then calls this: what the task process has built so far
    # (Airflow's and the step's modules, the settings) lives until the task ends; frozen, as
    # ``deepcuts step`` freezes its start-up (deepcuts/startup.py)
    freeze_start_up()
    return settings


def resolve_run_date(context: Any, override: str | None = None) -> str:
    """The run date a DAG run works on, as ISO text.

    Precedence: the ``run_date`` param of a manual trigger; the logical date (``ds``) of scheduled runs
    and backfills; the date of ``run_after`` for manual runs without a logical date (Airflow 3 allows
    ``logical_date=None``).
    """
    if override:
        return date.fromisoformat(str(override)).isoformat()
    ds = context.get("ds")
    if ds:
        return str(ds)
    run_after: datetime = context["dag_run"].run_after
    return run_after.date().isoformat()


def last_night_of_week(context: Any, override: str | None = None) -> str:
    """The last night a weekly run reviews, as ISO text: the ``run_date`` param if given, else the
    night before the run's date (a ``@weekly`` run fires at midnight, when that day's night has not
    run yet)."""
    if override:
        return date.fromisoformat(str(override)).isoformat()
    return (date.fromisoformat(resolve_run_date(context)) - timedelta(days=1)).isoformat()


class DeepcutsFailureNotifier(BaseNotifier):
    """Sends a critical alert when a task of a deepcuts DAG fails (log always; webhook/email if set)."""

    def __init__(self, what: str = "task failed") -> None:
        super().__init__()
        self.what = what

    def notify(self, context: Any) -> None:
        from deepcuts.pipelines.alerting import send_alerts
        from deepcuts.settings import load_settings

        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        task_id = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}"
        where = f"{task_id} run {getattr(dag_run, 'run_id', '?')}"
        error = context.get("exception")
        alert = {
            "check": "airflow_task_failure",
            "severity": "critical",
            "message": f"{self.what}: {where}: {error!r}",
        }
        send_alerts(load_settings(), [alert])
