"""``make run`` (``deepcuts demo``): where a rerun starts, and what ``--fresh`` clears."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from deepcuts.demo import KEPT_ON_FRESH, first_demo_night, reset_demo_lake

FIRST = date(2025, 12, 31)


def test_a_second_demo_continues_after_the_last_published_night() -> None:
    assert first_demo_night(None, FIRST) == 0  # empty lake: the world's first night
    assert first_demo_night(date(2025, 12, 1), FIRST) == 0  # a version older than this world
    assert first_demo_night(FIRST, FIRST) == 1
    assert first_demo_night(date(2026, 1, 3), FIRST) == 4  # four nights published: night 5 is next


def test_fresh_clears_everything_but_the_world_and_the_airflow_db(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    for name in ("world", "airflow", "serving", "candidates/run_date=2025-12-31", "landing"):
        (home / name).mkdir(parents=True)
    (home / "world" / "world.json").write_text("{}")
    (home / "airflow" / "airflow.db").write_bytes(b"db")
    (home / "serving" / "serving.db").write_bytes(b"x")
    (home / "stray.txt").write_text("x")
    assert reset_demo_lake(home) == ["candidates", "landing", "serving", "stray.txt"]
    assert sorted(p.name for p in home.iterdir()) == sorted(KEPT_ON_FRESH)
    assert (home / "world" / "world.json").read_text() == "{}"
    assert (home / "airflow" / "airflow.db").read_bytes() == b"db"
    assert reset_demo_lake(home) == [] and reset_demo_lake(tmp_path / "missing") == []


def test_airflow_cfg_points_at_our_dags_and_keeps_its_secret(tmp_path: Path) -> None:
    import configparser

    from deepcuts.demo import write_airflow_cfg

    home = tmp_path / "airflow"
    home.mkdir()
    # What `airflow standalone` generated before: examples on, a dags folder that does not exist.
    (home / "airflow.cfg").write_text(
        "[core]\ndags_folder = /nowhere/dags\nload_examples = True\ndefault_timezone = utc\n"
        "[webserver]\nexpose_config = True\n"
    )
    dags = tmp_path / "repo" / "dags"
    write_airflow_cfg(home, dags)
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(home / "airflow.cfg")
    assert cfg.get("core", "dags_folder") == str(dags)
    assert cfg.getboolean("core", "load_examples") is False
    assert cfg.getboolean("core", "dags_are_paused_at_creation") is True
    assert cfg.get("database", "sql_alchemy_conn") == f"sqlite:///{home / 'airflow.db'}"
    # Keys deepcuts does not own survive.
    assert cfg.get("core", "default_timezone") == "utc"
    assert cfg.get("webserver", "expose_config") == "True"
    secret = cfg.get("api_auth", "jwt_secret")
    assert len(secret) == 64
    # A second call (the next `make run`, or `make ui`) keeps the secret every process signs with.
    write_airflow_cfg(home, dags)
    again = configparser.ConfigParser(interpolation=None)
    again.read(home / "airflow.cfg")
    assert again.get("api_auth", "jwt_secret") == secret


def test_demo_run_ids_name_the_night() -> None:
    from deepcuts.demo import demo_run_id

    assert demo_run_id(date(2026, 1, 8)) == "deepcuts_demo__2026-01-08"
