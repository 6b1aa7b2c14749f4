"""``deepcuts generate``: build a synthetic world (catalog, rating history, ground truth)."""

from __future__ import annotations

import argparse
import json

from deepcuts.cli._common import settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="build a synthetic world that needs no download (defaults from [world] settings)",
        description="Write items.parquet, interactions.parquet, truth/ and world.json into --out. "
        "Same settings and seed give the same bytes.",
    )
    parser.add_argument("--out", default=None, help="output folder (default: source.path, else <home>/world)")
    parser.add_argument("--users", type=int, default=None, help="number of users (world.users)")
    parser.add_argument("--items", type=int, default=None, help="number of items (world.items)")
    parser.add_argument("--days", type=int, default=None, help="days of rating history (world.history_days)")
    parser.add_argument("--seed", type=int, default=None, help="world seed (world.seed)")
    parser.add_argument(
        "--ratings-per-user", type=float, default=None, help="mean ratings per user (world.ratings_per_user)"
    )
    parser.add_argument("--start-date", default=None, help="first day after the history (world.start_date)")
    parser.add_argument(
        "--rating-step", type=float, choices=(0.5, 1.0), default=None, help="1 = integer stars, 0.5 = halves"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.pipelines.world import generate_world

    settings = settings_from(args)
    overrides = {
        "users": args.users,
        "items": args.items,
        "history_days": args.days,
        "seed": args.seed,
        "ratings_per_user": args.ratings_per_user,
        "start_date": args.start_date,
        "rating_step": args.rating_step,
    }
    data = settings.world.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    world = type(settings.world).model_validate(data)
    default_out = (
        settings.source_path
        if settings.source.dataset == "synthetic"
        else f"{settings.home.rstrip('/')}/world"
    )
    out = args.out or default_out
    summary = generate_world(out, world)
    summary.pop("settings", None)
    summary["out"] = str(out)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
