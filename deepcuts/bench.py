"""``deepcuts bench``: time every nightly step at MovieLens-1M or -20M shape, through the DAG's code path.

Each task runs in its own process (``deepcuts step ...``), exactly as an Airflow worker runs one task
instance, so wall time, CPU time and peak RSS are measured per task with ``os.wait4``. Per-arm and
per-shard tasks are listed individually (``tasks``) and summed per step (``steps``): the total is what
one worker slot would take; with more slots the per-shard/per-arm tasks run side by side.
World generation is timed separately and is not in the total.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from deepcuts.progress import get_logger

log = get_logger("deepcuts.bench")

#: Shapes of the public MovieLens releases (users, items, ratings).
SHAPES: dict[str, tuple[int, int, int]] = {
    "ml-100k": (943, 1_682, 100_000),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-20m": (138_493, 26_744, 20_000_263),
}


@dataclass
class TaskMeasure:
    step: str
    key: str  # arm or shard, "" for single tasks
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def measure(cmd: list[str], env: dict[str, str], log_file: Path) -> tuple[float, float, float]:
    """Run ``cmd`` to completion; return (wall s, user+sys CPU s, peak RSS MB) of that process alone."""
    start = time.monotonic()
    with log_file.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log_file}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0  # Linux: ru_maxrss in KiB


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_bench(shape: str, shards: int, workdir: Path, steps: list[str] | None = None) -> dict[str, Any]:
    """Generate a world of ``shape`` under ``workdir`` (reused if present) and time one night."""
    from pipelines.nightly import STEPS

    users, items, ratings = SHAPES[shape]
    home = (workdir / shape).resolve()
    home.mkdir(parents=True, exist_ok=True)
    deepcuts_bin = str(Path(sys.executable).with_name("deepcuts"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEEPCUTS_")},
        "DEEPCUTS_HOME": str(home),
        "DEEPCUTS_WORLD__USERS": str(users),
        "DEEPCUTS_WORLD__ITEMS": str(items),
        "DEEPCUTS_WORLD__RATINGS_PER_USER": f"{ratings / users:.4f}",
        "DEEPCUTS_ARMS__USER_SHARDS": str(shards),
        "PYTHONUNBUFFERED": "1",
    }
    logs = home / "bench-logs"
    logs.mkdir(exist_ok=True)
    world_dir = home / "world"
    generation: dict[str, float] | None = None
    if not (world_dir / "world.json").exists():
        log.info(
            "bench %s: generating the world (%d users x %d items, ~%d ratings)", shape, users, items, ratings
        )
        wall, cpu, rss = measure(
            [deepcuts_bin, "generate", "--out", str(world_dir)], env, logs / "generate.log"
        )
        generation = {
            "wall_seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 2),
            "peak_rss_mb": round(rss, 1),
        }
    world = json.loads((world_dir / "world.json").read_text())
    run_date = date.fromisoformat(world["first_run_date"])

    from deepcuts.settings import load_settings

    arms = list(load_settings().arms.enabled)
    tasks: list[TaskMeasure] = []
    for step in STEPS:
        if steps and step.name not in steps:
            continue
        if step.fanout == "per_arm":
            invocations = [(arm, ["--arm", arm]) for arm in arms]
        elif step.fanout == "per_shard":
            invocations = [(str(k), ["--shard", str(k), "--n-shards", str(shards)]) for k in range(shards)]
        else:
            invocations = [("", [])]
        for key, extra in invocations:
            cmd = [deepcuts_bin, "step", step.name, "--run-date", run_date.isoformat(), *extra]
            wall, cpu, rss = measure(cmd, env, logs / f"{step.name}.log")
            tasks.append(TaskMeasure(step.name, key, round(wall, 2), round(cpu, 2), round(rss, 1)))
            log.info("bench %s: %s %s %.1fs wall, %.0f MB peak", shape, step.name, key, wall, rss)
    per_step: dict[str, dict[str, float]] = {}
    for t in tasks:
        agg = per_step.setdefault(t.step, {"wall_seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": 0.0})
        agg["wall_seconds"] = round(agg["wall_seconds"] + t.wall_seconds, 2)
        agg["cpu_seconds"] = round(agg["cpu_seconds"] + t.cpu_seconds, 2)
        agg["peak_rss_mb"] = max(agg["peak_rss_mb"], t.peak_rss_mb)
    return {
        "shape": shape,
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "world": {"users": users, "items": items, "ratings_target": ratings, "generation": generation},
        "shards": shards,
        "steps": per_step,
        "tasks": [asdict(t) for t in tasks],
        "total_wall_seconds": round(sum(s["wall_seconds"] for s in per_step.values()), 2),
        "peak_rss_mb": max((s["peak_rss_mb"] for s in per_step.values()), default=0.0),
    }
