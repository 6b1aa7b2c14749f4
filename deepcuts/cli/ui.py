"""``deepcuts ui`` (what ``make ui`` runs): the Airflow UI on the demo's lake and metadata DB."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deepcuts.cli._common import UserError, settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="start the Airflow UI (api-server, scheduler, dag-processor, triggerer) on the demo's lake",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port of the UI (default 8080; the next free one if taken)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--dags-folder", type=Path, default=None, help="DAG folder (default: the repo's dags/)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.airflow_ui import run_ui
    from deepcuts.demo import default_dags_folder

    settings = settings_from(args)
    if args.config:  # the Airflow components (and their tasks) read the same settings file
        os.environ["DEEPCUTS_CONFIG"] = str(Path(args.config).resolve())
    if not settings.is_local_home:
        raise UserError(f"deepcuts ui runs on a local lake; DEEPCUTS_HOME is {settings.home!r}")
    home = Path(settings.home).resolve()
    return run_ui(home, args.dags_folder or default_dags_folder(), args.port, args.host)
