"""Tiny nights for the serving/publish/monitor tests: frames that follow the contracts, written to a lake.

A night has ``users`` users x 2 arms x ``list_length`` items of lists and ``users`` x 4 dayparts of
assignments, each picking one of its user's lists. User ``u`` has seen items ``0..9``
(ids below 100); served items are 100+, so a valid night never serves a seen item. ``shift`` changes
every list (a different night); ``changed_users`` limits the change to the first users.
The ``serving_url`` fixture (SQLite, or a fresh PostgreSQL database) lives in tests/conftest.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deepcuts.contracts import C, Dataset, Daypart
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings, load_settings

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
    """``lists``: user ``u``'s list of arm ``a`` (index ``a_i``) for u's variant (odd users treatment) is
    items ``100 + (5u + a_i * list_length + r + shift) % 60``, ranks r = 1..list_length; ``served`` the
    pick of each (user, daypart): arm ``ARMS[(u + daypart index) % 2]``."""
    lists, assignments = [], []
    for u in range(1, users + 1):
        s = shift if changed_users is None or u <= changed_users else 0
        variant = "treatment" if u % 2 else "control"
        for d_i, daypart in enumerate(DAYPARTS):
            assignments.append(
                {
                    C.USER_ID: u,
                    C.DAYPART: daypart,
                    C.SEGMENT: SEGMENTS[u % 3],
                    C.ARM: ARMS[(u + d_i) % 2],
                    C.PROPENSITY: 0.5,
                    C.VARIANT: variant,
                    C.EXPERIMENT: "exp-1",
                    C.RUN_DATE: run_date,
                }
            )
        for a_i, arm in enumerate(ARMS):
            for r in range(1, list_length + 1):
                lists.append(
                    {
                        C.USER_ID: u,
                        C.VARIANT: variant,
                        C.ARM: arm,
                        C.RANK: r,
                        C.ITEM_ID: 100 + (u * 5 + a_i * list_length + r + s) % 60,
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
    assignments_frame, lists_frame = pd.DataFrame(assignments), pd.DataFrame(lists)
    return {
        "lists": lists_frame,
        "served": served_of(assignments_frame, lists_frame),
        "assignments": assignments_frame,
        "policy": pd.DataFrame(policy),
        "interactions": interactions,
    }


def served_of(assignments: pd.DataFrame, lists: pd.DataFrame) -> pd.DataFrame:
    """What the app reads: each (user, daypart)'s list, picked by its assignment's variant and arm."""
    keys = [C.USER_ID, C.DAYPART, C.ARM, C.VARIANT]
    served = assignments[keys].merge(lists, on=[C.USER_ID, C.VARIANT, C.ARM], how="inner")
    return served.sort_values([C.USER_ID, C.DAYPART, C.RANK], ignore_index=True)


def write_night(lake: Lake, run_date: date, frames: dict[str, pd.DataFrame]) -> None:
    lake.write_table(Dataset.ARM_LISTS, run_date, frames["lists"])
    lake.write_table(Dataset.SERVED_LISTS, run_date, served_of(frames["assignments"], frames["lists"]))
    lake.write_table(Dataset.ASSIGNMENTS, run_date, frames["assignments"])
    lake.write_table(Dataset.BANDIT_POLICY, run_date, frames["policy"])
    lake.write_table(Dataset.INTERACTIONS, run_date, frames["interactions"])
    lake.mark_all_complete()  # as the steps that write them do when they finish


def publish_nights(tmp_path: Path, url: str, nights: list[date], **overrides: Any) -> Settings:
    """Write and publish ``nights`` in order (night ``i`` shifted by ``i``); returns the settings used."""
    from deepcuts.pipelines.publish import publish

    settings = make_settings(tmp_path / "lake", url, rerank={"list_length": 3}, **overrides)
    lake = Lake(settings.home)
    for i, day in enumerate(nights):
        write_night(lake, day, night_frames(day, shift=i))
        assert publish(settings, day)["status"] == "published"
    return settings


def url_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The serving URL of ``backend`` (for tests parametrized over backends with per-case marks)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'serving' / 'serving.db'}"
    return request.getfixturevalue("postgres_url")


#: Fault-injection cases: every stage on SQLite; on PostgreSQL every stage too, the ones around the
#: loads and the switch in the default run and the rest marked slow (each needs its own database).
PG_FAST_STAGES = ("register", "load_lists", "gates", "switch")
