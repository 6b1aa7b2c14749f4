"""deepcuts_intraday: refresh the bandit from the day's feedback between two nights. Wiring only.

One run per refresh slot (hourly = ``intraday.refreshes_per_day`` 24): ingest the feedback that landed so
far, update the posteriors, re-assign the treatment arms, publish the re-assignment as a new serving
version. Each task calls one function of ``pipelines/intraday.py`` with (day, slot); every slot is
computed from the last nightly snapshot plus the day's cumulative feedback, so a rerun is idempotent and
a skipped slot is caught up by the next run. The nightly DAG stays the full retrain.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from deepcuts.airflow_support import PUBLISH_POOL, DeepcutsFailureNotifier, retry_args


@dag(
    dag_id="deepcuts_intraday",
    description="Intraday bandit refresh: feedback so far -> posterior -> re-assignment -> publish",
    schedule="@hourly",
    start_date=pendulum.datetime(1995, 1, 1, tz="UTC"),
    # a missed slot needs no run of its own: the next slot covers the day's feedback so far
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    tags=["deepcuts", "intraday"],
    default_args={
        "owner": "deepcuts",
        **retry_args(quick=True),
        "on_failure_callback": DeepcutsFailureNotifier("intraday refresh task failed"),
    },
    params={
        "day": Param(
            None, type=["null", "string"], format="date", description="Override the day (YYYY-MM-DD)"
        ),
        "slot": Param(None, type=["null", "integer"], minimum=0, description="Override the refresh slot"),
    },
    doc_md=__doc__,
)
def deepcuts_intraday() -> None:
    @task
    def plan(**context: Any) -> dict[str, Any]:
        """The (day, slot) this run refreshes: the slot that ended at the data interval's end."""
        from datetime import date

        from deepcuts.pipelines.intraday import slot_at
        from deepcuts.settings import load_settings

        params = context["params"]
        settings = load_settings()
        end = context.get("data_interval_end") or context["dag_run"].run_after
        day, slot = slot_at(settings, end)
        if params.get("day"):
            day = date.fromisoformat(str(params["day"]))
        if params.get("slot") is not None:
            slot = int(params["slot"])
        return {"day": day.isoformat(), "slot": slot}

    @task
    def ingest(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.intraday import ingest_refresh
        from deepcuts.settings import load_settings

        return ingest_refresh(load_settings(), p["day"], p["slot"])

    @task
    def update(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.intraday import update_refresh
        from deepcuts.settings import load_settings

        return update_refresh(load_settings(), p["day"], p["slot"])

    @task
    def assign(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.intraday import assign_refresh
        from deepcuts.settings import load_settings

        return assign_refresh(load_settings(), p["day"], p["slot"])

    # no SERVING_TABLES outlet: that would rebuild the report index every hour
    @task(pool=PUBLISH_POOL)
    def publish(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.intraday import publish_refresh
        from deepcuts.settings import load_settings

        return publish_refresh(load_settings(), p["day"], p["slot"])

    p = plan()
    ingest(p) >> update(p) >> assign(p) >> publish(p)


deepcuts_intraday()
