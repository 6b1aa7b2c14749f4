"""deepcuts_weekly: the weekly diversity and performance review. Wiring only.

Every Sunday at midnight it reviews the seven nights up to Saturday (``pipelines.weekly_review``):
7- and 28-night trends of the monitored metrics and A/B CTRs, niche discovery by genre, the bandit's
arm shares per context, the A/B status and the alerts of the week. The page goes next to the nightly
reports (Browse > Deep-cut reports, ``weekly/``). It reads the nightly outputs (inlet: the nightly
report asset) and updates the ``deepcuts_weekly_review`` asset. A manual run takes ``run_date``: the
last night to review.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from deepcuts.airflow_support import (
    EARLIEST_START,
    NIGHTLY_REPORT,
    WEEKLY_REVIEW,
    DeepcutsFailureNotifier,
    last_night_of_week,
    task_retries,
)


@dag(
    dag_id="deepcuts_weekly",
    description="Weekly diversity and performance review of the deepcuts nights",
    schedule="@weekly",
    start_date=EARLIEST_START,
    catchup=False,  # Sundays from now on; a missed week is run by hand (run_date)
    tags=["deepcuts", "weekly", "reports"],
    max_active_runs=1,
    default_args={
        "owner": "deepcuts",
        "retries": task_retries(),
        "retry_delay": timedelta(minutes=5),
        "on_failure_callback": DeepcutsFailureNotifier("weekly review failed"),
    },
    params={
        "run_date": Param(
            None, type=["null", "string"], format="date", description="Last night to review (YYYY-MM-DD)"
        ),
    },
    doc_md=__doc__,
)
def deepcuts_weekly() -> None:
    @task(inlets=[NIGHTLY_REPORT], outlets=[WEEKLY_REVIEW])
    def weekly_review(**context: Any) -> dict[str, Any]:
        from datetime import date

        from deepcuts.settings import load_settings
        from pipelines.weekly_review import weekly_review

        night = last_night_of_week(context, context["params"].get("run_date"))
        return weekly_review(load_settings(), date.fromisoformat(night))

    weekly_review()


deepcuts_weekly()
