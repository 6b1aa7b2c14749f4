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
from typing import NoReturn

from deepcuts import __version__

#: Exceptions that mean "your input or your lake is not what this command needs", by module: they end
#: in one line on stderr. Looked up in ``sys.modules`` only (a module that is not loaded raised nothing),
#: so the error path imports nothing heavy.
USER_ERRORS: dict[str, tuple[str, ...]] = {
    "deepcuts.cli._common": ("UserError",),
    "deepcuts.demo": ("DemoNightFailedError",),  # its task logs, traceback included, are already printed
    "pydantic": ("ValidationError",),  # a bad value in the settings file or a DEEPCUTS_* variable
    "pipelines.storage": ("MissingDataError", "ContractError"),
    "pipelines.world.truth": ("WorldNotFoundError",),
    "pipelines.loaders": ("SourceError",),
    "pipelines.validation": ("ValidationFailed",),
    "pipelines.publish": ("PublishRejectedError",),
    "pipelines.serving": ("ServingError",),
    "pipelines.evaluate": ("EvaluationError",),
    "pipelines.nightly": ("StepMissingError",),
}


def is_user_error(exc: BaseException) -> bool:
    for module_name, names in USER_ERRORS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        classes = tuple(c for name in names if isinstance(c := getattr(module, name, None), type))
        if classes and isinstance(exc, classes):
            return True
    return False


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (pydantic lists one error per line)."""
    text = ""
    for line in (line.strip() for line in str(exc).splitlines()):
        if line:
            text += ("" if not text else " " if text.endswith(":") else "; ") + line
    return text or type(exc).__name__


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes end in one line (what was wrong, and where to read more), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="deepcuts", description="Nightly deep-cut recommendations: data, models, bandit, serving."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of any error, user mistakes included"
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
        # Real bugs keep their traceback; a user's mistake, or an error whose message says everything
        # (``user_error = True``, e.g. pipelines.serving.ServingError: the serving DB is down or busy),
        # is one line (the traceback with --debug).
        if args.debug or not (getattr(exc, "user_error", False) or is_user_error(exc)):
            raise
        print(f"deepcuts {args.command}: {one_line(exc)}", file=sys.stderr)
        return 2
