"""Make GX Data Docs safe to serve: data values escaped, no script, no CDN asset, a static index.

GX 1.x renders the values it reports (unexpected values, unexpected column names, observed values) into
its HTML through string templates that do not escape them, so a feedback event whose ``event_type`` is
``<img src=x onerror=...>`` becomes markup in the page the reports plugin serves under the Airflow
origin. Its pages also load jQuery, Bootstrap, bootstrap-table, Vega and Font Awesome from CDNs (GX ships
only its own CSS, fonts and images), and its index page is an empty table filled in by script.

So, around ``build_data_docs`` (``deepcuts.pipelines.validation``):

1. :func:`escape_results` HTML-escapes every string inside each expectation's ``result`` in the store
   before GX renders it (the values come from data; the expectation configurations come from our code);
2. :func:`strip_scripts` removes every ``<script>`` element and every stylesheet and image loaded from
   another origin from the written pages: the pages keep their content and GX's local CSS, render
   offline, and need nothing the plugin's Content-Security-Policy (no script at all) forbids;
3. :func:`write_index` replaces GX's script-built index with a static list of links to the pages.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)
_REMOTE_IMG = re.compile(r"<img\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)


def escape_value(value: Any) -> Any:
    """``value`` with every string in it (in lists, tuples and dict values) HTML-escaped.

    Dict keys are left alone: they are GX's own field names or our column names, which GX's renderers
    look values up by.
    """
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, dict):
        return {k: escape_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(escape_value(v) for v in value)
    return value


def escape_results(store: Any) -> None:
    """Escape the data in every validation result kept in a GX validation results store."""
    for key in list(store.list_keys()):
        suite_result = store.get(key)
        for result in suite_result.results:
            result.result = escape_value(result.result)
        store.set(key, suite_result)


def strip_scripts(page: str) -> str:
    """A Data Docs page without ``<script>`` elements and without stylesheets or images (GX's logo)
    from other origins."""
    return _REMOTE_IMG.sub("", _REMOTE_LINK.sub("", _SCRIPT.sub("", page)))


def write_index(docs_dir: Path) -> Path:
    """Write ``index.html``: a static list of links to every page under ``docs_dir``, newest run first."""
    pages = sorted(
        (p.relative_to(docs_dir).as_posix() for p in docs_dir.rglob("*.html") if p.name != "index.html"),
        key=lambda rel: (rel.split("/")[-3:-1], rel),
        reverse=True,
    )
    items = "\n".join(
        f'<li><a href="{html.escape(rel, quote=True)}">{html.escape(rel.removesuffix(".html"))}</a></li>'
        for rel in pages
    )
    index = docs_dir / "index.html"
    index.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Data Docs (Great Expectations)</title>"
        '<link rel="stylesheet" href="static/styles/data_docs_default_styles.css"></head>\n'
        "<body><h1>Data Docs</h1><p>One page per validated batch: "
        "<code>validations/&lt;table&gt;/&lt;raw|typed&gt;/&lt;run date&gt;-&lt;batch&gt;/...</code></p>\n"
        f"<ul>\n{items}\n</ul></body></html>\n"
    )
    return index


def secure_site(docs_dir: Path) -> Path:
    """Strip scripts and remote assets from every page under ``docs_dir`` and rewrite its index."""
    for page in docs_dir.rglob("*.html"):
        text = page.read_text()
        clean = strip_scripts(text)
        if clean != text:
            page.write_text(clean)
    return write_index(docs_dir)
