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


def test_the_app_query_example_is_the_treatment_list_with_most_deep_cuts() -> None:
    import pandas as pd

    from deepcuts.contracts import C
    from deepcuts.demo_summary import deep_cut_example

    served = pd.DataFrame(
        {
            C.USER_ID: [1, 1, 2, 2, 3, 3, 3],
            C.DAYPART: ["night", "night", "evening", "evening", "morning", "morning", "evening"],
            C.VARIANT: ["control"] * 2 + ["treatment"] * 5,
            # control user 1 has 2 long-tail items but is not the product; user 3's morning list has 2
            C.IS_LONG_TAIL: [True, True, True, False, True, True, False],
        }
    )
    assert deep_cut_example(served) == (3, "morning")
    assert deep_cut_example(served[served[C.VARIANT] == "control"]) == (1, "night")  # nobody treated


def test_summary_prints_the_scoreboard_and_flags_misses(tmp_path: Path) -> None:
    from deepcuts.contracts import Dataset
    from deepcuts.demo_summary import _scoreboard
    from deepcuts.pipelines.storage import Lake

    lake = Lake(tmp_path)
    board = {
        "ctr_lift": {"control": 0.05, "treatment": 0.06, "value": 0.2, "ci_low": 0.1, "ci_high": 0.3,
                     "target": ">= +15% (promise +15% to +20%)", "met": True},
        "long_tail_share": {"control": 0.0, "treatment": 0.3, "target": "[0.35, 0.40]", "met": False},
        "mean_rating": {"control": None, "treatment": None, "target": ">= 4", "met": False},
    }  # fmt: skip
    lake.write_json(Dataset.AB_RESULTS, FIRST, "verdict.json", {"scoreboard": board})
    lines = _scoreboard(lake, FIRST)
    assert lines[0].endswith("1 OFF TARGET: long-tail share; 1 not measurable yet: mean rating")
    ctr, tail, rating = lines[2:]
    assert "+20.0% [+10.0%, +30.0%]" in ctr and ctr.endswith("met: >= +15%")
    assert tail.endswith("OFF TARGET: [0.35, 0.40]")
    assert rating.endswith("not measurable: >= 4")
    assert _scoreboard(lake, date(2026, 1, 5)) == ["product scoreboard: no A/B analysis for 2026-01-05"]
