"""The report pages inside the Airflow UI require an authenticated Airflow user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deepcuts.contracts import Dataset
from pipelines.storage import Lake


@pytest.fixture
def client(airflow_db: Path, lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("DEEPCUTS_HOME", str(lake_home))
    lake = Lake(lake_home)
    lake.write_bytes(Dataset.REPORTS, None, "index.html", b"<h1>deepcuts index</h1>")
    lake.write_bytes(Dataset.REPORTS, "2026-03-01", "index.html", b"<h1>night 2026-03-01</h1>")
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as test_client:
        yield test_client


def _token(role: str = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="analyst", role=role))


@pytest.mark.parametrize("path", ["/deepcuts/", "/deepcuts/run_date=2026-03-01/", "/deepcuts/gx/index.html"])
def test_anonymous_requests_are_refused(client, path: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(path)
    assert response.status_code == 401
    assert "deepcuts" not in response.text


def test_forged_token_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/deepcuts/", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code in (401, 403)


def test_authenticated_user_sees_reports(client) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {_token()}"}
    index = client.get("/deepcuts/", headers=headers)
    assert index.status_code == 200 and "deepcuts index" in index.text
    night = client.get("/deepcuts/run_date=2026-03-01/", headers=headers)
    assert night.status_code == 200 and "night 2026-03-01" in night.text
    # the browser inside the Airflow UI authenticates with the session cookie instead
    cookie = client.get("/deepcuts/", cookies={"_token": _token()})
    assert cookie.status_code == 200


def test_missing_night_and_path_traversal_are_404(client) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {_token()}"}
    missing = client.get("/deepcuts/run_date=2026-01-01/", headers=headers)
    assert missing.status_code == 404 and "report task" in missing.text
    assert client.get("/deepcuts/..%2F..%2Fetc/passwd", headers=headers).status_code == 404
    assert client.get("/deepcuts/.tmp-x-index.html", headers=headers).status_code == 404


def test_plugin_registers_a_nav_view() -> None:
    from deepcuts.airflow_plugin import DeepcutsPlugin

    (view,) = DeepcutsPlugin.external_views
    assert view["href"] == "deepcuts/" and not view["href"].startswith("/")
    (app,) = DeepcutsPlugin.fastapi_apps
    assert app["url_prefix"] == "/deepcuts"
