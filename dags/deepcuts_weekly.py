"""deepcuts_weekly: the weekly diversity and performance review. Wiring only.

Every Sunday at midnight it reviews the seven nights up to Saturday (``deepcuts.pipelines.weekly_review``):
7- and 28-night trends of the monitored metrics and A/B CTRs, niche discovery by genre, the bandit's
arm shares per context, the A/B status and the alerts of the week. The page goes next to the nightly
reports (Browse > Deep-cut reports, ``weekly/``). It reads the nightly outputs (inlet: the nightly
report asset) and updates the ``deepcuts_weekly_review`` asset. A manual run takes ``run_date``: the
last night to review.

The same run re-tunes the arms (``deepcuts.pipelines.tune``): each arm's key hyperparameters are picked on a
temporal validation split of that night's training data and the nightly ``train`` uses the newest tuning
from then on. ``tune=false`` skips it (``make run`` does, to stay quick).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from deepcuts.airflow_support import (
    EARLIEST_START,
    NIGHTLY_REPORT,
    WEEKLY_REVIEW,
    DeepcutsFailureNotifier,
    last_night_of_week,
    retry_args,
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
        **retry_args(),
        "on_failure_callback": DeepcutsFailureNotifier("weekly review failed"),
    },
    params={
        "run_date": Param(
            None, type=["null", "string"], format="date", description="Last night to review (YYYY-MM-DD)"
        ),
        "tune": Param(True, type="boolean", description="Re-tune the arms' hyperparameters on that night"),
    },
    doc_md=__doc__,
)
def deepcuts_weekly() -> None:
    @task(inlets=[NIGHTLY_REPORT], outlets=[WEEKLY_REVIEW])
    def weekly_review(**context: Any) -> dict[str, Any]:
        from datetime import date

        from deepcuts.pipelines.weekly_review import weekly_review
        from deepcuts.settings import load_settings

        night = last_night_of_week(context, context["params"].get("run_date"))
        return weekly_review(load_settings(), date.fromisoformat(night))

    @task
    def tune(**context: Any) -> dict[str, Any]:
        from datetime import date

        from deepcuts.pipelines.tune import tune
        from deepcuts.settings import load_settings

        night = last_night_of_week(context, context["params"].get("run_date"))
        if not context["params"].get("tune", True):
            return {"run_date": night, "skipped": "tune=false"}
        return tune(load_settings(), date.fromisoformat(night))

    weekly_review()
    tune()


deepcuts_weekly()
