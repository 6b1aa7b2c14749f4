"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse

from deepcuts.settings import Settings, load_settings


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))
