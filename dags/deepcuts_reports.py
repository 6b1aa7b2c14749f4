"""deepcuts_reports: rebuild the analysts' report index whenever a new version is published. Wiring only.

Triggered by the ``deepcuts_serving_tables`` asset that the nightly publish task updates, so analysts
get the trend pages (all nights side by side) without waiting for the next nightly run.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from deepcuts.airflow_support import SERVING_TABLES, DeepcutsFailureNotifier, retry_args


@dag(
    dag_id="deepcuts_reports",
    description="Rebuild the deepcuts report index after every publish",
    schedule=[SERVING_TABLES],
    # Early, so runs and backfills for any historical run date (MovieLens replays start in 1997) get
    # task instances; catchup=False keeps the scheduler from creating the missed runs.
    start_date=pendulum.datetime(1995, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["deepcuts", "reports"],
    default_args={
        "owner": "deepcuts",
        **retry_args(quick=True),
        "on_failure_callback": DeepcutsFailureNotifier("report index failed"),
    },
    doc_md=__doc__,
)
def deepcuts_reports() -> None:
    @task
    def build_index() -> dict[str, Any]:
        from deepcuts.pipelines.report import build_index
        from deepcuts.settings import load_settings

        return build_index(load_settings())

    build_index()


deepcuts_reports()
