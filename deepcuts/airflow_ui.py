"""``make ui`` (``deepcuts ui``): the Airflow UI on the demo's lake and metadata DB.

Starts the api-server, the scheduler, the dag-processor and the triggerer as ``python -m airflow ...``
children of this process (so nothing depends on ``airflow`` being on ``PATH``), all in ONE process group,
and on Ctrl-C / SIGTERM stops that group and every process any of them started (Airflow's LocalExecutor
workers and the api-server's uvicorn workers included). ``airflow standalone`` does neither: it spawns
``airflow`` from ``PATH`` and leaves its scheduler and workers behind when it is terminated.

Like :mod:`deepcuts.demo`, this module must configure Airflow
before anything imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The login the UI prints; SimpleAuthManager's default user list is ``admin:admin`` (user ``admin``,
#: role admin).
UI_USER = "admin"
#: The Airflow components ``deepcuts ui`` runs, in start order.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Seconds to wait for the api-server's health endpoint before giving up.
STARTUP_TIMEOUT_S = 180.0
#: Seconds the children get to exit after SIGTERM before they are killed.
STOP_GRACE_S = 15.0


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(wanted: int, host: str = "127.0.0.1", tries: int = 50) -> int:
    """``wanted`` if it is free, else the next free port above it (another Airflow may hold 8080)."""
    for port in range(wanted, wanted + tries):
        if port_is_free(port, host):
            return port
    raise RuntimeError(f"no free port in {wanted}..{wanted + tries - 1}; pass --port")


def ensure_login(airflow_home: Path, user: str = UI_USER) -> str:
    """The password of ``user`` in SimpleAuthManager's passwords file, created if missing.

    Airflow generates it on the api-server's first start and prints it among hundreds of log lines;
    writing it first lets ``deepcuts ui`` print the login itself. An existing password is kept.
    """
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    passwords: dict[str, str] = json.loads(path.read_text() or "{}") if path.exists() else {}
    if not passwords.get(user):
        passwords[user] = secrets.token_urlsafe(12)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(passwords) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    return passwords[user]


def child_environment(port: int, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the Airflow children: this interpreter's ``bin/`` first on ``PATH`` (Airflow
    components that start ``airflow ...`` themselves find the same installation), and the execution API
    on the port the api-server really listens on (tasks report their state there)."""
    env = dict(os.environ if base_env is None else base_env)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, *[p for p in env.get("PATH", "").split(os.pathsep) if p]])
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    env["AIRFLOW__API__PORT"] = str(port)
    return env


@dataclass
class ProcessGroup:
    """Child processes in one process group of their own, stopped together (grandchildren included)."""

    log_dir: Path
    env: dict[str, str]
    #: Working directory of the children (``None``: ours).
    cwd: Path | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Every descendant seen so far, so that one that left the group (``setsid``) is still stopped.
    seen: set[int] = field(default_factory=set)

    @property
    def pgid(self) -> int | None:
        first = next(iter(self.procs.values()), None)
        return first.pid if first is not None else None

    def start(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                # The first child leads a new group; the others join it. The terminal's Ctrl-C goes to
                # our group only, and we stop theirs: no child dies half-way through our shutdown.
                process_group=self.pgid or 0,
            )
        self.procs[name] = proc
        return proc

    def refresh(self) -> None:
        """Remember every live descendant (cheap; called while waiting)."""
        import psutil

        for proc in self.procs.values():
            try:
                self.seen.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        self.seen.update(p.pid for p in self.procs.values())

    def exited(self) -> dict[str, int]:
        return {name: code for name, p in self.procs.items() if (code := p.poll()) is not None}

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the group and every descendant seen, SIGKILL to whatever is left after ``grace_s``."""
        import psutil

        if not self.procs:
            return
        self.refresh()
        _, alive = psutil.wait_procs(self._signal(signal.SIGTERM), timeout=grace_s)
        if alive:
            psutil.wait_procs(self._signal(signal.SIGKILL), timeout=5)
        for proc in self.procs.values():  # reap our children (no zombies left behind)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def _signal(self, sig: signal.Signals) -> list[Any]:
        """Send ``sig`` to the group and to every live descendant seen; returns those (psutil) processes."""
        import psutil

        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
        live = []
        for pid in sorted(self.seen):
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.send_signal(sig)
                    live.append(proc)
            except psutil.NoSuchProcess:
                continue
        return live


def wait_until_healthy(
    url: str, group: ProcessGroup, stopped: Callable[[], bool], timeout_s: float = STARTUP_TIMEOUT_S
) -> float:
    """Seconds until ``url`` answers 200; raises if a component exits, time runs out or a stop is asked."""
    start = time.monotonic()
    while True:
        if stopped():
            raise RuntimeError("stopped during start-up")
        dead = group.exited()
        if dead:
            raise RuntimeError(f"Airflow component(s) exited during start-up: {dead}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"the api-server did not answer {url} within {timeout_s:.0f}s")
        group.refresh()
        time.sleep(1.0)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_ui(home: Path, dags_folder: Path, port: int, host: str = "127.0.0.1") -> int:
    """Start the UI, print where and how to log in, serve until SIGINT/SIGTERM; returns the exit code."""
    from deepcuts.demo import configure_airflow, migrate_metadata_db
    from deepcuts.settings import _config_file

    started = time.monotonic()
    os.environ["DEEPCUTS_HOME"] = str(home)
    airflow_home = configure_airflow(home, dags_folder, quiet=False)
    if not (airflow_home / "airflow.db").exists():
        print(
            f"deepcuts ui: no Airflow metadata DB under {airflow_home} yet; the UI starts empty "
            "(`make run` fills it)",
            flush=True,
        )
    migrate_metadata_db(airflow_home)
    password = ensure_login(airflow_home)
    chosen = pick_port(port, host)
    if chosen != port:
        print(f"deepcuts ui: port {port} is taken; using {chosen}", flush=True)
    log_dir = airflow_home / "logs" / "ui"
    env = child_environment(chosen)
    config_file = _config_file(None)
    if config_file is not None:  # the children run elsewhere: keep the same settings file
        env["DEEPCUTS_CONFIG"] = str(config_file.resolve())
    # Not the repository: ``python -m`` puts the working directory on sys.path, and the repository's
    # deepcuts.egg-info (editable install) would register our Airflow plugin a second time
    # ("Plugin 'deepcuts' already registered": an import error on the UI's home page).
    group = ProcessGroup(log_dir=log_dir, env=env, cwd=airflow_home)
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name in COMPONENTS:
            argv = [sys.executable, "-m", "airflow", name]
            if name == "api-server":
                argv += ["--port", str(chosen), "--host", host, "--workers", "1"]
            group.start(name, argv)
        url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{chosen}"
        print(f"deepcuts ui: starting {', '.join(COMPONENTS)} (logs: {log_dir}) ...", flush=True)
        try:
            wait_until_healthy(
                f"http://127.0.0.1:{chosen}/api/v2/monitor/health", group, lambda: bool(stop_requested)
            )
        except RuntimeError as exc:
            if stop_requested:
                return 130
            tails = "\n".join(f"--- {n}.log\n{_tail(log_dir / f'{n}.log')}" for n in COMPONENTS)
            print(f"deepcuts ui: {exc}\n{tails}", file=sys.stderr)
            return 1
        print(
            f"\ndeepcuts ui: Airflow UI at {url}  (up in {time.monotonic() - started:.0f}s)\n"
            f"  login: {UI_USER} / {password}\n"
            "  DAGs: deepcuts_nightly, deepcuts_reports, deepcuts_weekly; paused, so the scheduler starts\n"
            "        no run by itself (trigger a night by hand, or unpause)\n"
            f"  reports: Browse > Deep-cut reports ({url}/deepcuts/)\n"
            f"  Ctrl-C stops every process this command started.",
            flush=True,
        )
        while not stop_requested:
            dead = group.exited()
            if dead:
                print(f"deepcuts ui: Airflow component(s) exited: {dead}; stopping", file=sys.stderr)
                return 1
            group.refresh()
            time.sleep(1.0)
        return 0
    finally:
        print("deepcuts ui: stopping ...", flush=True)
        group.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("deepcuts ui: stopped", flush=True)
