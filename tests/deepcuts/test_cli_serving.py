from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from deepcuts.cli import main


def _views(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_view_names())
    finally:
        engine.dispose()


def test_init_creates_the_sqlite_schema_idempotently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    monkeypatch.setenv("DEEPCUTS_SERVING_URL", url)
    monkeypatch.setenv("DEEPCUTS_HOME", str(tmp_path))
    assert main(["serving", "init"]) == 0
    assert main(["serving", "init"]) == 0
    assert {"current_recommendations", "current_assignments"} <= _views(url)
    assert "serving schema ready" in capsys.readouterr().out


def test_roles_need_an_admin_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPCUTS_SERVING_URL", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.delenv("DEEPCUTS_SERVING_ADMIN_URL", raising=False)
    with pytest.raises(SystemExit, match="admin-url"):
        main(["serving", "init", "--roles"])


@pytest.mark.postgres
def test_init_with_roles_on_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepcuts.pipelines import serving

    suffix = uuid.uuid4().hex[:8]
    reader, writer = f"dc_app_{suffix}", f"dc_writer_{suffix}"
    url = sa.engine.make_url(postgres_url)
    writer_url = url.set(username=writer).render_as_string(hide_password=False)
    reader_url = url.set(username=reader).render_as_string(hide_password=False)
    monkeypatch.setenv("DEEPCUTS_SERVING_URL", writer_url)
    try:
        args = ["serving", "init", "--roles", "--admin-url", postgres_url]
        assert main([*args, "--reader-role", reader, "--writer-role", writer]) == 0
        assert "current_recommendations" in _views(postgres_url)
        app = sa.create_engine(reader_url)
        try:
            with app.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM current_recommendations")).scalar() == 0
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text("CREATE TABLE evil (x int)"))
        finally:
            app.dispose()
    finally:
        admin = serving.make_engine(postgres_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {writer}, {reader} CASCADE"))
        serving.drop_roles(admin, reader, writer)
        admin.dispose()
