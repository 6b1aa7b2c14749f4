"""The serving database against a careless or hostile app, a busy reader, a dead server, an operator.

- the app's role can read the ``current_*`` views and nothing else: no temporary objects, no way to
  take or block the writers' lock (real PostgreSQL);
- a reader holding a long transaction makes publish and rollback give up after a bounded wait with one
  clear :class:`ServingError`, the previous version still live;
- a serving database that is down ends publish, rollback and the CLI in one clear line;
- a rollback pins the version it switched to until an operator releases it; a rerun of a night older
  than the newest published one never switches the app back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from deepcuts.cli import main
from deepcuts.pipelines import serving
from deepcuts.pipelines.publish import publish
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings
from tests.serving_fixtures import (
    D1,
    D2,
    D3,
    make_settings,
    night_frames,
    publish_nights,
    served_of,
    write_night,
)

#: The advisory lock key today's writers took (crc32 of b"deepcuts-serving-publish").
OLD_ADVISORY_KEY = 395633785


@dataclass
class Roles:
    admin_url: str
    reader: str
    writer: str
    reader_url: str
    writer_url: str


@pytest.fixture
def roles(postgres_url: str) -> Iterator[Roles]:
    """Fresh reader and writer roles on a fresh database, created as ``deepcuts serving init`` does."""
    tag = uuid.uuid4().hex[:8]
    reader, writer = f"dc_reader_{tag}", f"dc_writer_{tag}"
    url = sa.engine.make_url(postgres_url)
    admin = serving.make_engine(postgres_url)
    try:
        serving.apply_roles(admin, reader, writer)
        yield Roles(
            postgres_url,
            reader,
            writer,
            url.set(username=reader).render_as_string(hide_password=False),
            url.set(username=writer).render_as_string(hide_password=False),
        )
    finally:
        serving.drop_roles(admin, reader, writer)
        admin.dispose()


def _live(url: str) -> tuple[int, str]:
    engine = serving.make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(serving.read_query("current_version.sql"))).one()
            label = conn.exec_driver_sql("SELECT DISTINCT list_version FROM current_recommendations").all()
        assert [r[0] for r in label] == [row.list_version]  # the views agree with current_version
        return int(row.version), str(row.list_version)
    finally:
        engine.dispose()


def _granted(tmp_path: Path, roles: Roles, nights: list, **overrides: object) -> Settings:
    settings = publish_nights(tmp_path, roles.writer_url, nights, **overrides)
    writer = serving.make_engine(roles.writer_url)
    serving.grant_reader(writer, roles.reader)
    writer.dispose()
    return settings


# --------------------------------------------------------------------------- the app's role
@pytest.mark.postgres
def test_reader_cannot_create_temporary_objects(tmp_path: Path, roles: Roles) -> None:
    _granted(tmp_path, roles, [D1])
    app = serving.make_engine(roles.reader_url)
    try:
        for statement in (
            "CREATE TEMP TABLE scratch (a INT)",
            "CREATE FUNCTION pg_temp.current_recommendations() RETURNS INT AS 'SELECT 1' LANGUAGE sql",
        ):
            with app.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.exec_driver_sql(statement)
        with app.connect() as conn:  # ... and still reads its views
            assert len(serving.read_user_list(conn, 1, "evening")) == 3
            rights = conn.exec_driver_sql(
                "SELECT has_database_privilege(current_user, current_database(), 'TEMP')"
            ).scalar()
        assert rights is False
    finally:
        app.dispose()


@pytest.mark.postgres
def test_reader_cannot_take_or_block_the_writer_lock(tmp_path: Path, roles: Roles) -> None:
    settings = _granted(tmp_path, roles, [D1])
    app = serving.make_engine(roles.reader_url)
    try:
        with app.connect() as hostile:
            # the old lock: anyone could take it, and every publish then failed after 30 s
            assert hostile.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": OLD_ADVISORY_KEY}
            ).scalar()
            hostile.commit()
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                hostile.exec_driver_sql(f"LOCK TABLE {serving.WRITER_LOCK_TABLE} IN ACCESS SHARE MODE")
            hostile.rollback()
            write_night(Lake(settings.home), D2, night_frames(D2, shift=1))
            assert publish(settings, D2)["status"] == "published"  # not blocked by the app's session
            assert serving.rollback(settings)["version"] == 1
    finally:
        app.dispose()
    assert _live(roles.writer_url) == (1, "2026-03-01.v1")


@pytest.mark.postgres
def test_roles_get_scram_passwords_from_the_caller(postgres_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    reader, writer = f"dc_reader_{tag}", f"dc_writer_{tag}"
    admin = serving.make_engine(postgres_url)
    try:
        serving.apply_roles(admin, reader, writer, reader_password="r-" + tag, writer_password="w'; --" + tag)
        with admin.connect() as conn:
            stored = dict(
                conn.execute(
                    sa.text("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (:r, :w)"),
                    {"r": reader, "w": writer},
                ).all()
            )
        assert set(stored) == {reader, writer}
        for verifier in stored.values():
            assert verifier.startswith("SCRAM-SHA-256$4096:")  # a verifier, never the password itself
            assert tag not in verifier
    finally:
        serving.drop_roles(admin, reader, writer)
        admin.dispose()


# --------------------------------------------------------------------------- a reader in the way
@pytest.mark.postgres
def test_a_long_read_transaction_ends_publish_and_rollback_in_one_clear_error(
    tmp_path: Path, roles: Roles
) -> None:
    settings = _granted(
        tmp_path, roles, [D1, D2], publish={"switch_lock_timeout_ms": 200, "switch_attempts": 2}
    )
    write_night(Lake(settings.home), D3, night_frames(D3, shift=2))
    app = serving.make_engine(roles.reader_url)
    try:
        with app.connect() as reader:
            # A forgotten transaction: it holds its views' locks until it ends (or the server ends it).
            reader.exec_driver_sql("SET idle_in_transaction_session_timeout = '30s'")
            reader.exec_driver_sql("SELECT COUNT(*) FROM current_recommendations").scalar()
            reader.exec_driver_sql("SELECT COUNT(*) FROM current_version").scalar()
            with pytest.raises(serving.ServingError, match="in use by another session") as rolled:
                serving.rollback(settings)
            with pytest.raises(serving.ServingError, match="in use by another session") as published:
                publish(settings, D3)
            reader.rollback()
    finally:
        app.dispose()
    for error in (rolled.value, published.value):
        assert "\n" not in str(error) and "pg_stat_activity" in str(error)
        assert error.__suppress_context__  # no chained LockNotAvailable traceback
    assert _live(roles.writer_url) == (2, "2026-03-02.v2")
    assert publish(settings, D3)["version"] == 4  # version 3 failed cleanly; the next try goes through


def test_a_second_writer_waits_a_bounded_time(tmp_path: Path, serving_url: str) -> None:
    settings = publish_nights(
        tmp_path, serving_url, [D1], publish={"writer_lock_timeout_ms": 200, "writer_lock_attempts": 2}
    )
    engine = serving.make_engine(serving_url, writer=True)
    try:
        with serving.writer_lock(engine, timeout_ms=200, attempts=1):
            with pytest.raises(serving.ServingError, match="holds the serving writer lock"):
                serving.rollback(settings, to=1)
            write_night(Lake(settings.home), D2, night_frames(D2, shift=1))
            with pytest.raises(serving.ServingError, match="holds the serving writer lock"):
                publish(settings, D2)
    finally:
        engine.dispose()
    assert publish(settings, D2)["status"] == "published"


# --------------------------------------------------------------------------- server down
DOWN_URL = "postgresql+psycopg2://deepcuts_writer:s3cret-pw@127.0.0.1:9/serving"


def test_publish_and_rollback_with_the_database_down_fail_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path / "lake", DOWN_URL, rerank={"list_length": 3})
    write_night(Lake(settings.home), D1, night_frames(D1))
    for call in (lambda: publish(settings, D1), lambda: serving.rollback(settings)):
        with pytest.raises(serving.ServingError, match="cannot connect to the serving database") as err:
            call()
        message = str(err.value)
        assert "\n" not in message and "127.0.0.1:9" in message and "s3cret" not in message
        assert err.value.__suppress_context__
    monkeypatch.setenv("DEEPCUTS_HOME", str(settings.home))
    monkeypatch.setenv("DEEPCUTS_SERVING_URL", DOWN_URL)
    monkeypatch.setenv("DEEPCUTS_RERANK__LIST_LENGTH", "3")
    capsys.readouterr()
    for argv in (["step", "publish", "--run-date", D1.isoformat()], ["rollback"], ["rollback", "--list"]):
        assert main(argv) == 1, argv
        out = capsys.readouterr()
        lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip() and "[" not in ln[:30]]
        assert len(lines) == 1 and "cannot connect to the serving database" in lines[0], (argv, lines)
        assert "s3cret" not in out.out + out.err


# --------------------------------------------------------------------------- pinning
def test_a_rollback_stays_pinned_until_released(tmp_path: Path, serving_url: str) -> None:
    settings = publish_nights(tmp_path, serving_url, [D1, D2, D3])
    assert serving.rollback(settings)["version"] == 2
    assert _live(serving_url) == (2, "2026-03-02.v2")
    # Airflow retries or an operator clears tonight's publish task: the app must stay on the pinned one.
    out = publish(settings, D3)
    assert out["status"] == "pinned" and out["version"] == 2
    assert _live(serving_url) == (2, "2026-03-02.v2")
    engine = serving.make_engine(serving_url)
    with engine.connect() as conn:
        pin = serving.current_pin(conn)
    engine.dispose()
    assert pin is not None and pin.version == 2
    # Releasing changes nothing by itself; the next publish goes through.
    assert serving.release_pin(settings)["released_version"] == 2
    assert _live(serving_url) == (2, "2026-03-02.v2")
    assert publish(settings, D3)["status"] == "published"
    assert _live(serving_url)[1].startswith("2026-03-03.")


def test_a_rerun_of_an_older_night_never_switches_back(tmp_path: Path, serving_url: str) -> None:
    settings = publish_nights(tmp_path, serving_url, [D1, D2, D3])
    serving.rollback(settings, to=1)
    serving.release_pin(settings)
    # D2 is newer than the live D1 but older than the newest published night D3: a stale rerun.
    assert publish(settings, D2)["status"] == "skipped_older"
    assert _live(serving_url) == (1, "2026-03-01.v1")


def test_cli_rollback_pins_and_release_unpins(
    tmp_path: Path, serving_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = publish_nights(tmp_path, serving_url, [D1, D2])
    monkeypatch.setenv("DEEPCUTS_HOME", str(settings.home))
    monkeypatch.setenv("DEEPCUTS_SERVING_URL", serving_url)
    assert main(["rollback"]) == 0
    assert main(["rollback", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "pinned" in listing and "deepcuts rollback --release" in listing
    assert main(["rollback", "--release"]) == 0
    assert "released" in capsys.readouterr().out
    assert main(["rollback", "--release"]) == 0  # nothing pinned: says so, still fine
    assert "nothing is pinned" in capsys.readouterr().out


# --------------------------------------------------------------------------- text PostgreSQL cannot hold
def test_a_nul_in_a_text_value_does_not_break_every_publish(tmp_path: Path, serving_url: str) -> None:
    """PostgreSQL text cannot hold U+0000 (COPY fails on 0x00): it is stored as U+FFFD, once, and said."""
    settings = make_settings(tmp_path / "lake", serving_url, rerank={"list_length": 3})
    frames = night_frames(D1)
    frames["lists"].loc[0, "reason"] = "because you liked Anime\x00Drama"
    write_night(Lake(settings.home), D1, frames)
    assert publish(settings, D1)["status"] == "published"
    served = served_of(frames["assignments"], frames["lists"])
    engine = serving.make_engine(serving_url)
    try:
        with engine.connect() as conn:
            user, daypart = served[served.reason.str.contains("\x00")].iloc[0][["user_id", "daypart"]]
            reason = serving.read_user_list(conn, int(user), str(daypart))[0]["reason"]
    finally:
        engine.dispose()
    want = (
        "because you liked Anime\x00Drama"
        if serving_url.startswith("sqlite")
        else "because you liked Anime\ufffdDrama"
    )
    assert reason == want
