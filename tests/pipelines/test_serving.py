"""Serving database layer: schema, SQL files, views, roles, rollback (SQLite and real PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from deepcuts.pipelines import serving
from deepcuts.pipelines.storage import Lake
from tests.serving_fixtures import D1, D2, D3, night_frames, publish_nights, write_night


def test_split_statements_keeps_dollar_blocks_and_drops_comments() -> None:
    text = (
        "-- header; with a semicolon\n"
        "CREATE TABLE a (x INT);\n"
        "DO $$\nBEGIN\n  IF 1 = 1 THEN\n    CREATE ROLE r;\n  END IF;\nEND\n$$;\n"
        "\n-- only a comment\n"
        "SELECT 1;\n"
    )
    statements = serving.split_statements(text)
    assert len(statements) == 3
    assert statements[0] == "CREATE TABLE a (x INT)"
    assert statements[1].startswith("DO $$") and "CREATE ROLE r;" in statements[1]
    assert statements[2] == "SELECT 1"


@given(st.lists(st.sampled_from(["SELECT 1", "SELECT 2 -- x", "CREATE TABLE t (a INT)"]), max_size=8))
def test_split_statements_round_trips_plain_statements(parts: list[str]) -> None:
    assert serving.split_statements("".join(f"{p};\n" for p in parts)) == parts


def test_names_formatted_into_sql_are_validated() -> None:
    assert serving.version_suffix(12) == "v000012"
    assert serving.list_version_label(D1, 12) == "2026-03-01.v12"
    for bad in (-1, "1; DROP TABLE x", 1.5, True):
        with pytest.raises(ValueError):
            serving.version_suffix(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        serving.check_identifier("app; DROP ROLE postgres", "reader role")
    assert serving.check_identifier("deepcuts_app", "reader role") == "deepcuts_app"


def test_every_sql_file_parses_into_statements() -> None:
    for dialect in ("postgres", "sqlite"):
        for name in ("schema.sql", "version.sql", "indexes.sql", "views.sql", "drop_version.sql"):
            assert serving.split_statements(serving.read_sql(dialect, name)), (dialect, name)
    assert "WHERE user_id = :user_id" in serving.read_query("user_list.sql")


def test_schema_is_idempotent_and_starts_on_the_empty_version(serving_url: str) -> None:
    engine = serving.make_engine(serving_url, writer=True)
    try:
        serving.ensure_schema(engine)
        serving.ensure_schema(engine)  # second run changes nothing and does not fail
        with engine.connect() as conn:
            views = set(sa.inspect(conn).get_view_names())
            assert set(serving.VIEWS) <= views
            assert serving.read_user_list(conn, 1, "morning") == []
            assert conn.execute(sa.text(serving.read_query("current_version.sql"))).all() == []
            assert set(serving.version_table_names(conn)) == {0}
    finally:
        engine.dispose()


def test_sqlite_ddl_is_transactional(tmp_path: Path) -> None:
    """The event recipe makes DDL part of the transaction: a failure rolls the CREATE back."""
    engine = serving.make_engine(f"sqlite:///{tmp_path / 'x.db'}", writer=True)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
        raise RuntimeError("boom")
    with engine.connect() as conn:
        assert "t" not in sa.inspect(conn).get_table_names()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_rollback_switches_back_and_forth_in_one_step(tmp_path: Path, serving_url: str) -> None:
    settings = publish_nights(tmp_path, serving_url, [D1, D2, D3])
    engine = serving.make_engine(serving_url)
    try:
        with engine.connect() as conn:
            assert serving.read_user_list(conn, 1, "evening")[0]["list_version"] == "2026-03-03.v3"
        out = serving.rollback(settings)
        assert out["status"] == "rolled_back" and out["version"] == 2 and out["from_version"] == 3
        with engine.connect() as conn:
            rows = serving.read_user_list(conn, 1, "evening")
            assert [r["list_version"] for r in rows] == ["2026-03-02.v2"] * 3
            # list contents are night 2's, not a mix
            expected = night_frames(D2, shift=1)["served"]
            want = expected[(expected.user_id == 1) & (expected.daypart == "evening")].item_id.tolist()
            assert [r["item_id"] for r in rows] == want
        assert serving.rollback(settings)["version"] == 1
        with pytest.raises(serving.ServingError, match="no older retained version"):
            serving.rollback(settings)
        assert serving.rollback(settings, to=3)["version"] == 3
        assert serving.rollback(settings, to=3)["status"] == "unchanged"
        with pytest.raises(serving.ServingError, match="does not exist"):
            serving.rollback(settings, to=99)
        with engine.connect() as conn:
            live = [v for v in serving.list_versions(conn) if v.status == "live"]
            assert [v.version for v in live] == [3]
    finally:
        engine.dispose()


def test_retention_keeps_the_last_k_versions(tmp_path: Path, serving_url: str) -> None:
    days = [D1, D2, D3]
    settings = publish_nights(tmp_path, serving_url, days, publish={"keep_versions": 2})
    engine = serving.make_engine(serving_url)
    try:
        with engine.connect() as conn:
            assert set(serving.version_table_names(conn)) == {0, 2, 3}
            status = {v.version: (v.status, v.dropped) for v in serving.list_versions(conn)}
        assert status == {1: ("dropped", True), 2: ("retired", False), 3: ("live", False)}
        with pytest.raises(serving.ServingError, match="status 'dropped'"):
            serving.rollback(settings, to=1)
    finally:
        engine.dispose()


def test_alerts_replace_per_source_and_keep_acknowledgements(serving_url: str) -> None:
    engine = serving.make_engine(serving_url, writer=True)
    try:
        serving.ensure_schema(engine)
        alert = {"check_name": "gini", "category": "diversity", "severity": "critical", "message": "m"}
        serving.replace_alerts(engine, D1, "monitor", [alert])
        serving.replace_alerts(engine, D1, "monitor", [alert])  # idempotent per run date and source
        with engine.connect() as conn:
            assert [a["check_name"] for a in serving.open_critical_alerts(conn, D1)] == ["gini"]
        assert serving.acknowledge_alerts(engine, D1, by="ops") == 1
        serving.replace_alerts(engine, D1, "monitor", [alert])  # a re-run keeps the acknowledgement
        with engine.connect() as conn:
            assert serving.open_critical_alerts(conn, D1) == []
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM alerts").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_read_only_role_reads_views_and_cannot_write(tmp_path: Path, postgres_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    reader, writer = f"dc_reader_{tag}", f"dc_writer_{tag}"
    admin = serving.make_engine(postgres_url)
    writer_url = sa.engine.make_url(postgres_url).set(username=writer).render_as_string(hide_password=False)
    reader_url = sa.engine.make_url(postgres_url).set(username=reader).render_as_string(hide_password=False)
    try:
        serving.apply_roles(admin, reader, writer)
        # the pipeline runs as the writer: it creates and owns everything
        settings = publish_nights(tmp_path, writer_url, [D1])
        writer_engine = serving.make_engine(writer_url)
        serving.grant_reader(writer_engine, reader)
        writer_engine.dispose()
        app = serving.make_engine(reader_url)
        try:
            with app.connect() as conn:
                rows = serving.read_user_list(conn, 2, "night")
                assert len(rows) == 3 and rows[0]["list_version"] == "2026-03-01.v1"
                assert conn.exec_driver_sql("SELECT COUNT(*) FROM current_assignments").scalar() == 24
            denied = [
                "INSERT INTO publish_log (run_date, status, checksum) VALUES ('2026-01-01', 'failed', 'x')",
                "SELECT * FROM publish_log",
                "SELECT * FROM lists_v000001",
                "SELECT * FROM assignments_v000001",
                "DELETE FROM lists_v000001",
                "UPDATE current_assignments SET propensity = 0",
                "DELETE FROM current_assignments",
                "CREATE TABLE sneaky (a INT)",
                "DROP VIEW current_recommendations",
            ]
            for statement in denied:
                with app.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match=r"permission|owner"):
                    conn.exec_driver_sql(statement)
        finally:
            app.dispose()
        # a publish by the writer keeps the reader's grants (CREATE OR REPLACE VIEW)
        from deepcuts.pipelines.publish import publish as run_publish

        lake = Lake(settings.home)
        write_night(lake, D2, night_frames(D2, shift=5))
        run_publish(settings, D2)
        app = serving.make_engine(reader_url)
        with app.connect() as conn:
            assert serving.read_user_list(conn, 2, "night")[0]["list_version"] == "2026-03-02.v2"
        app.dispose()
    finally:
        serving.drop_roles(admin, reader, writer)
        admin.dispose()
