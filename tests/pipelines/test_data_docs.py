"""GX Data Docs show values from data: they must reach the HTML escaped, with no script and no CDN asset.

The feedback log is written by the app (and anyone who can reach its logging endpoint), so a value such
as ``<img src=x onerror=alert(document.domain)>`` in ``event_type`` is an attacker's input. It is
quarantined (``bad_value:event_type``) and GX lists it under "unexpected values" in the Data Docs page,
which the reports plugin serves under the Airflow origin.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepcuts.contracts import C
from deepcuts.pipelines.validation import (
    Kind,
    ValidationFailed,
    build_data_docs,
    discard_results,
    validate_frame,
)
from tests.pipelines.test_validation import RULES, RUN_DATE, good_rows

IMG = "<img src=x onerror=alert(document.domain)>"
SVG = "<svg onload=alert(2)>"


def _pages(docs: Path) -> dict[str, str]:
    return {str(p.relative_to(docs)): p.read_text() for p in docs.rglob("*.html")}


@pytest.fixture
def docs(tmp_path: Path) -> dict[str, str]:
    discard_results()  # results left by other tests in this process
    frame = good_rows().astype(object)
    frame.loc[3, C.EVENT_TYPE] = IMG
    outcome = validate_frame(frame, Kind.FEEDBACK, RULES, name="landing", run_date=RUN_DATE)
    assert outcome.reasons == {f"bad_value:{C.EVENT_TYPE}": 1}
    # A column name is data too: the schema check lists unexpected columns by name.
    with pytest.raises(ValidationFailed, match="unexpected columns"):
        extra = good_rows().assign(**{SVG: "1"})
        validate_frame(extra, Kind.FEEDBACK, RULES, name="extra", run_date=RUN_DATE)
    build_data_docs(tmp_path / "gx")
    return _pages(tmp_path / "gx")


def test_values_from_data_are_escaped(docs: dict[str, str]) -> None:
    text = "\n".join(docs.values())
    assert "onerror=alert" in text  # the value is shown ...
    assert IMG not in text and SVG not in text  # ... but never as markup
    assert "&lt;img src=x onerror=alert(document.domain)&gt;" in text
    assert "&lt;svg onload=alert(2)&gt;" in text
    assert "&amp;lt;" not in text  # escaped once, not twice


def test_pages_have_no_script_and_no_remote_assets(docs: dict[str, str]) -> None:
    assert len(docs) == 4  # index, raw + typed of the landing batch, raw of the rejected one
    for name, page in docs.items():
        assert "<script" not in page.lower(), name
        remote = re.findall(r"<link[^>]+href=[\"']?(?:https?:)?//", page, flags=re.IGNORECASE)
        assert not remote, (name, remote)
        assert not re.search(r"\bsrc=[\"']?(?:https?:)?//", page), name


def test_index_links_every_validation_page_without_script(docs: dict[str, str]) -> None:
    index = docs["index.html"]
    pages = sorted(name for name in docs if name.startswith("validations/"))
    assert len(pages) == 3
    for page in pages:
        assert f'href="{page}"' in index
