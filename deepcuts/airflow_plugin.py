"""Airflow UI plugin: the nightly reports inside the Airflow UI (Airflow 3.1+ ``fastapi_apps`` +
``external_views``).

Airflow does not authenticate plugin FastAPI apps (a mounted sub-app inherits none of the core API's
dependencies), so every route here depends on Airflow's own ``get_user``: the browser's Airflow session
cookie or a ``Bearer`` JWT is required, and an anonymous request gets 401.

Reports are read through the lake (``deepcuts.pipelines.storage.Lake``), so a remote lake (``s3://``) works
too.

The pages show values that came from data (feedback logs, catalogs), under the Airflow origin, to every
logged-in user. Besides escaping them where the HTML is written (``deepcuts.pipelines.report``, the Data Docs
sanitiser in ``deepcuts.pipelines.data_docs``), every response carries a Content-Security-Policy that allows
no script at all and no resource from another origin, and ``nosniff``, so a value that slipped through
escaping still cannot run, and the pages render offline. On a local lake a path whose real location
(symlinks resolved) is outside the reports folder is a 404.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response

URL_PREFIX = "/deepcuts"

#: Sent with every response of the plugin (pages, 404s, 401s). No script of any kind (an injected
#: ``onerror=`` handler or ``<script>`` does not run); images, styles and fonts from the same origin only
#: (plots are ``data:`` images); inline ``style`` attributes are allowed because the report and GX's pages
#: use them and CSS cannot run code; framed only by the Airflow UI itself.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'none'",
            "script-src 'none'",
            "img-src 'self' data:",
            "style-src 'self' 'unsafe-inline'",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        ]
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _lake():  # -> Lake; imported lazily so the API server starts without pandas work
    from deepcuts.pipelines.storage import Lake
    from deepcuts.settings import load_settings

    return Lake(load_settings().home)


def _safe(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or any(p in ("..", "") or p.startswith(".") for p in parts):
        raise HTTPException(status_code=404, detail="not found")
    return "/".join(parts)


def _read_report(name: str) -> bytes:
    """Bytes of ``reports/<name>``. Raises ``OSError``/``ValueError`` when there is no such file.

    Local lake: the real path (symlinks resolved) must be a file inside the real reports folder.
    """
    from deepcuts.contracts import Dataset

    lake = _lake()
    if not lake.is_local:
        return lake.read_bytes(Dataset.REPORTS, None, name)
    root = Path(lake.dataset_dir(Dataset.REPORTS)).resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise FileNotFoundError(name)
    return target.read_bytes()


def _serve(name: str) -> Response:
    try:
        payload = _read_report(_safe(name))
    except (OSError, ValueError):  # missing, a file used as a folder (index.html/x), outside the root
        raise HTTPException(
            status_code=404,
            detail=f"no report file {name!r}; has the deepcuts_nightly DAG run its report task?",
        ) from None
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(content=payload, media_type=media_type)


def create_reports_app() -> FastAPI:
    """Serve the lake's ``reports/`` folder as-is, so relative links work the same on disk and here:
    ``/deepcuts/`` is the index of all nights, ``/deepcuts/run_date=YYYY-MM-DD/`` one night's report,
    ``/deepcuts/weekly/`` the weekly reviews, ``/deepcuts/gx/...`` the Great Expectations Data Docs."""
    app = FastAPI(
        title="deepcuts reports",
        description="Nightly deepcuts reports (offline metrics, diversity, bandit, A/B, OPE, alerts).",
        dependencies=[Depends(get_user)],
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

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
        },
        # reports/weekly/index.html (deepcuts.pipelines.weekly_review); the index of all nights links it too
        {
            "name": "Deep-cut weekly reviews",
            "href": "deepcuts/weekly/",
            "destination": "nav",
            "category": "browse",
            "url_route": "deepcuts-weekly",
        },
    ]
