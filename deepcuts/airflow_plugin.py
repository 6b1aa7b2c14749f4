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
from fastapi.responses import Response

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


def _serve(name: str) -> Response:
    from deepcuts.contracts import Dataset
    from pipelines.storage import MissingDataError

    try:
        payload = _lake().read_bytes(Dataset.REPORTS, None, _safe(name))
    except (MissingDataError, FileNotFoundError, ValueError):
        raise HTTPException(
            status_code=404,
            detail=f"no report file {name!r}; has the deepcuts_nightly DAG run its report task?",
        ) from None
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(content=payload, media_type=media_type)


def create_reports_app() -> FastAPI:
    """Serve the lake's ``reports/`` folder as-is, so relative links work the same on disk and here:
    ``/deepcuts/`` is the index of all nights, ``/deepcuts/run_date=YYYY-MM-DD/`` one night's report,
    ``/deepcuts/gx/...`` the Great Expectations Data Docs."""
    app = FastAPI(
        title="deepcuts reports",
        description="Nightly deepcuts reports (offline metrics, diversity, bandit, A/B, OPE, alerts).",
        dependencies=[Depends(get_user)],
    )

    @app.get("/")
    def index() -> Response:
        return _serve("index.html")

    @app.get("/{path:path}")
    def report_file(path: str) -> Response:
        if path.endswith("/") or "." not in PurePosixPath(path).name:
            return _serve(f"{path.rstrip('/')}/index.html")
        return _serve(path)

    return app


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
