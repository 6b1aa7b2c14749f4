"""``deepcuts step NAME --run-date D``: run one nightly step by hand, exactly as its Airflow task would.

Useful to rerun one step after a fix without Airflow, and used by ``deepcuts bench`` to run every task in
its own process (as Airflow workers do) so that its time and peak memory can be measured.
"""

from __future__ import annotations

import argparse
import json

from deepcuts.cli._common import UserError, run_date_arg, settings_from
from deepcuts.startup import start_up

#: Steps outside the nightly registry, run the same way: name -> (module, function), called with
#: ``(settings, run_date)``. ``weekly_review`` is the task of ``deepcuts_weekly`` (run date: the last
#: night of the week).
OTHER_STEPS = {
    "weekly_review": ("deepcuts.pipelines.weekly_review", "weekly_review"),
    # weekly: each arm's hyperparameters chosen on the run date's data, read by train (pipelines/tune.py)
    "tune": ("deepcuts.pipelines.tune", "tune"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from deepcuts.pipelines.nightly import STEP_NAMES

    parser = subparsers.add_parser(
        "step", help="run one nightly step (or the weekly review) for a run date, as its Airflow task does"
    )
    parser.add_argument(
        "name",
        choices=[*STEP_NAMES, *OTHER_STEPS],
        help="step of the registry (docs/architecture.md), or weekly_review / tune",
    )
    parser.add_argument("--run-date", required=True, type=run_date_arg, help="run date YYYY-MM-DD")
    parser.add_argument("--arm", help="arm, for per-arm steps (train)")
    parser.add_argument("--shard", type=int, help="user shard, for per-shard steps (candidates, score)")
    parser.add_argument("--n-shards", type=int, help="number of user shards (default: settings)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    from deepcuts.pipelines.nightly import STEPS, resolve

    with start_up():
        settings = settings_from(args)
        if args.name in OTHER_STEPS:
            module, function = OTHER_STEPS[args.name]
            other = getattr(importlib.import_module(module), function)
        else:
            step = next(s for s in STEPS if s.name == args.name)
            func = resolve(step)
    if args.name in OTHER_STEPS:
        result = other(settings, args.run_date)
        print(json.dumps(result, indent=2, default=str))
        return 0
    run_date = args.run_date
    if step.fanout == "per_arm":
        if not args.arm:
            raise UserError(
                f"step {step.name!r} runs per arm: pass --arm (one of {list(settings.arms.enabled)})"
            )
        result = func(settings, run_date, args.arm)
    elif step.fanout == "per_shard":
        n_shards = args.n_shards or settings.arms.user_shards
        if args.shard is None or not 0 <= args.shard < n_shards:
            raise UserError(f"step {step.name!r} runs per user shard: pass --shard in [0, {n_shards})")
        result = func(settings, run_date, args.shard, n_shards)
    else:
        result = func(settings, run_date)
    print(json.dumps(result, indent=2, default=str))
    return 0
