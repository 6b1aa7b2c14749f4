from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from deepcuts.cli import main
from deepcuts.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("DEEPCUTS_CONFIG", "DEEPCUTS_HOME", "DEEPCUTS_SERVING_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_point_at_a_local_lake_and_sqlite() -> None:
    s = load_settings()
    assert s.home == "./.deepcuts"
    assert s.effective_serving_url.startswith("sqlite:///")
    assert s.effective_serving_url.endswith(".deepcuts/serving/serving.db")
    assert "Anime" in s.rerank.niche_genres


def test_file_then_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text('home = "/from/file"\n[bandit]\ndiscount = 0.9\nprior_alpha = 2.0\n')
    monkeypatch.setenv("DEEPCUTS_CONFIG", str(cfg))
    s = load_settings()
    assert (s.home, s.bandit.discount, s.bandit.prior_alpha) == ("/from/file", 0.9, 2.0)
    monkeypatch.setenv("DEEPCUTS_HOME", "/from/env")
    monkeypatch.setenv("DEEPCUTS_BANDIT__DISCOUNT", "0.8")
    s = load_settings()
    assert (s.home, s.bandit.discount, s.bandit.prior_alpha) == ("/from/env", 0.8, 2.0)


def test_explicit_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPCUTS_HOME", "/from/env")
    s = load_settings(home="/override", bandit={"discount": 0.5})
    assert s.home == "/override"
    assert s.bandit.discount == 0.5


def test_typos_and_bad_values_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[bandit]\ndiscont = 0.9\n")
    with pytest.raises(ValidationError, match="discont"):
        load_settings(cfg)
    with pytest.raises(ValidationError, match="unknown arms"):
        load_settings(arms={"enabled": ["svd", "nope"]})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_anime_is_always_niche() -> None:
    s = load_settings(rerank={"niche_genres": ["Western"]})
    assert s.rerank.niche_genres[0] == "Anime"


def test_quality_floor_scales_to_other_rating_scales() -> None:
    s = load_settings()
    assert s.quality_floor_scaled(1, 5) == pytest.approx(4.0)
    assert s.quality_floor_scaled(1, 10) == pytest.approx(7.75)
    assert s.quality_floor_scaled(0.5, 5) == pytest.approx(3.875)


def test_remote_lake_requires_explicit_serving_url() -> None:
    s = load_settings(home="s3://bucket/lake")
    with pytest.raises(ValueError, match="DEEPCUTS_SERVING_URL"):
        _ = s.effective_serving_url


def test_cli_config_prints_effective_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEEPCUTS_SERVING_URL", "postgresql://x@h/db")
    assert main(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["effective_serving_url"] == "postgresql://x@h/db"
    assert data["bandit"]["discount"] == 0.98
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "[bandit]" in out and 'serving_url = "postgresql://x@h/db"' in out


def test_building_the_settings_imports_no_pandas() -> None:
    """Every DAG file builds the settings at parse time (retries): the names they validate against come
    from light modules, so neither pandas nor numpy is imported (a fresh process: this one has them)."""
    import subprocess
    import sys

    code = (
        "import sys; from deepcuts.settings import Settings, load_settings; Settings(); load_settings(); "
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_airflow_section_reads_the_deepcuts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().airflow.task_retries == 2
    monkeypatch.setenv("DEEPCUTS_AIRFLOW__TASK_RETRIES", "0")
    monkeypatch.setenv("DEEPCUTS_AIRFLOW__QUICK_RETRY_DELAY_MINUTES", "0.5")
    section = load_settings().airflow
    assert section.task_retries == 0
    assert (section.retry_delay_minutes, section.quick_retry_delay_minutes) == (5, 0.5)
    monkeypatch.setenv("DEEPCUTS_AIRFLOW__TASK_RETRIES", "-1")
    with pytest.raises(ValidationError, match="task_retries"):
        load_settings()
