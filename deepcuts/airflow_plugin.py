"""Airflow UI plugin: the nightly reports inside the Airflow UI (Airflow 3.1+ ``fastapi_apps`` +
``external_views``).

Airflow does not authenticate plugin FastAPI apps (a mounted sub-app inherits none of the core API's
dependencies), so every route here depends on Airflow's own ``get_user``: the browser's Airflow session
cookie or a ``Bearer`` JWT is required, and an anonymous request gets 401.

Reports are read through the lake (``pipelines.storage.Lake``), so a remote lake (``s3://``) works too.
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Any, ClassVar

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response

URL_PREFIX = "/deepcuts"


def _lake():  # -> Lake; imported lazily so the API server starts without pandas work
    from deepcuts.settings import load_settings
    from pipelines.storage import Lake

    return Lake(load_settings().home)


def _safe(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or any(p in ("..", "") or p.startswith(".") for p in parts):
        raise HTTPException(status_code=404, detail="not found")
    return "/".join(parts)


def _serve(run_date: str | None, name: str) -> Response:
    from deepcuts.contracts import Dataset
    from pipelines.storage import MissingDataError

    try:
        payload = _lake().read_bytes(Dataset.REPORTS, run_date, _safe(name))
    except (MissingDataError, FileNotFoundError, ValueError):
        raise HTTPException(
            status_code=404,
            detail=f"no report file {name!r}{' for ' + run_date if run_date else ''}; "
            "has the deepcuts_nightly DAG run its report task?",
        ) from None
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(content=payload, media_type=media_type)


def create_reports_app() -> FastAPI:
    app = FastAPI(
        title="deepcuts reports",
        description="Nightly deepcuts reports (offline metrics, diversity, bandit, A/B, OPE, alerts).",
        dependencies=[Depends(get_user)],
    )

    @app.get("/")
    def index() -> Response:
        return _serve(None, "index.html")

    @app.get("/nights/{run_date}")
    def night_redirect(run_date: str) -> RedirectResponse:
        return RedirectResponse(url=f"{run_date}/")

    @app.get("/nights/{run_date}/")
    def night(run_date: str) -> Response:
        return _serve(_valid_date(run_date), "index.html")

    @app.get("/nights/{run_date}/{path:path}")
    def night_file(run_date: str, path: str) -> Response:
        return _serve(_valid_date(run_date), path)

    @app.get("/files/{path:path}")
    def shared_file(path: str) -> Response:
        """Files that span nights, e.g. the Great Expectations Data Docs under ``gx/``."""
        return _serve(None, path)

    return app


def _valid_date(text: str) -> str:
    from datetime import date

    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise HTTPException(status_code=404, detail=f"{text!r} is not a run date (YYYY-MM-DD)") from None


class DeepcutsPlugin(AirflowPlugin):
    name = "deepcuts"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": create_reports_app(), "url_prefix": URL_PREFIX, "name": "deepcuts reports"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Deep-cut reports",
            "href": "deepcuts/",
            "destination": "nav",
            "category": "browse",
            "url_route": "deepcuts-reports",
        }
    ]
