"""deepcuts_nightly: the nightly deep-cut recommendation run. Wiring only.

Every task calls one function in ``pipelines/`` with the settings and the run date of the run's plan
(``plan``: run date, arms and shards decided once; ``settings_of(p)`` narrows ``arms.enabled`` to the
planned arms, so ``train`` maps over the same arms the other steps read), so reruns and backfills
(``airflow dags backfill deepcuts_nightly ...``) are idempotent per run date. Heavy imports happen
inside the tasks: parsing this file imports Airflow and nothing else.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from deepcuts.airflow_support import (
    NIGHTLY_REPORT,
    PUBLISH_POOL,
    SERVING_TABLES,
    DeepcutsFailureNotifier,
    night_plan,
    resolve_run_date,
    retry_args,
    run_date_of,
    settings_of,
    train_arms_of,
)


@dag(
    dag_id="deepcuts_nightly",
    description="Ingest, train, re-rank, bandit, evaluate, monitor and publish deep-cut recommendations",
    schedule="@daily",
    # Early, so runs and backfills for any historical run date (MovieLens replays start in 1997) get
    # task instances; catchup=False keeps the scheduler from creating the missed runs.
    start_date=pendulum.datetime(1995, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    tags=["deepcuts", "nightly"],
    default_args={
        "owner": "deepcuts",
        **retry_args(),
        "retry_exponential_backoff": True,
        "on_failure_callback": DeepcutsFailureNotifier("nightly task failed"),
    },
    on_failure_callback=DeepcutsFailureNotifier("nightly run failed"),
    params={
        "run_date": Param(
            None, type=["null", "string"], format="date", description="Override the run date (YYYY-MM-DD)"
        ),
        "arms": Param(
            None,
            type=["null", "array"],
            description="Arms to run tonight (default: settings arms.enabled; the A/B control arm stays)",
        ),
        "n_shards": Param(
            None, type=["null", "integer"], minimum=1, description="User shards (default: settings)"
        ),
    },
    doc_md=__doc__,
)
def deepcuts_nightly() -> None:
    @task
    def plan(**context: Any) -> dict[str, Any]:
        """Resolve the run date, arms and shards once, so every task of the run agrees."""
        params = context["params"]
        return night_plan(params, resolve_run_date(context, params.get("run_date")))

    @task
    def arms_of(p: dict[str, Any]) -> list[str]:
        # the train tasks start in this order: the deep-cut arms' bases first (reused, not refitted)
        return train_arms_of(p)

    @task
    def shards_of(p: dict[str, Any]) -> list[int]:
        return p["shards"]

    @task
    def ingest(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.ingest import ingest

        return ingest(settings_of(p), run_date_of(p))

    @task(map_index_template="{{ task.op_kwargs['arm'] }}")
    def train(p: dict[str, Any], arm: str) -> dict[str, Any]:
        from deepcuts.pipelines.train import train_arm

        return train_arm(settings_of(p), run_date_of(p), arm)

    @task
    def bandit_update(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.bandit_update import bandit_update

        return bandit_update(settings_of(p), run_date_of(p))

    @task(map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def candidates(p: dict[str, Any], shard: int) -> dict[str, Any]:
        from deepcuts.pipelines.candidates import candidates_shard

        return candidates_shard(settings_of(p), run_date_of(p), shard, p["n_shards"])

    @task(map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def score(p: dict[str, Any], shard: int) -> dict[str, Any]:
        from deepcuts.pipelines.score import score_shard

        return score_shard(settings_of(p), run_date_of(p), shard, p["n_shards"])

    @task
    def assign(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.assign import assign

        return assign(settings_of(p), run_date_of(p))

    @task
    def evaluate(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.evaluate import evaluate_night

        return evaluate_night(settings_of(p), run_date_of(p))

    @task
    def ab_analysis(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.ab_analysis import ab_analysis

        return ab_analysis(settings_of(p), run_date_of(p))

    @task
    def ope(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.ope import ope

        return ope(settings_of(p), run_date_of(p))

    @task
    def monitor(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.monitor import monitor

        return monitor(settings_of(p), run_date_of(p))

    # One writer at a time on the serving DB, whatever else runs in parallel (backfills included).
    @task(pool=PUBLISH_POOL, outlets=[SERVING_TABLES])
    def publish(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.publish import publish

        return publish(settings_of(p), run_date_of(p))

    @task(outlets=[NIGHTLY_REPORT])
    def report(p: dict[str, Any]) -> dict[str, Any]:
        from deepcuts.pipelines.report import report

        return report(settings_of(p), run_date_of(p))

    p = plan()
    ingested = ingest(p)
    arms = arms_of(p)
    shards = shards_of(p)
    ingested >> [arms, shards]
    trained = train.partial(p=p).expand(arm=arms)
    # the bandit reads only the feedback and yesterday's posterior: it runs beside the arms' training
    updated = bandit_update(p)
    ingested >> updated
    shard_candidates = candidates.partial(p=p).expand(shard=shards)
    trained >> shard_candidates
    scored = score.partial(p=p).expand(shard=shards)
    shard_candidates >> scored
    assigned = assign(p)
    [scored, updated] >> assigned
    checks = [evaluate(p), ab_analysis(p), ope(p)]
    assigned >> checks
    monitored = monitor(p)
    checks >> monitored
    # the report reads only the lake (no output of publish): it runs beside publish, so a publish the
    # gates reject does not hide the night's report, and the new version does not wait for the report
    monitored >> [publish(p), report(p)]


deepcuts_nightly()
