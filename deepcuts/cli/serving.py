"""``deepcuts serving init [--roles]``: prepare the serving database (docker-compose's airflow-init runs it).

Creates the schema (idempotent). With ``--roles`` (PostgreSQL) it first creates the app's read-only role
and the pipeline's writer role as the administrator (``--admin-url`` or ``$DEEPCUTS_SERVING_ADMIN_URL``),
then creates the schema as the writer and grants the reader SELECT on the views.

Passwords (SCRAM-SHA-256, set by ``--roles``): the writer's is the one in the writer's URL
(``DEEPCUTS_SERVING_URL``), so the pipeline can log in with exactly what it was given; the reader's is
``$DEEPCUTS_SERVING_READER_PASSWORD``. An absent password leaves that role's password as it is.
"""

from __future__ import annotations

import argparse
import os

from deepcuts.cli._common import settings_from

ADMIN_URL_ENV = "DEEPCUTS_SERVING_ADMIN_URL"
READER_PASSWORD_ENV = "DEEPCUTS_SERVING_READER_PASSWORD"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serving", help="manage the serving database")
    sub = parser.add_subparsers(dest="serving_command", metavar="ACTION")
    sub.required = True
    init = sub.add_parser("init", help="create the serving schema (and, on PostgreSQL, the roles)")
    init.add_argument("--roles", action="store_true", help="create the reader and writer roles first")
    init.add_argument(
        "--admin-url", default=None, help=f"superuser URL for the roles (default ${ADMIN_URL_ENV})"
    )
    init.add_argument("--reader-role", default="deepcuts_app", help="the app's read-only role")
    init.add_argument("--writer-role", default="deepcuts_writer", help="the pipeline's writer role")
    init.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from deepcuts.pipelines import serving

    settings = settings_from(args)
    if args.roles:
        admin_url = args.admin_url or os.environ.get(ADMIN_URL_ENV)
        if not admin_url:
            raise SystemExit(f"--roles needs --admin-url or ${ADMIN_URL_ENV} (a superuser connection)")
        admin = serving.make_engine(admin_url)
        try:
            serving.check_reachable(admin)
            serving.apply_roles(
                admin,
                args.reader_role,
                args.writer_role,
                reader_password=os.environ.get(READER_PASSWORD_ENV) or None,
                writer_password=make_url(settings.effective_serving_url).password or None,
            )
        finally:
            admin.dispose()
    engine = serving.serving_engine(settings, writer=True)
    try:
        serving.check_reachable(engine)
        serving.ensure_schema(engine)
        if args.roles:
            serving.grant_reader(engine, args.reader_role)
    finally:
        engine.dispose()
    print(f"serving schema ready on {engine.url.render_as_string(hide_password=True)}")
    return 0
