"""``deepcuts simulate``: rehearse N nights in a closed loop (real nightly steps + simulated users)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepcuts.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run N nights of the real pipeline in a closed loop with simulated users (docs/simulator.md)",
    )
    parser.add_argument("--world", choices=["synthetic", "movielens"], default="synthetic")
    parser.add_argument(
        "--dataset",
        choices=["ml-100k", "ml-1m", "ml-latest-small", "csv"],
        default=None,
        help="MovieLens replay: the dataset kind (default ml-100k)",
    )
    parser.add_argument("--path", default=None, help="MovieLens replay: folder with the dataset files")
    parser.add_argument("--days", type=int, default=14, help="number of simulated nights (default 14)")
    parser.add_argument(
        "--seed", type=int, default=None, help="master seed (and synthetic world seed); default: settings"
    )
    parser.add_argument("--out", default="sim.json", help="output JSON (a PNG is written next to it)")
    parser.add_argument("--home", default=None, help="data lake root for the simulation (default: settings)")
    parser.add_argument("--users", type=int, default=None, help="synthetic world: number of users")
    parser.add_argument("--items", type=int, default=None, help="synthetic world: number of items")
    parser.add_argument("--shards", type=int, default=None, help="user shards per night (default: settings)")
    parser.add_argument(
        "--skip", action="append", default=None, metavar="STEP", help="registry step not to run (repeatable)"
    )
    parser.add_argument(
        "--signup-rate",
        type=float,
        default=None,
        help="synthetic world: sign-ups a day as a share of --users (world.daily_signup_rate)",
    )
    parser.add_argument(
        "--planted-lift",
        type=float,
        default=None,
        help="synthetic world: make one arm per context truly best, click x (1 + lift) "
        "(simulator.planted_arm_lift; bandit validation)",
    )
    parser.add_argument(
        "--refreshes-per-day",
        type=int,
        default=None,
        help="serve each day in N slots with an intraday bandit refresh after each "
        "(simulator.refreshes_per_day; 1 = nightly learning only)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.pipelines.simulate import simulate

    settings = settings_from_args(args)
    out = Path(args.out)
    record = simulate(settings, args.world, args.days, out=out, n_shards=args.shards)
    print(json.dumps(record["summary"], indent=2))
    print(f"wrote {out}" + (f" and {record['plot']}" if record.get("plot") else ""))
    return 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings file/environment with the command line's overrides applied."""
    from deepcuts.settings import load_settings

    base = load_settings(getattr(args, "config", None))
    overrides: dict = {}
    if args.home:
        overrides["home"] = args.home
    world = base.world.model_dump()
    source = base.source.model_dump()
    simulator = base.simulator.model_dump()
    if args.seed is not None:
        overrides["seed"] = args.seed
        world["seed"] = args.seed
    if args.users is not None:
        world["users"] = args.users
    if args.items is not None:
        world["items"] = args.items
    if args.world == "movielens":
        source["dataset"] = args.dataset or "ml-100k"
        if args.path:
            source["path"] = args.path
        if not source.get("path"):
            raise SystemExit("deepcuts simulate --world movielens needs --path DIR (the dataset folder)")
    else:
        if args.dataset or args.path:
            raise SystemExit("--dataset/--path are for --world movielens; the synthetic world is generated")
        source["dataset"] = "synthetic"
    if args.skip:
        simulator["skip_steps"] = tuple(args.skip)
    synthetic_only = {"--signup-rate": args.signup_rate, "--planted-lift": args.planted_lift}
    if args.world != "synthetic" and any(v is not None for v in synthetic_only.values()):
        raise SystemExit(f"{' and '.join(synthetic_only)} are for --world synthetic (the world has a truth)")
    if args.signup_rate is not None:
        world["daily_signup_rate"] = args.signup_rate
    if args.planted_lift is not None:
        simulator["planted_arm_lift"] = args.planted_lift
    if getattr(args, "refreshes_per_day", None) is not None:
        simulator["refreshes_per_day"] = args.refreshes_per_day
    return load_settings(
        getattr(args, "config", None), world=world, source=source, simulator=simulator, **overrides
    )
