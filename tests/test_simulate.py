"""``run_night`` and the closed-loop simulator."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest

from deepcuts.contracts import Dataset
from deepcuts.settings import load_settings
from pipelines import nightly
from pipelines.nightly import STEP_NAMES, Step, StepMissingError, resolve, run_night
from pipelines.storage import Lake

D1 = date(2026, 3, 1)


def test_registry_matches_the_architecture_document() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    for step in nightly.STEPS:
        assert f"`{step.module}.{step.function}(" in doc, step


def test_resolve_missing_module_or_function_is_none() -> None:
    assert resolve(Step("x", "pipelines.no_such_step_module", "run")) is None
    assert resolve(Step("x", "pipelines.ab_analysis", "no_such_function")) is None
    assert resolve(Step("x", "pipelines.ab_analysis", "ab_analysis")) is not None


def test_run_night_skips_on_request_and_runs_the_rest(lake_home: Path) -> None:
    settings = load_settings(home=str(lake_home))
    out = run_night(settings, D1, skip=[s for s in STEP_NAMES if s != "ab_analysis"])
    assert out["results"]["ab_analysis"]["verdict"] == "keep running"
    assert set(out["skipped"]) == set(STEP_NAMES) - {"ab_analysis"}
    assert Lake(lake_home).exists(Dataset.AB_RESULTS, D1, "verdict.json")
    with pytest.raises(ValueError, match="unknown steps"):
        run_night(settings, D1, skip=["nope"])


def test_run_night_warns_loudly_about_a_missing_step(
    lake_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(home=str(lake_home))
    registry = (Step("ghost", "pipelines.no_such_step_module", "ghost"), *nightly.STEPS)
    monkeypatch.setattr(nightly, "STEPS", registry)
    others = [s for s in STEP_NAMES if s != "ab_analysis"]
    with caplog.at_level(logging.WARNING, logger="pipelines.nightly"):
        out = run_night(settings, D1, skip=others)
    assert "ghost" in out["skipped"] and "ab_analysis" in out["results"]
    assert any("SKIPPING STEP 'ghost'" in r.getMessage() for r in caplog.records)
    with pytest.raises(StepMissingError, match="ghost"):
        run_night(settings, D1, skip=others, strict=True)
