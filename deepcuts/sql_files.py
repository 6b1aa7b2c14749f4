"""The serving database's ``.sql`` files, read from the installed package ``deepcuts.sql``.

The repository keeps them in the top-level ``sql/`` folder (``<dialect>/*.sql`` for the DDL,
``queries/*.sql`` for the app's reads); the wheel ships that folder as the package ``deepcuts.sql``
(``package-dir`` in pyproject.toml). They are read with :mod:`importlib.resources`, never through a path
relative to a source file: such a path points into the checkout and breaks once the package is installed.
"""

from __future__ import annotations

from importlib.resources import files

PACKAGE = "deepcuts.sql"
QUERIES = "queries"


class MissingSQLFileError(FileNotFoundError):
    """A ``.sql`` file the code asks for is not in the installed package."""


def read_sql(folder: str, name: str) -> str:
    """Text of ``sql/<folder>/<name>`` (``folder``: a dialect, ``postgres``/``sqlite``, or ``queries``)."""
    resource = files(PACKAGE) / folder / name
    if not resource.is_file():
        raise MissingSQLFileError(
            f"missing SQL file {folder}/{name} in package {PACKAGE} ({files(PACKAGE)}); the installed "
            "deepcuts is incomplete: reinstall it (the wheel ships sql/ as deepcuts.sql package data)"
        )
    return resource.read_text(encoding="utf-8")


def read_query(name: str) -> str:
    """Text of an app query in ``sql/queries`` (e.g. ``user_list.sql``), without comments and final ``;``.

    Comment lines are removed because ``sqlalchemy.text`` would read ``:name`` in them as a parameter.
    """
    lines = [ln for ln in read_sql(QUERIES, name).splitlines() if not ln.strip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")
