"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from deepcuts.settings import Settings, load_settings


class UserError(Exception):
    """A mistake of the person at the keyboard (bad argument, missing input): ``deepcuts`` prints the
    message as one line on stderr and exits 2, with no traceback (``--debug`` shows it)."""


@contextmanager
def start_up() -> Iterator[None]:
    """Run a command's start-up (imports, settings) with the cyclic garbage collector paused, then
    freeze what it built.

    Start-up is mostly imports: hundreds of thousands of long-lived objects (modules, classes,
    pydantic models), which the collector's full collections walk again and again while they are
    built and then during the command's work. Frozen, later collections leave them out. Only garbage
    cycles made during start-up stay in memory (a collection first would cost a full walk of the same
    heap). Outputs do not depend on when the collector runs.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()


def settings_from(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(getattr(args, "config", None))
    except FileNotFoundError as exc:  # --config / $DEEPCUTS_CONFIG names a missing file
        raise UserError(str(exc)) from exc


def run_date_arg(text: str) -> date:
    """argparse ``type=`` for run dates: ``YYYY-MM-DD`` only, so ``2026-1-8`` is a usage error."""
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD (e.g. 2026-01-08)") from None
