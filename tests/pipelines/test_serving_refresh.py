"""Intraday refresh publishes (issue 17): a refresh loads only assignments + policy on the night's lists
already in the serving DB; the app's reads during refreshes see one complete version, never a mix
(SQLite + PostgreSQL)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from deepcuts.contracts import C
from deepcuts.pipelines import serving
from deepcuts.pipelines.publish import PublishInputs, PublishRejectedError, publish
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings
from tests.serving_fixtures import ARMS, D1, D2, D3, make_settings, night_frames, served_of, write_night

DAYPARTS = ("morning", "afternoon", "evening", "night")


def _setup(tmp_path: Path, url: str, **overrides: Any) -> tuple[Settings, Lake]:
    settings = make_settings(tmp_path / "lake", url, rerank={"list_length": 3}, **overrides)
    return settings, Lake(settings.home)


def _refresh(frames: dict[str, pd.DataFrame], k: int) -> pd.DataFrame:
    """Refresh ``k``'s assignments: treatment users' arms rotated by ``k``, a propensity that names k;
    control users, segments and variants kept (what intraday.redraw_arms changes)."""
    out = frames["assignments"].copy()
    treated = out[C.VARIANT] == "treatment"
    day = out[C.DAYPART].map({d: i for i, d in enumerate(DAYPARTS)})
    rotated = [ARMS[(u + d + k) % 2] for u, d in zip(out[C.USER_ID], day, strict=True)]
    out.loc[treated, C.ARM] = pd.Series(rotated, index=out.index)[treated]
    out.loc[treated, C.PROPENSITY] = 0.25 + 0.05 * k
    return out


def _tables(url: str) -> dict[int, set[str]]:
    engine = serving.make_engine(url)
    try:
        with engine.connect() as conn:
            return serving.version_tables(conn)
    finally:
        engine.dispose()


def _expected(label: str, assignments: pd.DataFrame, lists: pd.DataFrame) -> dict[str, Any]:
    """(user, daypart) -> (arm, variant, propensity, items) the app must read under ``label``."""
    served = served_of(assignments, lists).merge(
        assignments[[C.USER_ID, C.DAYPART, C.PROPENSITY]], on=[C.USER_ID, C.DAYPART]
    )
    out: dict[tuple[int, str], tuple[str, str, float, list[int]]] = {}
    for (user, daypart), rows in served.groupby([C.USER_ID, C.DAYPART]):
        rows = rows.sort_values(C.RANK)
        first = rows.iloc[0]
        out[(int(user), str(daypart))] = (
            str(first[C.ARM]),
            str(first[C.VARIANT]),
            round(float(first[C.PROPENSITY]), 6),
            rows[C.ITEM_ID].astype(int).tolist(),
        )
    return {label: out}


# --------------------------------------------------------------------------- what a refresh loads
def test_a_refresh_loads_only_assignments_and_reads_the_nights_lists(
    tmp_path: Path, serving_url: str
) -> None:
    settings, lake = _setup(tmp_path, serving_url, publish={"keep_versions": 2})
    night = night_frames(D1)
    write_night(lake, D1, night)
    first = publish(settings, D1)
    assert first["rows"]["lists"] == 36 and first["lists_version"] == 1

    refresh = PublishInputs(_refresh(night, 1), night["policy"])
    out = publish(settings, D1, inputs=refresh)
    assert out["status"] == "published" and out["version"] == 2 and out["lists_version"] == 1
    assert out["rows"] == {"assignments": 24, "bandit_policy": 24}  # no list reloaded
    assert out["gates"]["lists_cover_assignments"] is True
    # the app reads refresh 1's arm and propensity with the night's list of that arm, under its label
    engine = serving.make_engine(serving_url)
    with engine.connect() as conn:
        rows = serving.read_user_list(conn, 5, "afternoon")  # treatment user 5: svd at night, long_tail now
    engine.dispose()
    want = _expected("x", refresh.assignments, night["lists"])["x"][(5, "afternoon")]
    assert want[0] == "long_tail"
    got = rows[0]
    assert (got["list_version"], got["arm"], got["propensity"]) == ("2026-03-01.v2", "long_tail", 0.3)
    assert [r["item_id"] for r in rows] == want[3] == [100 + (5 * 5 + 1 * 3 + r) % 60 for r in (1, 2, 3)]
    # a rerun of the same refresh publishes nothing (same checksum)
    assert publish(settings, D1, inputs=refresh)["status"] == "unchanged"
    assert set(_tables(serving_url)) == {0, 1, 2} and "lists" not in _tables(serving_url)[2]

    # more refreshes: retention drops the night's policy tables but keeps the lists they all read
    for k in (2, 3):
        assert (
            publish(settings, D1, inputs=PublishInputs(_refresh(night, k), night["policy"]))["version"]
            == 1 + k
        )
    tables = _tables(serving_url)
    assert tables[1] == {"lists"} and tables[3] == {"assignments", "bandit_policy"} and 2 not in tables
    # a rollback to the retained refresh works (its lists are there) and pins, as for a nightly version
    assert serving.rollback(settings)["version"] == 3
    assert (
        publish(settings, D1, inputs=PublishInputs(_refresh(night, 4), night["policy"]))["status"] == "pinned"
    )
    serving.release_pin(settings)

    # a refresh of a run date whose night is not live has no lists to refer to: nothing is published
    assert publish(settings, D2, inputs=PublishInputs(night_frames(D2)["assignments"], night["policy"]))[
        "status"
    ] == ("no_lists")
    # the next nights: night 1's lists stay while a retained version reads them, then are dropped
    write_night(lake, D2, night_frames(D2, shift=1))
    assert publish(settings, D2)["version"] == 5
    assert _tables(serving_url)[1] == {"lists"}  # retained refresh 3 (version 4) still reads them
    write_night(lake, D3, night_frames(D3, shift=2))
    assert publish(settings, D3)["version"] == 6
    assert {v for v, kinds in _tables(serving_url).items() if "lists" in kinds} == {0, 5, 6}


def test_a_refresh_picking_an_arm_without_lists_is_rejected(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    night = night_frames(D1)
    write_night(lake, D1, night)
    publish(settings, D1)
    bad = _refresh(night, 1)
    bad.loc[bad[C.USER_ID] == 3, C.ARM] = "graph"  # the night loaded no graph list for user 3
    with pytest.raises(PublishRejectedError, match="lists_cover_assignments"):
        publish(settings, D1, inputs=PublishInputs(bad, night["policy"]))
    engine = serving.make_engine(serving_url)
    with engine.connect() as conn:
        assert serving.live_version(conn).version == 1
        status = {v.version: v.status for v in serving.list_versions(conn)}
    engine.dispose()
    assert status == {1: "live", 2: "rejected"} and set(_tables(serving_url)) == {0, 1}


# --------------------------------------------------------------------------- reads during refreshes
def test_reads_during_refreshes_see_one_consistent_version_and_no_error(
    tmp_path: Path, serving_url: str
) -> None:
    """Readers loop on the app's query while refreshes (and a night, and a rollback) publish: every read
    is one version's complete list, whose arm, propensity and items are exactly that version's."""
    settings, lake = _setup(tmp_path, serving_url, publish={"keep_versions": 3})
    users = 12
    night = night_frames(D1, users=users)
    write_night(lake, D1, night)
    assert publish(settings, D1)["version"] == 1
    refreshes = [_refresh(night, k) for k in range(1, 7)]
    expected = _expected("2026-03-01.v1", night["assignments"], night["lists"])
    for k, assignments in enumerate(refreshes, start=1):
        expected |= _expected(f"2026-03-01.v{1 + k}", assignments, night["lists"])
    night2 = night_frames(D2, users=users, shift=1)
    write_night(lake, D2, night2)
    expected |= _expected(f"2026-03-02.v{2 + len(refreshes)}", night2["assignments"], night2["lists"])

    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    wrong: list[object] = []
    seen: set[str] = set()
    reads = [0]

    def reader(worker: int) -> None:
        engine = serving.make_engine(serving_url)
        i = worker
        try:
            while not stop.is_set():
                i += 1
                user, daypart = 1 + i % users, DAYPARTS[(i // users) % 4]
                try:
                    with engine.connect() as conn:
                        rows = serving.read_user_list(conn, user, daypart)
                except Exception as exc:  # any error is a failure of the publish design
                    with lock:
                        errors.append(repr(exc))
                    continue
                labels = {r["list_version"] for r in rows}
                label = next(iter(labels)) if len(labels) == 1 else None
                want = expected.get(label, {}).get((user, daypart)) if label else None
                got = (
                    {(r["arm"], r["variant"], round(float(r["propensity"]), 6)) for r in rows},
                    [r["item_id"] for r in rows],
                    [r["rank"] for r in rows],
                )
                ok = want is not None and got == ({want[:3]}, want[3], [1, 2, 3])
                with lock:
                    reads[0] += 1
                    if label:
                        seen.add(label)
                    if not ok:
                        wrong.append((user, daypart, rows, want))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=reader, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        for assignments in refreshes:
            time.sleep(0.15)
            out = publish(settings, D1, inputs=PublishInputs(assignments, night["policy"]))
            assert out["status"] == "published" and out["lists_version"] == 1
        time.sleep(0.15)
        assert publish(settings, D2)["status"] == "published"
        time.sleep(0.15)
        serving.rollback(settings)  # back to the last refresh of night 1: its lists must still be there
        time.sleep(0.15)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert wrong == []
    assert reads[0] > 100
    assert len(seen) >= 4  # the readers really did see versions change under them
    engine = serving.make_engine(serving_url)
    with engine.connect() as conn:
        live = serving.live_version(conn)
        # the reader role's view of the live version: one label, the rolled-back refresh
        labels = conn.execute(sa.text("SELECT DISTINCT list_version FROM current_recommendations")).all()
    engine.dispose()
    assert live.version == 1 + len(refreshes) and [r[0] for r in labels] == [live.list_version]


def test_a_serving_db_from_before_the_shared_lists_gets_the_new_columns(
    tmp_path: Path, serving_url: str
) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    engine = serving.make_engine(serving_url, writer=True)
    try:
        serving.ensure_schema(engine)
        with engine.begin() as conn:  # publish_log as it was created before this change
            conn.exec_driver_sql("ALTER TABLE publish_log DROP COLUMN lists_version")
            conn.exec_driver_sql("ALTER TABLE publish_log DROP COLUMN lists_checksum")
        serving.ensure_schema(engine)
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("publish_log")}
    finally:
        engine.dispose()
    assert {"lists_version", "lists_checksum"} <= columns
    write_night(lake, D1, night_frames(D1))
    assert publish(settings, D1)["lists_version"] == 1
