"""``deepcuts step NAME --run-date D``: run one nightly step by hand, exactly as its Airflow task would.

Useful to rerun one step after a fix without Airflow, and used by ``deepcuts bench`` to run every task in
its own process (as Airflow workers do) so that its time and peak memory can be measured.
"""

from __future__ import annotations

import argparse
import json

from deepcuts.cli._common import settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    from pipelines.nightly import STEP_NAMES, WEEKLY_STEPS

    parser = subparsers.add_parser(
        "step", help="run one nightly step for a run date (as its Airflow task does)"
    )
    parser.add_argument(
        "name",
        choices=(*STEP_NAMES, *(s.name for s in WEEKLY_STEPS)),
        help="step of the registry (docs/architecture.md), or a weekly step (tune)",
    )
    parser.add_argument("--run-date", required=True, help="run date YYYY-MM-DD")
    parser.add_argument("--arm", help="arm, for per-arm steps (train)")
    parser.add_argument("--shard", type=int, help="user shard, for per-shard steps (candidates, score)")
    parser.add_argument("--n-shards", type=int, help="number of user shards (default: settings)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from datetime import date

    from pipelines.nightly import STEPS, WEEKLY_STEPS, resolve

    settings = settings_from(args)
    step = next(s for s in (*STEPS, *WEEKLY_STEPS) if s.name == args.name)
    func = resolve(step)
    if func is None:
        raise SystemExit(f"step {step.name!r}: {step.module}.{step.function} is not importable")
    run_date = date.fromisoformat(args.run_date)
    if step.fanout == "per_arm":
        if not args.arm:
            raise SystemExit(
                f"step {step.name!r} runs per arm: pass --arm (one of {list(settings.arms.enabled)})"
            )
        result = func(settings, run_date, args.arm)
    elif step.fanout == "per_shard":
        n_shards = args.n_shards or settings.arms.user_shards
        if args.shard is None or not 0 <= args.shard < n_shards:
            raise SystemExit(f"step {step.name!r} runs per user shard: pass --shard in [0, {n_shards})")
        result = func(settings, run_date, args.shard, n_shards)
    else:
        result = func(settings, run_date)
    print(json.dumps(result, indent=2, default=str))
    return 0
