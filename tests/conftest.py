"""Shared fixtures.

Services: tests that need PostgreSQL or Redis use the `postgres_url` / `redis_url` fixtures. Where the
server is missing they skip with the reason, except under CI=true, where a missing server is a failure.
MovieLens: tests marked `movielens` read ../shared/data and skip when it is absent.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Airflow reads its configuration once, at first import: point it at a throw-away home for the whole
# test session before any test imports it (the tests never touch a real Airflow installation).
_AIRFLOW_TEST_HOME = Path(tempfile.mkdtemp(prefix="deepcuts-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_TEST_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "deepcuts-test-secret-" + "x" * 48)

from deepcuts.settings import Settings, load_settings  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"

PG_HOST = os.environ.get("DEEPCUTS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DEEPCUTS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DEEPCUTS_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("DEEPCUTS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("DEEPCUTS_TEST_REDIS_PORT", "6379"))


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under CI=true) when a server is not reachable."""
    if _port_open(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it (start it, see .ci/run)")
    pytest.skip(f"{message}; start it to run this test")


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (MovieLens files are not redistributed with the repo)")
    return path


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import sqlalchemy as sa

    admin = sa.create_engine(
        f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres", isolation_level="AUTOCOMMIT"
    )
    name = f"deepcuts_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def serving_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The serving database under test: a SQLite file, or a fresh PostgreSQL database."""
    from tests.serving_fixtures import url_for

    return url_for(request, request.param, tmp_path)


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) in the session's Airflow home."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return _AIRFLOW_TEST_HOME


@pytest.fixture
def lake_home(tmp_path: Path) -> Path:
    home = tmp_path / "lake"
    home.mkdir()
    return home


@pytest.fixture
def settings(lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Default settings with the lake in a temporary folder and no TOML file."""
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    monkeypatch.setenv("DEEPCUTS_HOME", str(lake_home))
    return load_settings()


@pytest.fixture(autouse=True)
def _no_validation_results_carried_over() -> Iterator[None]:
    """GX keeps validation results in one process-wide context until Data Docs render them; a test that
    validates without rendering (``run_suite`` directly) would otherwise hand its results to the next
    test's Data Docs (the nightly ingest renders or discards its own in a ``finally``)."""
    yield
    import sys

    gx_module = sys.modules.get("deepcuts.pipelines.validation.gx")
    if gx_module is not None and "ctx" in gx_module._GX:
        gx_module.discard_results()
