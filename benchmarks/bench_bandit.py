"""Bandit learning benchmark: a closed-loop synthetic simulation through the real nightly pipeline.

Targets (issue 5/6): >= 70% of each context's treatment traffic on its true best arm by night 14;
cumulative regret grows sublinearly; a 30-night simulation at the default demo size finishes in a few
minutes on 2 cores.

    .venv/bin/python benchmarks/bench_bandit.py [--days 30] [--users 2000] [--items 1500] [--seed 42]
    .venv/bin/python benchmarks/bench_bandit.py --days 14 --planted-lift 0.3 --tag planted

Writes ``benchmarks/out/bench_bandit[_TAG].json`` (the analysis and summary), ``..._sim.json`` (the
simulation record) and ``..._sim.png``. ``--planted-lift`` makes one arm per context truly best by a known
margin (``simulator.planted_arm_lift``), the premise of the 70% target. Sublinearity is measured by the
slope ``b`` of ``log(cumulative regret) = a + b log(night)`` over the second half (``b < 1``) and
by the per-night regret of the first against the second half.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def analyse(record: dict[str, Any], target_night: int = 14) -> dict[str, Any]:
    nights = record["nights"]
    per_night = []
    for n in nights:
        shares = n.get("best_arm_share") or {}
        visits = n.get("context_visits") or {}
        total = sum(visits.get(c, 0) for c in shares)
        weighted = sum(shares[c] * visits.get(c, 0) for c in shares) / total if total else None
        prob = n.get("best_arm_probability") or {}
        per_night.append(
            {
                "night": n["night"],
                "min": min(shares.values()) if shares else None,
                "mean": float(np.mean(list(shares.values()))) if shares else None,
                "traffic_weighted": weighted,
                "contexts_ge_70pct": sum(v >= 0.7 for v in shares.values()),
                "contexts": len(shares),
                "policy_min": min(prob.values()) if prob else None,
                "policy_mean": float(np.mean(list(prob.values()))) if prob else None,
                "policy_contexts_ge_70pct": sum(v >= 0.7 for v in prob.values()),
                "policy_contexts": len(prob),
                "new_user_visits": sum(v for c, v in visits.items() if c.startswith("new/")),
                "regret": n.get("regret"),
                "cumulative_regret": n.get("cumulative_regret"),
            }
        )
    cum = np.array([p["cumulative_regret"] or 0.0 for p in per_night], dtype=float)
    x = np.arange(1, len(cum) + 1, dtype=float)
    half = len(cum) // 2
    slope = None
    tail = slice(half, None)
    if len(cum) >= 4 and (cum[tail] > 0).all():
        slope = float(np.polyfit(np.log(x[tail]), np.log(cum[tail]), 1)[0])
    regret = np.array([p["regret"] or 0.0 for p in per_night])
    at = per_night[min(target_night, len(per_night)) - 1] if per_night else {}
    return {
        "per_night": per_night,
        f"night_{target_night}": at,
        "regret_loglog_slope_second_half": slope,
        "regret_per_night_first_half": float(regret[:half].mean()) if half else None,
        "regret_per_night_second_half": float(regret[half:].mean()) if half else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=None, help="default: world settings (demo size)")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip", action="append", default=["report"], help="steps not to run")
    parser.add_argument("--keep", action="store_true", help="keep the simulation lake under out/")
    parser.add_argument(
        "--planted-lift",
        type=float,
        default=0.0,
        help="plant a truly best arm per context (click x 1 + lift); 0 = the world as generated",
    )
    parser.add_argument(
        "--signup-rate",
        type=float,
        default=None,
        help="world.daily_signup_rate (sign-ups a day as a share of --users); default: world settings",
    )
    parser.add_argument("--pooling", choices=["none", "segment", "global"], default=None)
    parser.add_argument("--pooling-rule", choices=["fixed", "empirical_bayes"], default=None)
    parser.add_argument("--tag", default="", help="suffix of the output files (run several variants)")
    args = parser.parse_args()

    from deepcuts.pipelines.simulate import simulate
    from deepcuts.pipelines.simulate_summary import plot_simulation
    from deepcuts.settings import load_settings

    tag = f"_{args.tag}" if args.tag else ""
    home = OUT / f"bench_bandit{tag}_home"
    if home.exists():
        shutil.rmtree(home)
    base = load_settings()
    world = base.world.model_dump()
    world["seed"] = args.seed
    if args.users:
        world["users"] = args.users
    if args.items:
        world["items"] = args.items
    if args.signup_rate is not None:
        world["daily_signup_rate"] = args.signup_rate
    bandit = base.bandit.model_dump()
    if args.pooling:
        bandit["pooling"] = args.pooling
    if args.pooling_rule:
        bandit["pooling_rule"] = args.pooling_rule
    simulator = {
        **base.simulator.model_dump(),
        "skip_steps": tuple(args.skip),
        "plot": False,
        "planted_arm_lift": args.planted_lift,
    }
    settings = load_settings(
        home=str(home),
        seed=args.seed,
        world=world,
        source={**base.source.model_dump(), "dataset": "synthetic", "path": None},
        simulator=simulator,
        bandit=bandit,
    )
    t0 = time.monotonic()
    record = simulate(settings, "synthetic", args.days, out=OUT / f"bench_bandit{tag}_sim.json")
    wall = time.monotonic() - t0
    result = {
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "days": args.days,
        "users": world["users"],
        "items": world["items"],
        "seed": args.seed,
        "skipped_steps": list(args.skip),
        "planted_arm_lift": args.planted_lift,
        "planted_arms": record.get("planted_arms"),
        "daily_signup_rate": world["daily_signup_rate"],
        "pooling": [bandit["pooling"], bandit["pooling_rule"], bandit["pooling_strength"]],
        "wall_seconds": round(wall, 1),
        "mean_night_seconds": round(float(np.mean([n["night_seconds"] for n in record["nights"]])), 2),
        "step_seconds_mean": _mean_steps(record),
        "analysis": analyse(record),
        "summary": record["summary"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_bandit{tag}.json").write_text(json.dumps(result, indent=1))
    plot_simulation(record, OUT / f"bench_bandit{tag}_sim.png")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)

    a = result["analysis"]
    print(f"{args.days} nights, {world['users']} users x {world['items']} items: {wall:.0f}s wall")
    print(
        "night  realised best-arm share: min  mean  traffic-weighted  >=70%"
        "  | policy P(best arm): min  mean  >=70%  | new-user visits  regret  cumulative"
    )
    for p in a["per_night"]:
        print(
            f"{p['night']:5d}  {_f(p['min'])}  {_f(p['mean'])}  {_f(p['traffic_weighted'])}"
            f"  {p['contexts_ge_70pct']:2d}/{p['contexts']:2d}"
            f"  | {_f(p['policy_min'])}  {_f(p['policy_mean'])}"
            f"  {p['policy_contexts_ge_70pct']:2d}/{p['policy_contexts']:2d}"
            f"  | {p['new_user_visits']:4d}  {_f(p['regret'], 2)}  {_f(p['cumulative_regret'], 1)}"
        )
    print(
        f"regret per night: first half {_f(a['regret_per_night_first_half'], 2)}, second half "
        f"{_f(a['regret_per_night_second_half'], 2)}; log-log slope (second half) "
        f"{_f(a['regret_loglog_slope_second_half'])}"
    )
    print(f"mean step seconds per night: {result['step_seconds_mean']}")
    print(f"-> {OUT / f'bench_bandit{tag}.json'}, {OUT / f'bench_bandit{tag}_sim.png'}")


def _mean_steps(record: dict[str, Any]) -> dict[str, float]:
    steps: dict[str, list[float]] = {}
    for n in record["nights"]:
        for name, s in (n.get("step_seconds") or {}).items():
            steps.setdefault(name, []).append(s)
    return {k: round(float(np.mean(v)), 2) for k, v in steps.items()}


def _f(x: float | None, digits: int = 3) -> str:
    return "  n/a" if x is None else f"{x:.{digits}f}"


if __name__ == "__main__":
    main()
