"""Intraday refreshes against nightly-only learning: the same closed loop, the same seeds, side by side.

Target (issue 17): in the planted world (``--planted-lift 1 --users 6000 --signup-rate 0.04``, 14 nights)
with 24 refreshes a day every context reaches >= 70% best-arm probability in at most half the nights it
takes with nightly updates only, and the cumulative regret is lower.

    nice -n 10 .venv/bin/python benchmarks/bench_intraday.py --days 14 --users 6000 \\
        --signup-rate 0.04 --planted-lift 1 --refreshes 24 [--seed 42]

Runs ``deepcuts simulate`` twice (``simulator.refreshes_per_day`` 1, then ``--refreshes``) in two lakes
under ``benchmarks/out/`` and writes ``benchmarks/out/bench_intraday.json``. Per night it reports the
minimum over contexts of the policy's selection probability of the context's true best arm, at the start
of the served day (the night's policy) and at its end (after the day's refreshes), the realised share
of treatment visits on the best arm, the regret, CTR and the A/B verdict with its SRM p-value.
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

OUT = Path(__file__).resolve().parent / "out"
TARGET = 0.7


def per_night(record: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for n in record["nights"]:
        start = n.get("best_arm_probability") or {}
        end = n.get("best_arm_probability_end") or start
        shares = n.get("best_arm_share") or {}
        visits = n.get("context_visits") or {}
        total = sum(visits.get(c, 0) for c in shares)
        rows.append(
            {
                "night": n["night"],
                "policy_min_start": min(start.values()) if start else None,
                "policy_min_end": min(end.values()) if end else None,
                "contexts_ge_70_start": sum(v >= TARGET for v in start.values()),
                "contexts_ge_70_end": sum(v >= TARGET for v in end.values()),
                "realised_share_weighted": (
                    sum(shares[c] * visits.get(c, 0) for c in shares) / total if total else None
                ),
                "regret": n.get("regret"),
                "cumulative_regret": n.get("cumulative_regret"),
                "ctr": n.get("ctr"),
                "verdict": (n.get("ab") or {}).get("verdict"),
                "srm_p_value": (n.get("ab") or {}).get("srm_p_value"),
                "lift": (n.get("ab") or {}).get("lift"),
                "lift_ci": [(n.get("ab") or {}).get("ci_low"), (n.get("ab") or {}).get("ci_high")],
                "refreshes_published": sum(s.get("status") == "published" for s in n.get("intraday") or []),
                "night_seconds": n.get("night_seconds"),
            }
        )
    return rows


def first_night_all_contexts(rows: list[dict[str, Any]], key: str) -> int | None:
    """The first night from which every context stays >= 70% (``key``: policy_min_start or _end)."""
    for i, row in enumerate(rows):
        if all(r[key] is not None and r[key] >= TARGET for r in rows[i:]):
            return int(row["night"])
    return None


def run(
    args: argparse.Namespace, refreshes: int, days: int | None = None, keep: bool = False
) -> tuple[dict[str, Any], float]:
    from deepcuts.pipelines.simulate import simulate
    from deepcuts.settings import load_settings

    tag = f"{args.label}r{refreshes}_d{days or args.days}"
    home = OUT / f"bench_intraday_home_{tag}"
    if home.exists():
        shutil.rmtree(home)
    base = load_settings()
    world = {
        **base.world.model_dump(),
        "seed": args.seed,
        "users": args.users,
        "daily_signup_rate": args.signup_rate,
    }
    if args.items:
        world["items"] = args.items
    simulator = {
        **base.simulator.model_dump(),
        "skip_steps": ("report",),
        "plot": False,
        "planted_arm_lift": args.planted_lift,
        "refreshes_per_day": refreshes,
    }
    settings = load_settings(
        home=str(home),
        seed=args.seed,
        world=world,
        source={**base.source.model_dump(), "dataset": "synthetic", "path": None},
        simulator=simulator,
    )
    t0 = time.monotonic()
    record = simulate(
        settings,
        "synthetic",
        days or args.days,
        out=OUT / f"bench_intraday_{tag}_sim.json",
    )
    wall = time.monotonic() - t0
    if not (args.keep or keep):
        shutil.rmtree(home, ignore_errors=True)
    return record, wall


def time_one_refresh(args: argparse.Namespace) -> dict[str, Any]:
    """One night of the closed loop at ``--users`` x ``--items``, then one refresh of the served day
    with all of its feedback (the last hourly slot), each step timed, and a rerun of it (unchanged)."""
    from deepcuts.pipelines import intraday
    from deepcuts.settings import load_settings

    record, wall = run(args, 1, days=1, keep=True)
    home = OUT / "bench_intraday_home_r1_d1"
    settings = load_settings(home=str(home), seed=args.seed, intraday={"refreshes_per_day": 24})
    day = datetime.fromisoformat(record["nights"][0]["served_day"]).date()
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    for step, func in (
        ("ingest", intraday.ingest_refresh),
        ("update", intraday.update_refresh),
        ("assign", intraday.assign_refresh),
        ("publish", intraday.publish_refresh),
    ):
        t0 = time.monotonic()
        results[step] = func(settings, day, 23)
        seconds[step] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    rerun = intraday.refresh(settings, day, 23)
    rerun_seconds = round(time.monotonic() - t0, 2)
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return {
        "users": args.users,
        "items": args.items,
        "events": results["ingest"]["events"],
        "treatment_assignments": results["assign"].get("treatment_assignments"),
        "publish_status": results["publish"]["status"],
        "step_seconds": seconds,
        "refresh_seconds": round(sum(seconds.values()), 2),
        "rerun_status": rerun["publish"]["status"],
        "rerun_seconds": rerun_seconds,
        "night_wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--items", type=int, default=None, help="default: world settings")
    parser.add_argument("--signup-rate", type=float, default=0.04)
    parser.add_argument("--planted-lift", type=float, default=1.0)
    parser.add_argument("--refreshes", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the simulation lakes under out/")
    parser.add_argument(
        "--label",
        default="",
        help="prefix of every output name (e.g. 'natural_'), so that two comparisons can run at once",
    )
    parser.add_argument(
        "--variant",
        choices=["both", "nightly", "refreshes"],
        default="both",
        help="run one side only (two processes side by side); the combined JSON takes what exists",
    )
    parser.add_argument(
        "--one-refresh",
        action="store_true",
        help="instead: time one refresh of a full day at --users x --items (e.g. 6000 x 3700, ML-1M shape)",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.one_refresh:
        timing = time_one_refresh(args)
        (OUT / "bench_intraday_one_refresh.json").write_text(json.dumps(timing, indent=1))
        print(json.dumps(timing, indent=1))
        return

    chosen = {"nightly": [1], "refreshes": [args.refreshes], "both": [1, args.refreshes]}[args.variant]
    for refreshes in chosen:
        name = "nightly" if refreshes == 1 else f"refreshes_{refreshes}"
        record, wall = run(args, refreshes)
        rows = per_night(record)
        variant = {
            "refreshes_per_day": refreshes,
            "wall_seconds": round(wall, 1),
            "nights_to_70pct_all_contexts_start_of_day": first_night_all_contexts(rows, "policy_min_start"),
            "nights_to_70pct_all_contexts_end_of_day": first_night_all_contexts(rows, "policy_min_end"),
            "cumulative_regret": rows[-1]["cumulative_regret"] if rows else None,
            "per_night": rows,
            "summary": record["summary"],
        }
        (OUT / f"bench_intraday_{args.label}{name}.json").write_text(
            json.dumps(variant, indent=1, default=str)
        )
    # the variants may run as two processes side by side (--variant): combine whatever is there
    variants = {
        name: json.loads((OUT / f"bench_intraday_{args.label}{name}.json").read_text())
        for name in ("nightly", f"refreshes_{args.refreshes}")
        if (OUT / f"bench_intraday_{args.label}{name}.json").exists()
    }
    result = {
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": vars(args),
        "variants": variants,
    }
    combined = OUT / (
        f"bench_intraday_{args.label.rstrip('_')}.json" if args.label else "bench_intraday.json"
    )
    combined.write_text(json.dumps(result, indent=1, default=str))

    for name, v in variants.items():
        print(
            f"{name}: {v['wall_seconds']:.0f}s wall; every context >= 70% from night "
            f"{v['nights_to_70pct_all_contexts_start_of_day']} (night's policy) / "
            f"{v['nights_to_70pct_all_contexts_end_of_day']} (end of day); cumulative regret "
            f"{_f(v['cumulative_regret'], 1)}"
        )
        print(
            "  night  P(best) min start  end  >=70% start end  realised  regret  CTR t/c  verdict  refreshes"
        )
        for r in v["per_night"]:
            ctr = r["ctr"] or {}
            print(
                f"  {r['night']:5d}  {_f(r['policy_min_start'])}  {_f(r['policy_min_end'])}"
                f"  {r['contexts_ge_70_start']:2d} {r['contexts_ge_70_end']:2d}"
                f"  {_f(r['realised_share_weighted'])}  {_f(r['regret'], 1)}"
                f"  {_f(ctr.get('treatment'))}/{_f(ctr.get('control'))}  {r['verdict']}"
                f"  {r['refreshes_published']}"
            )
    print(f"-> {combined}")


def _f(x: float | None, digits: int = 3) -> str:
    return "  n/a" if x is None else f"{x:.{digits}f}"


if __name__ == "__main__":
    main()
