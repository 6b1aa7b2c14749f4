"""Publish: gates, idempotence, fault injection, a killed process, concurrent readers (SQLite + PG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from deepcuts.contracts import C, Dataset
from deepcuts.pipelines import serving
from deepcuts.pipelines.publish import STAGES, PublishRejectedError, publish
from deepcuts.pipelines.publish_gates import checksum, data_gates, seen_pairs
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings
from tests.serving_fixtures import (
    D1,
    D2,
    D3,
    PG_FAST_STAGES,
    make_settings,
    night_frames,
    served_of,
    url_for,
    write_night,
)

REPO = Path(__file__).resolve().parents[2]


def _setup(tmp_path: Path, url: str, **overrides: object) -> tuple[Settings, Lake]:
    settings = make_settings(tmp_path / "lake", url, rerank={"list_length": 3}, **overrides)
    return settings, Lake(settings.home)


def _state(url: str) -> tuple[set[str], dict[int, str], set[int]]:
    """(list_versions visible in the views, status per version, versions with tables)."""
    engine = serving.make_engine(url)
    try:
        with engine.connect() as conn:
            labels = {
                r[0]
                for r in conn.exec_driver_sql("SELECT DISTINCT list_version FROM current_recommendations")
            }
            labels |= {
                r[0] for r in conn.exec_driver_sql("SELECT DISTINCT list_version FROM current_assignments")
            }
            status = {v.version: v.status for v in serving.list_versions(conn)}
            tables = set(serving.version_table_names(conn))
        return labels, status, tables
    finally:
        engine.dispose()


def _assert_complete(url: str, label: str, frames: dict[str, pd.DataFrame]) -> None:
    """The views show exactly ``frames`` under ``label``: every list complete, nothing from elsewhere."""
    engine = serving.make_engine(url)
    try:
        with engine.connect() as conn:
            got = pd.read_sql_query(
                sa.text("SELECT list_version, user_id, daypart, rank, item_id FROM current_recommendations"),
                conn,
            )
    finally:
        engine.dispose()
    assert set(got["list_version"]) == {label}
    want = served_of(frames["assignments"], frames["lists"])[[C.USER_ID, C.DAYPART, C.RANK, C.ITEM_ID]]
    key = [C.USER_ID, C.DAYPART, C.RANK]
    pd.testing.assert_frame_equal(
        got.drop(columns="list_version")
        .sort_values(key)
        .reset_index(drop=True)
        .astype("int64", errors="ignore"),
        want.sort_values(key).reset_index(drop=True).astype("int64", errors="ignore"),
        check_dtype=False,
    )


# --------------------------------------------------------------------------- happy path, idempotence
def test_publish_loads_a_version_the_app_can_read(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    frames = night_frames(D1)
    write_night(lake, D1, frames)
    out = publish(settings, D1)
    assert out["status"] == "published" and out["version"] == 1 and out["list_version"] == "2026-03-01.v1"
    # 6 users x 2 arms x 3 ranks of lists; the views show each (user, daypart)'s pick: 24 x 3 rows
    assert out["rows"] == {"lists": 36, "assignments": 24, "bandit_policy": 24}
    assert out["lists_version"] == 1
    assert all(out["gates"].values())
    _assert_complete(serving_url, "2026-03-01.v1", frames)
    engine = serving.make_engine(serving_url)
    with engine.connect() as conn:
        rows = serving.read_user_list(conn, 5, "afternoon")
        policy = conn.exec_driver_sql(
            "SELECT COUNT(*), SUM(selection_probability) FROM current_bandit_policy"
        )
        n_policy, p_sum = policy.one()
    engine.dispose()
    assert [r["rank"] for r in rows] == [1, 2, 3]
    # user 5, afternoon (daypart index 1): arm ARMS[(5+1)%2] = svd, odd -> treatment, SEGMENTS[5%3] = power
    first = rows[0]
    assert (first["arm"], first["variant"], first["segment"], first["experiment"]) == (
        "svd",
        "treatment",
        "power",
        "exp-1",
    )
    assert first["propensity"] == pytest.approx(0.5)
    assert first["reason"] == 'because you liked "5", a classic\nof its kind'  # quotes, comma, newline
    assert first["item_id"] == 100 + (5 * 5 + 0 * 3 + 1) % 60  # svd is arm index 0
    assert bool(rows[1]["is_long_tail"]) is True and bool(first["is_long_tail"]) is False
    assert n_policy == 24 and p_sum == pytest.approx(12.0)


def test_republish_is_a_noop_or_a_clean_replace(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    write_night(lake, D1, night_frames(D1))
    first = publish(settings, D1)
    again = publish(settings, D1)
    assert again["status"] == "unchanged" and again["version"] == first["version"]
    _, status, tables = _state(serving_url)
    assert status == {1: "live"} and tables == {0, 1}

    changed = night_frames(D1, shift=7)  # the step was re-run with a fix: same run date, new data
    write_night(lake, D1, changed)
    replaced = publish(settings, D1)
    assert replaced["status"] == "published" and replaced["version"] == 2
    labels, status, tables = _state(serving_url)
    assert labels == {"2026-03-01.v2"}
    assert status == {1: "replaced", 2: "live"}
    assert tables == {0, 2}  # the replaced version's tables are gone: never two copies of a night
    _assert_complete(serving_url, "2026-03-01.v2", changed)


def test_backfill_of_an_older_night_keeps_the_newer_one_live(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    write_night(lake, D1, night_frames(D1))
    write_night(lake, D2, night_frames(D2, shift=1))
    publish(settings, D2)
    assert publish(settings, D1)["status"] == "skipped_older"
    assert _state(serving_url)[0] == {"2026-03-02.v1"}


@hyp_settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(12))), st.integers(0, 11))
def test_checksum_ignores_row_order_but_not_values(order: list[int], changed_row: int) -> None:
    frame = night_frames(D1, users=2)["lists"]
    assert checksum(frame) == checksum(frame.iloc[order])
    altered = frame.copy()
    altered.loc[changed_row, C.ITEM_ID] += 1000
    assert checksum(altered) != checksum(frame)


def test_seen_pairs_reads_the_newest_snapshot_up_to_the_run_date(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    for day, pairs in (
        (D1, [(1, 5)]),
        (D2, [(1, 5), (1, 6), (2, 7)]),
        (D3, [(1, 5), (1, 6), (2, 7), (1, 8)]),
    ):
        frame = night_frames(day, users=2)["interactions"].iloc[: len(pairs)].copy()
        frame[C.USER_ID] = [u for u, _ in pairs]
        frame[C.ITEM_ID] = [i for _, i in pairs]
        lake.write_table(Dataset.INTERACTIONS, day, frame)
    got = seen_pairs(lake, D2, np.array([1]))  # D3 is the future; user 2 is not being published
    assert sorted(map(tuple, got.to_numpy().tolist())) == [(1, 5), (1, 6)]
    assert seen_pairs(lake, D1 - timedelta(days=1), np.array([1])).empty


# --------------------------------------------------------------------------- gates
def _drop_list(f: dict[str, pd.DataFrame]) -> None:
    s = f["lists"]
    f["lists"] = s[~((s.user_id == 2) & (s.arm == "svd"))]


def _short_list(f: dict[str, pd.DataFrame]) -> None:
    s = f["lists"]
    f["lists"] = s[~((s.user_id == 2) & (s.arm == "svd") & (s["rank"] == 3))]


def _orphan_list(f: dict[str, pd.DataFrame]) -> None:
    # user 2 is a control user: a treatment list of theirs could never be served
    extra = f["lists"][f["lists"].user_id == 2].assign(variant="treatment")
    f["lists"] = pd.concat([f["lists"], extra], ignore_index=True)


def _dup_rank(f: dict[str, pd.DataFrame]) -> None:
    f["lists"].loc[1, C.RANK] = 1


def _dup_item(f: dict[str, pd.DataFrame]) -> None:
    f["lists"].loc[1, C.ITEM_ID] = f["lists"].loc[0, C.ITEM_ID]


def _seen_item(f: dict[str, pd.DataFrame]) -> None:
    # user 1 (rated items 0..9), arm long_tail: a list no assignment of the night picks is gated too
    f["lists"].loc[4, C.ITEM_ID] = 3


def _nan_score(f: dict[str, pd.DataFrame]) -> None:
    f["lists"].loc[7, C.SCORE] = np.nan


def _inf_novelty(f: dict[str, pd.DataFrame]) -> None:
    f["lists"].loc[7, C.NOVELTY] = np.inf


def _zero_propensity(f: dict[str, pd.DataFrame]) -> None:
    f["assignments"].loc[3, C.PROPENSITY] = 0.0


def _missing_daypart(f: dict[str, pd.DataFrame]) -> None:
    a = f["assignments"]
    f["assignments"] = a[~((a.user_id == 3) & (a.daypart == "morning"))]


def _dup_assignment(f: dict[str, pd.DataFrame]) -> None:
    f["assignments"] = pd.concat([f["assignments"], f["assignments"].iloc[[0]]], ignore_index=True)


def _bad_daypart(f: dict[str, pd.DataFrame]) -> None:
    f["assignments"].loc[f["assignments"].daypart == "night", C.DAYPART] = "midnight"


def _policy_sum(f: dict[str, pd.DataFrame]) -> None:
    f["policy"].loc[0, C.SELECTION_PROBABILITY] = 0.9


def _no_users(f: dict[str, pd.DataFrame]) -> None:
    f["lists"] = f["lists"].iloc[0:0]
    f["assignments"] = f["assignments"].iloc[0:0]


BAD_NIGHTS: dict[str, tuple[Callable[[dict[str, pd.DataFrame]], None], str]] = {
    "missing list": (_drop_list, "complete"),
    "short list": (_short_list, "complete"),
    "list without assignment": (_orphan_list, "complete"),
    "missing daypart": (_missing_daypart, "complete"),
    "no users": (_no_users, "complete"),
    "duplicate rank": (_dup_rank, "lists_unique"),
    "duplicate item": (_dup_item, "lists_unique"),
    "duplicate assignment": (_dup_assignment, "assignments_unique"),
    "seen item": (_seen_item, "no_seen_items"),
    "nan score": (_nan_score, "finite"),
    "inf novelty": (_inf_novelty, "finite"),
    "zero propensity": (_zero_propensity, "finite"),
    "unknown daypart": (_bad_daypart, "known_values"),
    "policy does not sum to 1": (_policy_sum, "policy_valid"),
}


@pytest.mark.parametrize("kind", list(BAD_NIGHTS))
def test_data_gates_reject_each_kind_of_bad_output(kind: str) -> None:
    spoil, gate = BAD_NIGHTS[kind]
    frames = night_frames(D1)
    good = data_gates(frames["lists"], frames["assignments"], frames["policy"], frames["interactions"], 3)
    assert all(g["passed"] for g in good), good
    spoil(frames)
    gates = data_gates(frames["lists"], frames["assignments"], frames["policy"], frames["interactions"], 3)
    failed = {g["gate"] for g in gates if not g["passed"]}
    assert gate in failed, gates


REJECT_CASES = [
    pytest.param("sqlite", k, id=f"sqlite-{k}") for k in ("short list", "inf novelty", "duplicate rank")
] + [pytest.param("postgres", "seen item", id="postgres-seen item", marks=pytest.mark.postgres)]


@pytest.mark.parametrize(("backend", "kind"), REJECT_CASES)
def test_rejected_night_keeps_yesterdays_version(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, kind: str
) -> None:
    serving_url = url_for(request, backend, tmp_path)
    settings, lake = _setup(tmp_path, serving_url)
    good = night_frames(D1)
    write_night(lake, D1, good)
    publish(settings, D1)
    bad = night_frames(D2, shift=1)
    BAD_NIGHTS[kind][0](bad)
    write_night(lake, D2, bad)
    with pytest.raises(PublishRejectedError, match=BAD_NIGHTS[kind][1]):
        publish(settings, D2)
    labels, status, tables = _state(serving_url)
    assert labels == {"2026-03-01.v1"} and status[1] == "live"
    assert status[2] == "rejected" and tables == {0, 1}
    _assert_complete(serving_url, "2026-03-01.v1", good)
    engine = serving.make_engine(serving_url)
    with engine.connect() as conn:
        alerts = serving.open_critical_alerts(conn, D2, exclude_source=None)
        assert serving.open_critical_alerts(conn, D2) == []  # its own report does not block a retry
    engine.dispose()
    assert [a["check_name"] for a in alerts] == ["publish_gates"]
    fixed = night_frames(D2, shift=1)  # the upstream step was fixed and re-run
    write_night(lake, D2, fixed)
    assert publish(settings, D2)["status"] == "published"
    _assert_complete(serving_url, "2026-03-02.v3", fixed)


def test_critical_alert_blocks_publish_until_acknowledged(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    write_night(lake, D1, night_frames(D1))
    engine = serving.make_engine(serving_url, writer=True)
    serving.ensure_schema(engine)
    critical = {
        "check_name": "mean_predicted_quality",
        "category": "quality",
        "severity": "critical",
        "message": "mean quality 3.1 < 3.8",
    }
    serving.replace_alerts(engine, D1, "monitor", [critical])
    with pytest.raises(PublishRejectedError, match="no_critical_alert"):
        publish(settings, D1)
    labels, status, _ = _state(serving_url)
    assert labels == set() and "live" not in status.values()  # still the empty version
    serving.acknowledge_alerts(engine, D1, by="ops", check_name="mean_predicted_quality")
    engine.dispose()
    assert publish(settings, D1)["status"] == "published"


def test_changed_share_outside_the_band_is_rejected(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(
        tmp_path, serving_url, publish={"min_changed_share": 0.2, "max_changed_share": 0.8}
    )
    write_night(lake, D1, night_frames(D1))
    assert publish(settings, D1)["changed_share"] is None
    # 3 of 6 users change -> 0.5: inside the band
    write_night(lake, D2, night_frames(D2, shift=1, changed_users=3))
    assert publish(settings, D2)["changed_share"] == pytest.approx(0.5)
    # nothing changed since D2 -> 0.0: implausible (yesterday's lists re-published)
    write_night(lake, D3, night_frames(D3, shift=1, changed_users=3))
    with pytest.raises(PublishRejectedError, match="changed_share"):
        publish(settings, D3)
    labels, status, tables = _state(serving_url)
    assert labels == {"2026-03-02.v2"} and status[3] == "rejected" and 3 not in tables


# --------------------------------------------------------------------------- faults
class InjectedFaultError(RuntimeError):
    pass


FAULT_CASES = [pytest.param("sqlite", s, id=f"sqlite-{s}") for s in STAGES] + [
    pytest.param(
        "postgres",
        s,
        id=f"postgres-{s}",
        marks=[pytest.mark.postgres] + ([] if s in PG_FAST_STAGES else [pytest.mark.slow]),
    )
    for s in STAGES
]


@pytest.mark.parametrize(("backend", "stage"), FAULT_CASES)
def test_failure_after_any_stage_leaves_a_complete_version(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, stage: str
) -> None:
    serving_url = url_for(request, backend, tmp_path)
    settings, lake = _setup(tmp_path, serving_url)
    n1, n2 = night_frames(D1), night_frames(D2, shift=1)
    write_night(lake, D1, n1)
    write_night(lake, D2, n2)
    publish(settings, D1)

    def fail(done: str) -> None:
        if done == stage:
            raise InjectedFaultError(f"after {done}")

    with pytest.raises(InjectedFaultError):
        publish(settings, D2, on_stage=fail)
    labels, _, _ = _state(serving_url)
    switched = STAGES.index(stage) >= STAGES.index("switch")
    if switched:
        _assert_complete(serving_url, "2026-03-02.v2", n2)
    else:
        _assert_complete(serving_url, "2026-03-01.v1", n1)

    out = publish(settings, D2)  # the retry succeeds and ends on night 2
    assert out["status"] in ("published", "unchanged")
    labels, status, tables = _state(serving_url)
    assert len(labels) == 1 and labels.pop().startswith("2026-03-02")
    live = [v for v, s in status.items() if s == "live"]
    assert len(live) == 1
    assert not [v for v, s in status.items() if s in serving.IN_FLIGHT]
    retained = {v for v, s in status.items() if s in serving.RETAINED}
    assert tables == retained | {0}  # no orphan tables
    _assert_complete(serving_url, f"2026-03-02.v{live[0]}", n2)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from deepcuts.settings import load_settings
    from deepcuts.pipelines.publish import publish

    home, url, stage, marker = sys.argv[1:5]
    settings = load_settings(home=home, serving_url=url, rerank={"list_length": 3})

    def hang(done):
        if done == stage:
            Path(marker).write_text(done)
            time.sleep(600)

    publish(settings, "2026-03-02", on_stage=hang)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["load_lists", "gates"])
def test_killed_publish_process_leaves_the_old_version_and_next_run_recovers(
    tmp_path: Path, serving_url: str, stage: str
) -> None:
    settings, lake = _setup(tmp_path, serving_url)
    n1, n2 = night_frames(D1), night_frames(D2, shift=1)
    write_night(lake, D1, n1)
    write_night(lake, D2, n2)
    publish(settings, D1)
    marker = tmp_path / "marker"
    script = tmp_path / "kill_me.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), settings.home, serving_url, stage, str(marker)], env=env, cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "publish subprocess ended before reaching the stage"
            assert time.monotonic() < deadline, "publish subprocess never reached the stage"
            time.sleep(0.05)
        # The lock is taken, a version is half-way: kill it without any chance to clean up.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_complete(serving_url, "2026-03-01.v1", n1)
    _, status, tables = _state(serving_url)
    assert status[2] in serving.IN_FLIGHT and 2 in tables  # the debris of the killed run

    out = publish(settings, D2)
    assert out["status"] == "published" and out["recovered"] == [2]
    _, status, tables = _state(serving_url)
    assert status == {1: "retired", 2: "failed", 3: "live"} and tables == {0, 1, 3}
    _assert_complete(serving_url, "2026-03-02.v3", n2)


# --------------------------------------------------------------------------- concurrent readers
def test_concurrent_readers_see_no_errors_and_no_partial_lists(tmp_path: Path, serving_url: str) -> None:
    settings, lake = _setup(tmp_path, serving_url, publish={"keep_versions": 2})
    nights = [date(2026, 3, d) for d in range(1, 6)]
    for i, day in enumerate(nights):
        write_night(lake, day, night_frames(day, users=12, shift=i))
    publish(settings, nights[0])
    stop = threading.Event()
    errors: list[str] = []
    partial: list[object] = []
    seen_labels: set[str] = set()
    reads = [0]
    lock = threading.Lock()
    dayparts = ["morning", "afternoon", "evening", "night"]

    def reader(worker: int) -> None:
        engine = serving.make_engine(serving_url)
        i = worker
        try:
            while not stop.is_set():
                i += 1
                user, daypart = 1 + i % 12, dayparts[i % 4]
                try:
                    with engine.connect() as conn:
                        rows = serving.read_user_list(conn, user, daypart)
                except Exception as exc:  # any error is a failure of the publish design
                    with lock:
                        errors.append(repr(exc))
                    continue
                labels = {r["list_version"] for r in rows}
                ok = [r["rank"] for r in rows] == [1, 2, 3] and len(labels) == 1
                with lock:
                    reads[0] += 1
                    seen_labels.update(labels)
                    if not ok:
                        partial.append(rows)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=reader, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        for day in nights[1:]:
            time.sleep(0.2)
            assert publish(settings, day)["status"] == "published"
        serving.rollback(settings)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert partial == []
    assert reads[0] > 50
    assert len(seen_labels) >= 2  # the readers really did see versions change under them
