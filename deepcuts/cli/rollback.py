"""``deepcuts rollback [--to VERSION] [--list] [--release]``: serve a retained serving version, pinned.

The switch is one transaction (views re-pointed + ``publish_log`` statuses + the pin), exactly like a
publish. Without ``--to`` it goes to the newest retained version older than the live one. The version
rolled back to stays **pinned**: publishes load nothing and leave the views alone until an operator runs
``deepcuts rollback --release`` (which switches nothing by itself; the next publish does).
"""

from __future__ import annotations

import argparse
import json

from deepcuts.cli._common import settings_from
from deepcuts.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="switch the serving views back to an earlier published version and pin it (one transaction)",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--to", type=int, default=None, metavar="VERSION", help="version number to serve")
    action.add_argument(
        "--list", action="store_true", help="list the versions, their status and the pin; change nothing"
    )
    action.add_argument(
        "--release",
        action="store_true",
        help="release the pin set by a rollback, so that the next publish switches the views again",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.pipelines import serving

    settings = settings_from(args)
    try:
        if args.list:
            return _list(settings)
        if args.release:
            result = serving.release_pin(settings)
            if result["status"] == "not_pinned":
                print("nothing is pinned; publishes switch the views as usual")
            else:
                print(f"released the pin on version {result['released_version']}; the next publish switches")
            return 0
        result = serving.rollback(settings, to=args.to)
    except serving.ServingError as exc:
        print(f"rollback failed: {exc}")
        return 1
    print(json.dumps(result, indent=2))
    print("pinned: publishes leave the views alone until `deepcuts rollback --release`")
    return 0


def _list(settings: Settings) -> int:
    from deepcuts.pipelines import serving

    engine = serving.serving_engine(settings)
    try:
        serving.check_reachable(engine)
        serving.ensure_schema(engine)
        with engine.connect() as conn:
            versions = serving.list_versions(conn)
            pin = serving.current_pin(conn)
    finally:
        engine.dispose()
    print(f"{'version':>7}  {'run_date':10}  {'status':8}  {'tables':6}  list_version")
    for v in versions:
        tables = "no" if v.dropped or v.status in ("rejected", "failed") else "yes"
        label = v.list_version or "-"
        mark = "  (pinned)" if pin is not None and pin.version == v.version else ""
        print(f"{v.version:>7}  {v.run_date.isoformat():10}  {v.status:8}  {tables:6}  {label}{mark}")
    if pin is not None:
        print(
            f"version {pin.version} is pinned since {pin.pinned_at} ({pin.reason}): publishes leave the "
            "views alone until `deepcuts rollback --release`"
        )
    return 0
