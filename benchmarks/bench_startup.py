"""Start-up cost of one Airflow task: what ``deepcuts step NAME`` spends before the step's first line.

Every nightly task is its own process (an Airflow worker runs one task instance per process, and
``deepcuts bench`` does the same), so each pays the interpreter, the ``deepcuts`` command line, the
settings load and the import of its step module before any work. At ML-1M shape a task's work is a
few seconds, so this fixed cost is a large share of the night's critical path.

For each step, ``--repeat`` fresh processes (the best one is kept: the machine is shared) measure, in
CPU seconds of the process (less sensitive to other load than wall time) and wall seconds:

* ``parser``: ``import deepcuts.cli`` and ``build_parser()`` (every sub-command registers);
* ``settings``: ``load_settings()``;
* ``step``: importing the step's module (``deepcuts.pipelines.nightly.resolve``);

and lists the heavy third-party packages the process has loaded by then (a package a step does not
use is a cost to cut: lazy import it where the one branch that needs it runs).

    .venv/bin/python benchmarks/bench_startup.py [--repeat 5] [--steps ingest,train]

Prints a table and writes ``benchmarks/out/bench_startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"

#: Third-party packages worth knowing about when they load (import cost >= ~0.1 s CPU here).
HEAVY = (
    "pandas",
    "pyarrow",
    "scipy.sparse",
    "scipy.special",
    "scipy.stats",
    "scipy.optimize",
    "sklearn",
    "lightfm",
    "matplotlib",
    "great_expectations",
    "sqlalchemy",
    "psycopg",
    "redis",
    "airflow",
    "jinja2",
)

#: Runs in the child: the path of ``deepcuts step NAME`` up to (not including) the step call.
CHILD = r"""
import json, sys, time
clock = (time.perf_counter, time.process_time)
marks = [tuple(f() for f in clock)]
from deepcuts.cli import build_parser
build_parser()
marks.append(tuple(f() for f in clock))
from deepcuts.startup import start_up
from deepcuts.settings import load_settings
from deepcuts.pipelines.nightly import STEPS, resolve
with start_up():  # as `deepcuts step` does: the collector paused, then start-up's objects frozen
    load_settings()
    marks.append(tuple(f() for f in clock))
    resolve(next(s for s in STEPS if s.name == sys.argv[1]))
marks.append(tuple(f() for f in clock))
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"marks": marks, "heavy": heavy, "modules": len(sys.modules)}))
"""


def measure_step(step: str, repeat: int) -> dict:
    """Best (least CPU) of ``repeat`` fresh processes; the interpreter's own start is timed outside."""
    best: dict | None = None
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, step, json.dumps(HEAVY)],
            check=True,
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("DEEPCUTS_")},
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        marks = data["marks"]
        phases = {
            name: {
                "wall_seconds": marks[i + 1][0] - marks[i][0],
                "cpu_seconds": marks[i + 1][1] - marks[i][1],
            }
            for i, name in enumerate(("parser", "settings", "step"))
        }
        total_cpu = sum(p["cpu_seconds"] for p in phases.values())
        row = {
            "phases": phases,
            "cpu_seconds": total_cpu,
            "wall_seconds": marks[-1][0] - marks[0][0],
            "heavy": data["heavy"],
            "modules": data["modules"],
        }
        if best is None or total_cpu < best["cpu_seconds"]:
            best = row
    assert best is not None
    return best


def interpreter_start(repeat: int) -> dict:
    """CPU and wall of a bare ``python -c pass`` (paid by every task on top of the table's figures)."""
    import resource
    import time

    best = None
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if best is None or cpu < best["cpu_seconds"]:
            best = {"cpu_seconds": cpu, "wall_seconds": wall}
    assert best is not None
    return best


def main() -> None:
    from deepcuts.pipelines.nightly import STEP_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per step (best kept)")
    parser.add_argument("--steps", default="", help="comma-separated steps (default: every nightly step)")
    parser.add_argument("--out", type=Path, default=OUT / "bench_startup.json")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s] or list(STEP_NAMES)
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    python = interpreter_start(args.repeat)
    rows = {step: measure_step(step, args.repeat) for step in steps}
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"python -c pass: {python['cpu_seconds']:.2f} CPU-s, {python['wall_seconds']:.2f} s wall")
    header = ("step", "parser", "settings", "step", "CPU s", "wall s")
    print("{:14s} {:>7s} {:>9s} {:>6s} {:>6s} {:>7s}  heavy packages".format(*header))
    for step, row in rows.items():
        ph = row["phases"]
        print(
            f"{step:14s} {ph['parser']['cpu_seconds']:7.2f} {ph['settings']['cpu_seconds']:9.2f} "
            f"{ph['step']['cpu_seconds']:6.2f} {row['cpu_seconds']:6.2f} {row['wall_seconds']:7.2f}  "
            f"{', '.join(row['heavy'])}"
        )
    total = sum(r["cpu_seconds"] for r in rows.values())
    print(f"sum over steps (one task each): {total:.2f} CPU-s; load average {load_before} -> {load_after}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average": {"before": load_before, "after": load_after},
                "repeat": args.repeat,
                "interpreter": python,
                "steps": rows,
            },
            indent=2,
        )
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
