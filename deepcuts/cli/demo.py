"""``deepcuts demo`` (what ``make run`` runs): the real nightly DAG on the synthetic world, several nights."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deepcuts.cli._common import UserError, settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate the synthetic world and run the deepcuts_nightly DAG for a few simulated nights",
    )
    parser.add_argument("--nights", type=int, default=4, help="nights to run (default 4)")
    parser.add_argument(
        "--dags-folder", type=Path, default=None, help="DAG folder (default: the repo's dags/)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over from the world's first night: clear the demo lake except the world and the "
        "Airflow DB (default: continue after the last published night)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.demo import default_dags_folder, run_demo

    if args.nights < 1:
        raise UserError("--nights must be at least 1")
    settings = settings_from(args)
    summaries = run_demo(settings, args.nights, args.dags_folder or default_dags_folder(), args.fresh)
    _print_summary(settings, [s.__dict__ for s in summaries])
    return 0


def _print_summary(settings: Any, nights: list[dict[str, Any]]) -> None:
    from deepcuts.demo_summary import render_summary

    print(render_summary(settings, nights), flush=True)
