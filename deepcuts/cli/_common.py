"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
from datetime import date

from deepcuts.settings import Settings, load_settings


class UserError(Exception):
    """A mistake of the person at the keyboard (bad argument, missing input): ``deepcuts`` prints the
    message as one line on stderr and exits 2, with no traceback (``--debug`` shows it)."""


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
