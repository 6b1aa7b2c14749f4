from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepcuts.bench import SHAPES, measure_many


def test_each_task_is_measured_on_its_own(tmp_path: Path) -> None:
    # Linux counts the launcher's own peak in a vfork()ed child's ru_maxrss, so launch from a small
    # process, as `deepcuts bench` is (the test process itself holds hundreds of MB).
    script = f"""
import json, os, sys
from pathlib import Path
from deepcuts.bench import measure_many
big = [sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"]
small = [sys.executable, "-c", "pass"]
print(json.dumps(measure_many([big, small, small], dict(os.environ), Path({str(tmp_path / "log.txt")!r}), 2)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    results = json.loads(out.strip().splitlines()[-1])
    assert len(results) == 3
    (_, _, rss_big), (_, _, rss_small), _ = results
    assert rss_big >= 200  # MB touched by the first task
    assert rss_small < 150  # not confused with its concurrent neighbour
    assert all(wall > 0 and cpu >= 0 for wall, cpu, _ in results)


def test_a_failing_task_names_its_log(tmp_path: Path) -> None:
    fail = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"exit code 3; see .*log.txt"):
        measure_many([fail], dict(os.environ), tmp_path / "log.txt", slots=1)
    assert "boom" in (tmp_path / "log.txt").read_text()


def test_shapes_match_the_movielens_releases() -> None:
    assert SHAPES["ml-1m"] == (6_040, 3_706, 1_000_209)
    assert SHAPES["ml-20m"] == (138_493, 26_744, 20_000_263)


def test_make_bench_runs_every_benchmark_script() -> None:
    """``make bench`` runs benchmarks/run_all.py, which lists a smoke run for every benchmark script."""
    repo = Path(__file__).resolve().parents[2]
    makefile = (repo / "Makefile").read_text()
    assert "\nbench: install\n\t$(BIN)/python benchmarks/run_all.py\n" in makefile
    out = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "run_all.py"), "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = {Path(line.split()[0]).stem for line in out.splitlines() if line.strip()}
    assert listed == {p.stem for p in (repo / "benchmarks").glob("bench_*.py")}


def test_schedule_seconds_hand_computed() -> None:
    from deepcuts.bench import schedule_seconds

    # two slots, launch order 3, 1, 1, 4: slot A 3 | slot B 1, 1, 4 -> B ends at 6
    assert schedule_seconds([3.0, 1.0, 1.0, 4.0], 2) == 6.0
    # the same tasks longest first: A 4, 1 | B 3, 1 -> 5 (launch order decides, as in a Celery worker)
    assert schedule_seconds([4.0, 3.0, 1.0, 1.0], 2) == 5.0
    assert schedule_seconds([2.0, 2.0], 1) == 4.0
    assert schedule_seconds([], 2) == 0.0


def test_measure_many_reports_each_end_and_writes_each_log(tmp_path: Path) -> None:
    slow = [sys.executable, "-c", "import time; print('slow'); time.sleep(0.4)"]
    fast = [sys.executable, "-c", "print('fast')"]
    ends: list[float] = []
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    measured = measure_many([slow, fast], dict(os.environ), logs, slots=2, ends=ends)
    assert len(measured) == 2 and len(ends) == 2
    assert ends[1] < ends[0]  # the fast one, launched beside the slow one, ended first
    assert ends[0] >= measured[0][0] - 0.05  # an end is at least that task's own wall after the launch
    assert logs[0].read_text().strip() == "slow" and logs[1].read_text().strip() == "fast"
