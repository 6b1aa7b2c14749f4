"""``deepcuts bench --shape ml-1m|ml-20m``: time every nightly step at MovieLens shape."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="generate a synthetic world at MovieLens shape and time every nightly step"
    )
    parser.add_argument("--shape", choices=["ml-100k", "ml-1m", "ml-20m"], default="ml-1m")
    parser.add_argument("--shards", type=int, default=4, help="user shards for candidates and score")
    parser.add_argument(
        "--workdir", type=Path, default=Path(".deepcuts-bench"), help="where worlds and lakes go"
    )
    parser.add_argument("--steps", default="", help="comma-separated subset of steps (default: all)")
    parser.add_argument(
        "--slots", type=int, default=None, help="mapped tasks run side by side (default: one per CPU)"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deepcuts.bench import run_bench

    steps = [s for s in args.steps.split(",") if s] or None
    result = run_bench(args.shape, args.shards, args.workdir, steps, args.slots)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'step':<14}{'wall s':>10}{'cpu s':>10}{'peak MB':>10}")
    for name, s in result["steps"].items():
        print(f"{name:<14}{s['wall_seconds']:>10.1f}{s['cpu_seconds']:>10.1f}{s['peak_rss_mb']:>10.0f}")
    total, cpu = result["total_wall_seconds"], result["task_cpu_seconds"]
    print(f"{'total':<14}{total:>10.1f}{cpu:>10.1f}{result['peak_rss_mb']:>10.0f}")
    # wall time on a shared machine grows with other people's load; the schedule of the tasks' CPU
    # seconds estimates the night on an idle one (deepcuts.bench)
    print(
        f"idle-machine estimate (tasks' CPU seconds, scheduled like the run): "
        f"{result['cpu_schedule_seconds']:.1f} s; load average at the end {result['load_average']}"
    )
    print(f"written to {args.out}")
    return 0
