"""``deepcuts rollback [--to VERSION] [--list]``: switch the app back to a retained serving version.

The switch is one transaction (views re-pointed + ``publish_log`` statuses), exactly like a publish.
Without ``--to`` it goes to the newest retained version older than the live one.
"""

from __future__ import annotations

import argparse
import json

from deepcuts.cli._common import settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback", help="switch the serving views back to an earlier published version (one transaction)"
    )
    parser.add_argument("--to", type=int, default=None, metavar="VERSION", help="version number to serve")
    parser.add_argument(
        "--list", action="store_true", help="list the versions and their status; change nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines import serving

    settings = settings_from(args)
    if args.list:
        engine = serving.serving_engine(settings)
        try:
            serving.ensure_schema(engine)
            with engine.connect() as conn:
                versions = serving.list_versions(conn)
        finally:
            engine.dispose()
        print(f"{'version':>7}  {'run_date':10}  {'status':8}  {'tables':6}  list_version")
        for v in versions:
            tables = "no" if v.dropped or v.status in ("rejected", "failed") else "yes"
            label = v.list_version or "-"
            print(f"{v.version:>7}  {v.run_date.isoformat():10}  {v.status:8}  {tables:6}  {label}")
        return 0
    try:
        result = serving.rollback(settings, to=args.to)
    except serving.ServingError as exc:
        print(f"rollback failed: {exc}")
        return 1
    print(json.dumps(result, indent=2))
    return 0
