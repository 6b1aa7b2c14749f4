"""``make bench``: run every benchmark script once at a small size, so a refactor that breaks one shows.

Each script runs in its own process with the smoke options below and writes its usual
``benchmarks/out/*.json`` (tracked files are left alone: no docs rewrite, no figure redrawn). The whole
run took 14 min on the shared 2-core machine at load average 8, 8 of them in bench_ope, whose pooling
comparison has no size option. These are not the
figures of docs/benchmarks.md: those come from each script's documented command, given in its docstring
and next to each table. A script whose data or server is missing is skipped with the reason.

    .venv/bin/python benchmarks/run_all.py [--only bench_ab --only bench_world] [--list]

Exit status 1 if any script failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ML100K_SPLIT = (
    HERE.parents[1] / "shared" / "data" / "ml-100k" / "splits" / "recommenders-item-stratified-seed42"
)


@dataclass(frozen=True)
class Smoke:
    script: str
    args: tuple[str, ...]
    needs_ml100k: bool = False
    needs_postgres: bool = False


SMOKES: tuple[Smoke, ...] = (
    Smoke("bench_ab", ("--quick",)),
    Smoke("bench_ope", ("--reps", "20", "--n", "1000", "--boot", "50")),
    Smoke("bench_world", ("--shape", "default")),
    Smoke("bench_startup", ("--repeat", "1", "--steps", "ope,report")),
    Smoke("bench_bandit", ("--days", "2", "--users", "150", "--items", "120", "--tag", "smoke")),
    Smoke("bench_serving", ("--users", "300", "--threads", "2", "--seconds", "1"), needs_postgres=True),
    # quality sweep skipped: it redraws docs/img/rerank_tradeoff.png, a documented figure
    Smoke("bench_rerank", ("--skip-quality",)),
    Smoke("bench_models", (), needs_ml100k=True),
    Smoke("bench_offline", ("--no-doc",), needs_ml100k=True),
    Smoke(
        "bench_intraday",
        ("--days", "2", "--users", "150", "--items", "120", "--signup-rate", "0.005", "--refreshes", "2"),
    ),
    # calibrated on the nightly-only record the bench_intraday smoke run just wrote
    Smoke(
        "bench_intraday_model",
        (
            "--sim",
            str(HERE / "out" / "bench_intraday_r1_d2_sim.json"),
            *("--reward-night", "2", "--nights", "3", "--seeds", "2", "--mc-draws", "200"),
            *("--label", "smoke_"),
        ),
    ),
)


def unlisted_scripts() -> list[str]:
    """Benchmark scripts without a smoke run: ``make bench`` must run every one (checked in main and
    tests/deepcuts/test_bench.py)."""
    listed = {s.script for s in SMOKES}
    return sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem not in listed)


def _postgres_up() -> bool:
    host = os.environ.get("DEEPCUTS_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("DEEPCUTS_TEST_PG_PORT", "5432"))
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def skip_reason(smoke: Smoke) -> str | None:
    if smoke.needs_ml100k and not ML100K_SPLIT.exists():
        return f"{ML100K_SPLIT} not present"
    if smoke.needs_postgres and not _postgres_up():
        return "PostgreSQL not reachable"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=[s.script for s in SMOKES], help="run only these")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args()
    missing = unlisted_scripts()
    if missing:
        print(f"benchmarks/run_all.py: no smoke run for {missing}; add them to SMOKES", file=sys.stderr)
        return 1
    failed: list[str] = []
    for smoke in SMOKES:
        if args.only and smoke.script not in args.only:
            continue
        cmd = [sys.executable, str(HERE / f"{smoke.script}.py"), *smoke.args]
        if args.list:
            print(" ".join(cmd[1:]))
            continue
        reason = skip_reason(smoke)
        if reason:
            print(f"== {smoke.script}: skipped ({reason})", flush=True)
            continue
        print(f"== {smoke.script}: {' '.join(smoke.args)}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(cmd, check=False).returncode
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"== {smoke.script}: {status} in {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(smoke.script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
