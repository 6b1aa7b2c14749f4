"""The ``deepcuts`` command line.

Each sub-command lives in its own module in this package and exposes
``register(subparsers) -> None``; modules are discovered, so adding a command is adding a file.
``register`` must only declare arguments: heavy imports belong inside the command's handler, so that
``deepcuts --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from deepcuts import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepcuts", description="Nightly deep-cut recommendations: data, models, bandit, serving."
    )
    parser.add_argument("--version", action="version", version=f"deepcuts {__version__}")
    parser.add_argument(
        "--config", default=None, help="settings TOML file (default: $DEEPCUTS_CONFIG or ./deepcuts.toml)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Errors whose message says everything (e.g. pipelines.serving.ServingError: the serving DB is
        # down or busy) end in that one line instead of a traceback of the driver's internals.
        if not getattr(exc, "user_error", False):
            raise
        print(f"deepcuts {args.command}: {exc}", file=sys.stderr)
        return 1
