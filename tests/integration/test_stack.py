"""The distributed executor path, natively: the docker-compose configuration as local processes.

Starts the Airflow api-server, scheduler, dag-processor and a Celery worker against the local PostgreSQL
(metadata DB and serving DB) and Redis (broker), triggers ``deepcuts_nightly`` on a tiny synthetic world
through the REST API, waits for success and checks the serving tables. Proof that the CeleryExecutor
path works, not only ``dag.test()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepcuts.arms import arm_names
from tests.conftest import PG_HOST, PG_PORT, PG_USER, REDIS_HOST, REDIS_PORT, REPO_ROOT, require_service

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RUN_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _create_db(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(
        f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def _drop_db(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(
        f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    root = tmp_path_factory.mktemp("stack")
    suffix = uuid.uuid4().hex[:10]
    meta_db, serving_db = f"deepcuts_stack_meta_{suffix}", f"deepcuts_stack_serving_{suffix}"
    _create_db(meta_db)
    _create_db(serving_db)
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DEEPCUTS"))},
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{meta_db}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/7",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{meta_db}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "deepcuts-stack-test-" + uuid.uuid4().hex * 2,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "DEEPCUTS_HOME": str(root / "lake"),
        "DEEPCUTS_SERVING_URL": f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{serving_db}",
        "DEEPCUTS_WORLD__USERS": "150",
        "DEEPCUTS_WORLD__ITEMS": "200",
        "DEEPCUTS_ARMS__USER_SHARDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    airflow = [str(bin_dir / "airflow")]

    def run(*args: str) -> None:
        result = subprocess.run([*airflow, *args], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stderr[-3000:]}"

    run("db", "migrate")
    run("pools", "set", "deepcuts_publish", "1", "single writer on the serving DB")
    subprocess.run(
        [str(bin_dir / "deepcuts"), "generate", "--out", str(root / "lake" / "world")],
        env=env,
        check=True,
        capture_output=True,
    )
    logs = root / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    for name, args in {
        "api-server": ["api-server", "--port", str(port)],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "worker": ["celery", "worker", "--concurrency", "2"],
    }.items():
        out = (logs / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [*airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    try:
        yield {"port": port, "env": env, "root": root, "logs": logs, "serving_db": serving_db}
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        _drop_db(meta_db)
        _drop_db(serving_db)


def _tail(logs: Path) -> str:
    tails = (f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))
    return "\n".join(tails)


def test_nightly_dag_runs_on_celery_workers(stack: dict[str, object]) -> None:
    import httpx
    import sqlalchemy as sa

    port, root, logs = stack["port"], Path(str(stack["root"])), Path(str(stack["logs"]))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"api-server did not come up\n{_tail(logs)}"
        time.sleep(2)

    passwords = json.loads((root / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
    token = httpx.post(
        f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30
    ).json()["access_token"]
    api = httpx.Client(base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    deadline = time.monotonic() + 180
    while api.get("/dags/deepcuts_nightly").status_code != 200:
        assert time.monotonic() < deadline, f"dag-processor did not register the DAG\n{_tail(logs)}"
        time.sleep(3)
    assert api.patch("/dags/deepcuts_nightly", json={"is_paused": False}).status_code == 200

    world = json.loads((root / "lake" / "world" / "world.json").read_text())
    run_date = world["first_run_date"]
    response = api.post(
        "/dags/deepcuts_nightly/dagRuns",
        json={"logical_date": f"{run_date}T00:00:00Z", "conf": {"n_shards": 2}},
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = "queued"
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run still {state} after {RUN_TIMEOUT_S}s\n{_tail(logs)}"
        time.sleep(5)
        try:
            state = api.get(f"/dags/deepcuts_nightly/dagRuns/{run_id}").json()["state"]
        except httpx.TransportError:  # the api-server restarting under load is not the question here
            continue
    tis = api.get(f"/dags/deepcuts_nightly/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in tis["task_instances"]}
    assert state == "success", f"run {state}: {states}\n{_tail(logs)}"
    # the mapped tasks really fanned out, and ran on the Celery worker
    assert sum(1 for (task_id, _) in states if task_id == "train") == len(arm_names())
    assert sum(1 for (task_id, _) in states if task_id == "candidates") == 2
    assert all(ti["executor"] in (None, "CeleryExecutor") for ti in tis["task_instances"])
    assert any(ti["hostname"] for ti in tis["task_instances"])

    serving = sa.create_engine(str(stack["env"]["DEEPCUTS_SERVING_URL"]))  # type: ignore[index]
    with serving.connect() as conn:
        n_rows = conn.execute(sa.text("SELECT count(*) FROM current_recommendations")).scalar_one()
        n_users = conn.execute(
            sa.text("SELECT count(DISTINCT user_id) FROM current_recommendations")
        ).scalar_one()
    serving.dispose()
    assert n_users > 0 and n_rows >= n_users * 4
