"""The ``deepcuts`` command line: a user's mistake is one line and a non-zero exit, a bug a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from deepcuts.cli import main
from deepcuts.cli.config import value_origins


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["step", "ingest", "--run-date", "2026-1-8"], "'2026-1-8' is not a date YYYY-MM-DD"),
        (["step", "ingest", "--run-date", "2026-02-30"], "'2026-02-30' is not a date YYYY-MM-DD"),
        (["step", "nosuch", "--run-date", "2026-01-08"], "invalid choice: 'nosuch'"),
        (["step", "train", "--run-date", "2026-01-08"], "runs per arm: pass --arm"),
        (["step", "score", "--run-date", "2026-01-08", "--shard", "9"], "pass --shard in [0, "),
        (["ui", "--port", "x"], "invalid int value: 'x'"),
        (["--config", "/nonexistent/deepcuts.toml", "config"], "/nonexistent/deepcuts.toml does not exist"),
    ],
)
def test_user_mistakes_end_in_one_line_and_exit_2(
    argv: list[str], says: str, settings: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert says in err and "Traceback" not in err


def test_a_missing_partition_is_one_line_naming_what_is_missing(
    settings: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # The lake is empty: nothing was ingested for this night, so training has no input.
    code, err = _run(["step", "train", "--run-date", "2026-01-08", "--arm", "popularity"], capsys)
    assert code == 2
    assert err.startswith("deepcuts step: ") and len(err.strip().splitlines()) == 1, err
    assert "2026-01-08" in err


def test_debug_shows_the_traceback_of_a_user_mistake(settings: object) -> None:
    from deepcuts.cli._common import UserError

    with pytest.raises(UserError, match="runs per arm"):
        main(["--debug", "step", "train", "--run-date", "2026-01-08"])


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepcuts.cli.config as config_cli

    def broken(args: argparse.Namespace) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(config_cli, "run", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["config"])


def test_origins_follow_the_settings_precedence() -> None:
    data = {"home": "/lake", "seed": 42, "bandit": {"discount": 0.9, "prior": 1.0}, "rerank": {"floor": 4.1}}
    config = ("/etc/deepcuts.toml", {"bandit": {"discount": 0.9}, "home": "/ignored"})
    environ = {
        "DEEPCUTS_HOME": "/lake",  # beats the file
        "deepcuts_rerank__floor": "4.1",  # pydantic-settings matches names case-insensitively
        "DEEPCUTS_SEEDS": "not ours",
    }
    assert value_origins(data, config, environ) == {
        "home": "env DEEPCUTS_HOME",
        "seed": "default",
        "bandit.discount": "file /etc/deepcuts.toml",
        "bandit.prior": "default",
        "rerank.floor": "env DEEPCUTS_RERANK__FLOOR",
    }
    # A whole section given as JSON counts for the keys it names only.
    by_json = value_origins(data, None, {"DEEPCUTS_BANDIT": '{"prior": 2.0}'})
    assert by_json["bandit.prior"] == "env DEEPCUTS_BANDIT" and by_json["bandit.discount"] == "default"


def test_config_origin_prints_each_value_with_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "deepcuts.toml"
    toml.write_text("[bandit]\ndiscount = 0.9\n")
    monkeypatch.setenv("DEEPCUTS_CONFIG", str(toml))
    monkeypatch.setenv("DEEPCUTS_RERANK__QUALITY_FLOOR", "4.1")
    monkeypatch.delenv("DEEPCUTS_SEED", raising=False)
    assert main(["config", "--origin"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("discount = 0.9") and line.endswith(f"# file {toml}") for line in lines)
    assert any(
        line.startswith("quality_floor = 4.1") and line.endswith("# env DEEPCUTS_RERANK__QUALITY_FLOOR")
        for line in lines
    )
    assert "seed = 42" in next(line for line in lines if line.startswith("seed = 42"))
    assert next(line for line in lines if line.startswith("seed = 42")).endswith("# default")


def test_step_runs_the_weekly_review_too(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["step", "weekly_review", "--run-date", "2026-01-08"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["week_ending"] == "2026-01-08" and summary["nights"] == []  # an empty lake: no nights
    assert summary["report"].endswith("reports/weekly/week_ending=2026-01-08/index.html")


def test_start_up_pauses_the_collector_then_freezes_what_it_built() -> None:
    import gc

    from deepcuts.startup import start_up

    gc.unfreeze()
    try:
        with start_up():
            assert not gc.isenabled()
            built = [[] for _ in range(10)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(built)  # start-up's objects are out of later collections
        assert all(not any(o is b for o in gc.get_objects()) for b in built)
        gc.unfreeze()
        # a failed start-up restores the collector and freezes nothing
        with pytest.raises(RuntimeError), start_up():
            raise RuntimeError("boom")
        assert gc.isenabled()
        assert gc.get_freeze_count() == 0
        # a collector the caller had switched off stays off
        gc.disable()
        with start_up():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_freeze_start_up_freezes_once_per_process() -> None:
    """An Airflow task's start-up is frozen, but never a second time: tasks sharing one process
    (``dag.test()``) must not pin each other's garbage."""
    import gc

    from deepcuts.startup import freeze_start_up

    gc.unfreeze()
    try:
        freeze_start_up()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        later = [[] for _ in range(10)]
        freeze_start_up()
        assert gc.get_freeze_count() == frozen  # nothing built since is frozen
        assert all(any(o is b for o in gc.get_objects()) for b in later)
    finally:
        gc.unfreeze()
