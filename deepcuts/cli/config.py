"""``deepcuts config``: print the effective settings (``--origin``: and where each value came from)."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from deepcuts.cli._common import settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config", help="print the effective settings (defaults < TOML file < environment)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of TOML-like text")
    parser.add_argument(
        "--origin",
        action="store_true",
        help="say where each value came from: default, the TOML file, or an environment variable",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = settings.model_dump(mode="json")
    origins = value_origins(data, _config_file_data(args), dict(os.environ)) if args.origin else {}
    data["effective_serving_url"] = settings.effective_serving_url
    origins.setdefault("effective_serving_url", "derived from serving_url and home")
    if args.json:
        payload = {"settings": data, "origins": origins} if args.origin else data
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    _print_toml(data, origins if args.origin else None)
    return 0


def _config_file_data(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    """The TOML file the settings were read from, and its content (``None`` without a file)."""
    from deepcuts.settings import _config_file

    path = _config_file(getattr(args, "config", None))
    if path is None or not path.exists():
        return None
    with Path(path).open("rb") as fh:
        return str(path), tomllib.load(fh)


def value_origins(
    data: dict[str, Any], config: tuple[str, dict[str, Any]] | None, environ: dict[str, str]
) -> dict[str, str]:
    """``{"bandit.discount": "env DEEPCUTS_BANDIT__DISCOUNT", ...}`` for every leaf of ``data``.

    Mirrors the precedence of ``deepcuts.settings`` (environment > TOML file > default). Environment
    names are matched case-insensitively, as pydantic-settings does; a whole section given as JSON
    (``DEEPCUTS_BANDIT='{"discount": 0.9}'``) counts for the keys it names.
    """
    env = {name.upper(): value for name, value in environ.items()}
    origins: dict[str, str] = {}

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*path, key)
            if isinstance(value, dict) and value:
                walk(value, here)
                continue
            origins[".".join(here)] = _origin(here, env, config)

    walk(data, ())
    return origins


def _origin(path: tuple[str, ...], env: dict[str, str], config: tuple[str, dict[str, Any]] | None) -> str:
    name = "DEEPCUTS_" + "__".join(path).upper()
    if name in env:
        return f"env {name}"
    for depth in range(len(path) - 1, 0, -1):  # a section set as JSON
        section = "DEEPCUTS_" + "__".join(path[:depth]).upper()
        if section in env:
            try:
                node: Any = json.loads(env[section])
                for key in path[depth:]:
                    node = node[key]
                return f"env {section}"
            except (ValueError, KeyError, TypeError):
                pass
    if config is not None:
        file_name, node = config
        try:
            for key in path:
                node = node[key]
            return f"file {file_name}"
        except (KeyError, TypeError):
            pass
    return "default"


def _print_toml(data: dict, origins: dict[str, str] | None, prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix:
        print(f"\n[{prefix}]")
    for key, value in scalars.items():
        line = f"{key} = {json.dumps(value)}"
        if origins is not None:
            line = f"{line:<48}  # {origins.get(f'{prefix}.{key}' if prefix else key, 'default')}"
        print(line)
    for key, value in tables.items():
        _print_toml(value, origins, f"{prefix}.{key}" if prefix else key)
