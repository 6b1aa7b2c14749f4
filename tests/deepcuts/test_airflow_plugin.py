"""The report pages inside the Airflow UI require an authenticated Airflow user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deepcuts.contracts import Dataset
from deepcuts.pipelines.storage import Lake


@pytest.fixture
def client(airflow_db: Path, lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("DEEPCUTS_HOME", str(lake_home))
    lake = Lake(lake_home)
    lake.write_bytes(Dataset.REPORTS, None, "index.html", b"<h1>deepcuts index</h1>")
    lake.write_bytes(Dataset.REPORTS, "2026-03-01", "index.html", b"<h1>night 2026-03-01</h1>")
    lake.write_bytes(Dataset.REPORTS, None, "weekly/index.html", b"<h1>deepcuts weekly reviews</h1>")
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as test_client:
        yield test_client


def _token(role: str = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="analyst", role=role))


@pytest.mark.parametrize(
    "path", ["/deepcuts/", "/deepcuts/run_date=2026-03-01/", "/deepcuts/weekly/", "/deepcuts/gx/index.html"]
)
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
    weekly = client.get("/deepcuts/weekly/", headers=headers)  # the second menu entry's href
    assert weekly.status_code == 200 and "weekly reviews" in weekly.text
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

    nightly, weekly = DeepcutsPlugin.external_views
    # relative hrefs: the UI resolves them under its base URL (a proxy prefix keeps working)
    assert nightly["href"] == "deepcuts/" and weekly["href"] == "deepcuts/weekly/"
    assert nightly["url_route"] != weekly["url_route"]
    (app,) = DeepcutsPlugin.fastapi_apps
    assert app["url_prefix"] == "/deepcuts"


def _all_pages(client) -> list[object]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {_token()}"}
    return [
        client.get("/deepcuts/", headers=headers),
        client.get("/deepcuts/run_date=2026-03-01/", headers=headers),
        client.get("/deepcuts/run_date=2026-01-01/", headers=headers),  # 404
        client.get("/deepcuts/"),  # 401
    ]


def test_every_response_carries_a_strict_csp_and_nosniff(client) -> None:  # type: ignore[no-untyped-def]
    responses = _all_pages(client)
    assert [r.status_code for r in responses] == [200, 200, 404, 401]
    for response in responses:
        csp = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
        # No script at all: neither inline (an injected onerror=...) nor from a CDN.
        assert directives["script-src"] == "'none'"
        assert directives["default-src"] == "'none'"
        assert "http" not in csp and "*" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"


def test_symlinks_leading_outside_the_reports_root_are_404(client, lake_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_text("airflow.cfg: sql_alchemy_conn = postgresql://airflow:hunter2@db")
    reports = lake_home / Dataset.REPORTS.value
    (reports / "leak.txt").symlink_to(secret)
    (reports / "outside").symlink_to(tmp_path, target_is_directory=True)
    (reports / "inside.html").symlink_to(reports / "index.html")
    headers = {"Authorization": f"Bearer {_token()}"}
    for path in ("/deepcuts/leak.txt", "/deepcuts/outside/secret.txt"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404 and "hunter2" not in response.text
    # a link that stays inside the reports folder is still served
    assert client.get("/deepcuts/inside.html", headers=headers).text == "<h1>deepcuts index</h1>"


@pytest.mark.parametrize(
    "path", ["/deepcuts/index.html/x", "/deepcuts/index.html/x.html", "/deepcuts/run_date=2026-03-01"]
)
def test_odd_paths_are_404_not_500(client, path: str) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {_token()}"}
    response = client.get(path, headers=headers, follow_redirects=False)
    assert response.status_code in (200, 404), response.text
    if path.startswith("/deepcuts/index.html/"):
        assert response.status_code == 404
