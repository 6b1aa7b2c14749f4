"""Synthetic world benchmark: generation time and peak memory at MovieLens shapes.

Each shape runs in a fresh Python process (so its peak RSS is its own) that generates the world into a
temporary folder, then reads it back with ``load_dataset("synthetic")`` and ``TruthModel.load``:

* ``default``: 2,000 users x 1,500 items x ~80k ratings (the embedded default of ``make run``);
* ``ml-1m``: 6,040 x 3,706 x ~1.0M (MovieLens 1M shape);
* ``ml-20m``: 138,493 x 26,744 x ~20M (MovieLens 20M shape; minutes, only with ``--shape ml-20m``).

    .venv/bin/python benchmarks/bench_world.py                  # default and ml-1m
    .venv/bin/python benchmarks/bench_world.py --shape ml-20m   # the large one

Prints a table and writes ``benchmarks/out/bench_world.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"

#: name -> (users, items, ratings per user)
SHAPES: dict[str, tuple[int, int, float]] = {
    "default": (2000, 1500, 40.0),
    "ml-1m": (6040, 3706, 1_000_209 / 6040),
    "ml-20m": (138_493, 26_744, 20_000_263 / 138_493),
}


def run_one(shape: str) -> dict:
    """Generate and read back one shape in this process; returns timings and peak RSS."""
    from deepcuts.pipelines.loaders import load_dataset
    from deepcuts.pipelines.world import TruthModel, generate_world
    from deepcuts.settings import WorldSettings

    users, items, per_user = SHAPES[shape]
    settings = WorldSettings(users=users, items=items, ratings_per_user=per_user)
    with tempfile.TemporaryDirectory(prefix=f"bench-world-{shape}-") as tmp:
        start = time.perf_counter()
        summary = generate_world(tmp, settings)
        generate_s = time.perf_counter() - start
        rss_generate = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20
        start = time.perf_counter()
        data = load_dataset("synthetic", tmp)
        truth = TruthModel.load(tmp)
        load_s = time.perf_counter() - start
        signups = summary["signups"]
        assert len(data.interactions) == summary["interactions"] + signups["onboarding_ratings"]
        assert truth.n_users == users + signups["users"]
    return {
        "shape": shape,
        "users": users,
        "items": items,
        "ratings": summary["interactions"],
        "generate_s": round(generate_s, 2),
        "ratings_per_s": round(summary["interactions"] / generate_s),
        "peak_rss_generate_mb": round(rss_generate),
        "load_s": round(load_s, 2),
        "peak_rss_total_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "files_mb": round(size_mb, 1),
        "mean_rating": round(summary["mean_rating"], 3),
        "hidden_gems": summary["hidden_gems"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="shape(s) to run")
    parser.add_argument("--one", choices=sorted(SHAPES), help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    shapes = args.shape or ["default", "ml-1m"]
    rows = []
    for shape in shapes:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", shape], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"shape {shape} failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    header = (
        f"{'shape':8} {'users':>8} {'items':>7} {'ratings':>11} {'gen s':>7} {'ratings/s':>10} "
        f"{'RSS gen MB':>10} {'load s':>7} {'RSS MB':>7} {'files MB':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['shape']:8} {r['users']:>8,} {r['items']:>7,} {r['ratings']:>11,} {r['generate_s']:>7} "
            f"{r['ratings_per_s']:>10,} {r['peak_rss_generate_mb']:>10} {r['load_s']:>7} "
            f"{r['peak_rss_total_mb']:>7} {r['files_mb']:>8}"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench_world.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = {r["shape"]: r for r in previous.get("results", [])}
    results.update({r["shape"]: r for r in rows})
    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "results": list(results.values()),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
