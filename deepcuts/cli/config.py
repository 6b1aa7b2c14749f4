"""``deepcuts config``: print the effective settings."""

from __future__ import annotations

import argparse
import json

from deepcuts.cli._common import settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config", help="print the effective settings (defaults < TOML file < environment)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of TOML-like text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = settings.model_dump(mode="json")
    data["effective_serving_url"] = settings.effective_serving_url
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    _print_toml(data)
    return 0


def _print_toml(data: dict, prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix:
        print(f"\n[{prefix}]")
    for key, value in scalars.items():
        print(f"{key} = {json.dumps(value)}")
    for key, value in tables.items():
        _print_toml(value, f"{prefix}.{key}" if prefix else key)
