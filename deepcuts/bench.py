"""``deepcuts bench``: time every nightly step at MovieLens-1M or -20M shape, through the DAG's code path.

Each task runs in its own process (``deepcuts step ...``), exactly as an Airflow worker runs one task
instance, so wall time, CPU time and peak RSS are measured per task with ``os.wait4``. The mapped tasks of
a step (one per arm, in the DAG's ``train`` order; one per user shard) run ``slots`` at a time, like a
Celery worker with ``worker_concurrency = slots``; steps run one after the other, as the DAG orders them,
except the steps the DAG runs side by side (``deepcuts.pipelines.nightly.SIDE_BY_SIDE``: train and
bandit_update; evaluate, ab_analysis and ope), whose tasks share the slots as one stage. Per step:
``wall_seconds`` is the step's elapsed time (in a shared stage: from the stage's start to the step's last
task's end), ``cpu_seconds`` the sum over its tasks, ``peak_rss_mb`` the largest single task. Every task
is listed in ``tasks`` (the per-shard times that size a deployment). ``total_wall_seconds`` is the sum of
the stages' elapsed times.

On a shared machine wall time grows with other people's load; CPU seconds much less so. Two
load-insensitive figures come with every run: ``task_cpu_seconds`` (every task's CPU, summed) and
``cpu_schedule_seconds``, the night's length if every task took exactly its CPU seconds, scheduled as
the bench schedules them (stages in order, ``slots`` tasks at a time, in launch order): an estimate of
the wall time on an otherwise idle machine. World generation is timed separately and is not in the
total.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepcuts.progress import get_logger

if TYPE_CHECKING:
    from deepcuts.pipelines.nightly import Step

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
    (result,) = measure_many([cmd], env, log_file, slots=1)
    return result


def measure_many(
    cmds: list[list[str]],
    env: dict[str, str],
    log_file: Path | list[Path],
    slots: int,
    ends: list[float] | None = None,
) -> list[tuple[float, float, float]]:
    """Run ``cmds`` with at most ``slots`` at a time; per command (wall s, CPU s, peak RSS MB).

    ``os.wait4`` gives each child's own resource usage, so concurrent tasks are measured separately.
    Linux folds the launcher's own peak RSS into a vfork()ed child's ``ru_maxrss``, so a task's peak
    is never reported below the launcher's (``launcher_rss_mb`` in the result; about 100 MB).
    ``log_file`` is one log for every command or one per command; ``ends``, if given, receives each
    command's end as seconds since the first launch.
    """
    logs = log_file if isinstance(log_file, list) else [log_file] * len(cmds)
    results: list[tuple[float, float, float] | None] = [None] * len(cmds)
    finished: list[float] = [0.0] * len(cmds)
    pending = list(enumerate(cmds))
    running: dict[int, tuple[int, float, subprocess.Popen[bytes]]] = {}
    first = time.monotonic()
    with contextlib.ExitStack() as stack:
        outs = {path: stack.enter_context(path.open("ab")) for path in set(logs)}
        while pending or running:
            while pending and len(running) < slots:
                i, cmd = pending.pop(0)
                proc = subprocess.Popen(cmd, env=env, stdout=outs[logs[i]], stderr=subprocess.STDOUT)
                running[proc.pid] = (i, time.monotonic(), proc)
            pid, status, usage = os.wait4(-1, 0)
            if pid not in running:
                continue
            i, start, proc = running.pop(pid)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                for _, _, other in running.values():
                    other.kill()
                raise RuntimeError(
                    f"{' '.join(cmds[i])} failed with exit code {proc.returncode}; see {logs[i]}"
                )
            now = time.monotonic()
            finished[i] = now - first
            # Linux reports ru_maxrss in KiB
            results[i] = (now - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0)
    if ends is not None:
        ends[:] = finished
    return [r for r in results if r is not None]


def schedule_seconds(durations: list[float], slots: int) -> float:
    """Length of running tasks of ``durations`` in launch order, ``slots`` at a time, each starting as
    soon as a slot frees (how :func:`measure_many` and a Celery worker schedule them)."""
    free = [0.0] * max(1, slots)
    for duration in durations:
        i = free.index(min(free))
        free[i] += duration
    return max(free)


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_bench(
    shape: str, shards: int, workdir: Path, steps: list[str] | None = None, slots: int | None = None
) -> dict[str, Any]:
    """Generate a world of ``shape`` under ``workdir`` (reused if present) and time one night, running
    the mapped tasks of each step ``slots`` at a time (default: one per CPU)."""
    slots = int(slots or os.cpu_count() or 1)
    from deepcuts.pipelines.nightly import stages

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

    from deepcuts.pipelines.plan import train_order
    from deepcuts.settings import load_settings

    settings = load_settings()
    # the order the DAG maps train in (the deep-cut arms' bases first)
    arms = list(train_order(settings, settings.arms.enabled))
    tasks: list[TaskMeasure] = []
    per_step: dict[str, dict[str, float]] = {}
    stage_walls: list[float] = []
    cpu_schedule = 0.0
    for whole in stages():
        stage = tuple(s for s in whole if not steps or s.name in steps)
        if not stage:
            continue
        invocations = [
            (step, key, extra) for step in stage for key, extra in _invocations(step, arms, shards)
        ]
        cmds = [
            [deepcuts_bin, "step", step.name, "--run-date", run_date.isoformat(), *extra]
            for step, _, extra in invocations
        ]
        ends: list[float] = []
        start = time.monotonic()
        measured = measure_many(cmds, env, [logs / f"{s.name}.log" for s, _, _ in invocations], slots, ends)
        stage_walls.append(time.monotonic() - start)
        cpu_schedule += schedule_seconds([m[1] for m in measured], slots)
        for (step, key, _), (wall, cpu, rss) in zip(invocations, measured, strict=True):
            tasks.append(TaskMeasure(step.name, key, round(wall, 2), round(cpu, 2), round(rss, 1)))
            log.info("bench %s: %s %s %.1fs wall, %.0f MB peak", shape, step.name, key, wall, rss)
        for step in stage:
            mine = [i for i, (s, _, _) in enumerate(invocations) if s is step]
            per_step[step.name] = {
                "wall_seconds": round(max(ends[i] for i in mine), 2),
                "cpu_seconds": round(sum(measured[i][1] for i in mine), 2),
                "peak_rss_mb": round(max(measured[i][2] for i in mine), 1),
            }
    return {
        "shape": shape,
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "world": {"users": users, "items": items, "ratings_target": ratings, "generation": generation},
        "shards": shards,
        "slots": slots,
        "steps": per_step,
        "tasks": [asdict(t) for t in tasks],
        "launcher_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "total_wall_seconds": round(sum(stage_walls), 2),
        "task_cpu_seconds": round(sum(t.cpu_seconds for t in tasks), 2),
        "cpu_schedule_seconds": round(cpu_schedule, 2),
        "load_average": load_average(),
        "peak_rss_mb": max((s["peak_rss_mb"] for s in per_step.values()), default=0.0),
    }


def _invocations(step: Step, arms: list[str], shards: int) -> list[tuple[str, list[str]]]:
    """(key, extra ``deepcuts step`` arguments) of each task of ``step``."""
    if step.fanout == "per_arm":
        return [(arm, ["--arm", arm]) for arm in arms]
    if step.fanout == "per_shard":
        return [(str(k), ["--shard", str(k), "--n-shards", str(shards)]) for k in range(shards)]
    return [("", [])]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages at the end of the run (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
