"""Tiny nights for the serving/publish/monitor tests: frames that follow the contracts, written to a lake.

A night has ``users`` users x 4 dayparts x ``list_length`` items. User ``u`` has seen items ``0..9``
(ids below 100); served items are 100+, so a valid night never serves a seen item. ``shift`` changes
every list (a different night); ``changed_users`` limits the change to the first users.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deepcuts.contracts import C, Dataset, Daypart
from deepcuts.settings import Settings, load_settings
from pipelines.storage import Lake

DAYPARTS = [d.value for d in Daypart]
SEGMENTS = ("new", "casual", "power")
ARMS = ("svd", "long_tail")
D1 = date(2026, 3, 1)
D2 = date(2026, 3, 2)
D3 = date(2026, 3, 3)


def make_settings(home: Path, url: str, **overrides: Any) -> Settings:
    return load_settings(home=str(home), serving_url=url, **overrides)


def night_frames(
    run_date: date,
    users: int = 6,
    list_length: int = 3,
    shift: int = 0,
    changed_users: int | None = None,
) -> dict[str, pd.DataFrame]:
    served, assignments = [], []
    for u in range(1, users + 1):
        s = shift if changed_users is None or u <= changed_users else 0
        for d_i, daypart in enumerate(DAYPARTS):
            arm = ARMS[(u + d_i) % 2]
            variant = "treatment" if u % 2 else "control"
            assignments.append(
                {
                    C.USER_ID: u,
                    C.DAYPART: daypart,
                    C.SEGMENT: SEGMENTS[u % 3],
                    C.ARM: arm,
                    C.PROPENSITY: 0.5,
                    C.VARIANT: variant,
                    C.EXPERIMENT: "exp-1",
                    C.RUN_DATE: run_date,
                }
            )
            for r in range(1, list_length + 1):
                served.append(
                    {
                        C.USER_ID: u,
                        C.DAYPART: daypart,
                        C.RANK: r,
                        C.ITEM_ID: 100 + (u * 5 + d_i * list_length + r + s) % 60,
                        C.ARM: arm,
                        C.VARIANT: variant,
                        C.SCORE: 1.0 / r,
                        C.NOVELTY: 0.1 * r,
                        C.IS_LONG_TAIL: r % 2 == 0,
                        C.REASON: f'because you liked "{u}", a classic\nof its kind',  # COPY escaping
                        C.RUN_DATE: run_date,
                    }
                )
    policy = [
        {
            C.SEGMENT: seg,
            C.DAYPART: dp,
            C.ARM: arm,
            C.ALPHA: 2.0,
            C.BETA: 3.0,
            C.MEAN: 0.4,
            C.THOMPSON_PROBABILITY: 0.5,
            C.SELECTION_PROBABILITY: 0.5,
            C.RUN_DATE: run_date,
        }
        for seg in SEGMENTS
        for dp in DAYPARTS
        for arm in ARMS
    ]
    interactions = pd.DataFrame(
        [
            {
                C.USER_ID: u,
                C.ITEM_ID: i,
                C.RATING: 4.0,
                C.TS: datetime(run_date.year, run_date.month, run_date.day, 12, tzinfo=UTC),
            }
            for u in range(1, users + 1)
            for i in range(10)
        ]
    )
    return {
        "served": pd.DataFrame(served),
        "assignments": pd.DataFrame(assignments),
        "policy": pd.DataFrame(policy),
        "interactions": interactions,
    }


def write_night(lake: Lake, run_date: date, frames: dict[str, pd.DataFrame]) -> None:
    lake.write_table(Dataset.SERVED_LISTS, run_date, frames["served"])
    lake.write_table(Dataset.ASSIGNMENTS, run_date, frames["assignments"])
    lake.write_table(Dataset.BANDIT_POLICY, run_date, frames["policy"])
    lake.write_table(Dataset.INTERACTIONS, run_date, frames["interactions"])
    lake.mark_all_complete()  # as the steps that write them do when they finish


def publish_nights(tmp_path: Path, url: str, nights: list[date], **overrides: Any) -> Settings:
    """Write and publish ``nights`` in order (night ``i`` shifted by ``i``); returns the settings used."""
    from pipelines.publish import publish

    settings = make_settings(tmp_path / "lake", url, rerank={"list_length": 3}, **overrides)
    lake = Lake(settings.home)
    for i, day in enumerate(nights):
        write_night(lake, day, night_frames(day, shift=i))
        assert publish(settings, day)["status"] == "published"
    return settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def serving_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The serving database under test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serving' / 'serving.db'}"
    return request.getfixturevalue("postgres_url")


def url_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The serving URL of ``backend`` (for tests parametrized over backends with per-case marks)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'serving' / 'serving.db'}"
    return request.getfixturevalue("postgres_url")


#: Fault-injection cases: every stage on SQLite; on PostgreSQL every stage too, the ones around the
#: loads and the switch in the default run and the rest marked slow (each needs its own database).
PG_FAST_STAGES = ("register", "load_recommendations", "gates", "switch")
