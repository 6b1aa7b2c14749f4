"""``deepcuts ui``: the login, the port, the children's environment, and that a stop leaves nothing."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil

from deepcuts.airflow_ui import ProcessGroup, child_environment, ensure_login, pick_port


def test_login_is_created_once_and_then_kept(tmp_path: Path) -> None:
    password = ensure_login(tmp_path)
    stored = json.loads((tmp_path / "simple_auth_manager_passwords.json.generated").read_text())
    assert stored == {"admin": password} and len(password) >= 12
    assert ensure_login(tmp_path) == password
    # A password Airflow generated earlier (its file format) is kept, other users too.
    (tmp_path / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "abc", "bob": "x"}\n')
    assert ensure_login(tmp_path) == "abc"


def test_a_taken_port_moves_to_the_next_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = pick_port(taken)
        assert chosen > taken
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", chosen))  # it really was free


def test_children_find_this_airflow_without_path_and_report_to_the_real_port() -> None:
    env = child_environment(8795, {"PATH": "/usr/bin:/bin", "HOME": "/root"})
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin", "/bin"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8795/execution/"
    assert env["HOME"] == "/root"
    assert child_environment(8795, {})["PATH"] == str(Path(sys.executable).parent)


# A child that starts a grandchild in its group and one that leaves the group (setsid), then sleeps;
# it ignores SIGTERM, as a busy worker may.
_SPAWNER = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
a = subprocess.Popen(sleep)
b = subprocess.Popen(sleep, start_new_session=True)
print(a.pid, b.pid, flush=True)
time.sleep(300)
"""


def test_stop_ends_every_process_started_grandchildren_and_stubborn_ones_included(tmp_path: Path) -> None:
    group = ProcessGroup(log_dir=tmp_path, env=dict(os.environ))
    first = group.start("spawner", [sys.executable, "-c", _SPAWNER])
    second = group.start("sleeper", [sys.executable, "-c", "import time; time.sleep(300)"])
    assert os.getpgid(second.pid) == os.getpgid(first.pid) == first.pid != os.getpgid(0)
    deadline = time.monotonic() + 30
    while not (tmp_path / "spawner.log").read_text().strip():
        assert time.monotonic() < deadline, "the spawner did not start its children"
        time.sleep(0.1)
    grandchildren = [int(pid) for pid in (tmp_path / "spawner.log").read_text().split()]
    group.refresh()
    assert set(grandchildren) <= group.seen
    everyone = [first.pid, second.pid, *grandchildren]
    group.stop(grace_s=1.0)
    for pid in everyone:
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not alive, f"process {pid} survived the stop"
    assert first.returncode is not None and second.returncode is not None


def test_stop_without_children_is_a_no_op(tmp_path: Path) -> None:
    ProcessGroup(log_dir=tmp_path, env={}).stop()
