"""What every service of the local stack shares: the ``Service`` base class and its state.

Also the process plumbing the services use: pid files guarded against pid reuse, port probes,
detached spawning and the SIGTERM-then-SIGKILL stop, plus the timeouts and the hosts that count
as "the local stack".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ServiceUnavailable
from streams.settings import Settings

log = logging.getLogger("infra.stack")

#: Called with a short human-readable line whenever the stack makes progress.
Progress = Callable[[str], None]

KAFKA_START_TIMEOUT = 90.0
REDIS_START_TIMEOUT = 20.0
POSTGRES_START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", ""})


@dataclass(frozen=True)
class ServiceState:
    """What ``status`` knows about one service."""

    name: str
    up: bool
    owner: str | None  # "ours", "external" or None when down
    where: str
    log: Path | None
    pid: int | None = None
    detail: str = ""

    def line(self) -> str:
        """One line for the CLI."""
        state = "up" if self.up else "down"
        owner = self.owner or "-"
        if self.owner == "ours" and self.pid:
            owner = f"ours (pid {self.pid})"
        text = f"{self.name:<15} {state:<5} {owner:<18} {self.where}"
        if self.log is not None and self.owner != "external":
            text += f"  log: {display(self.log)}"
        if self.detail:
            text += f"  ({self.detail})"
        return text


def noop(_: str) -> None:
    """The default ``Progress``: says nothing."""


def display(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (for messages)."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (guards pid reuse)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return marker in cmdline


def read_pid(path: Path) -> int | None:
    """The first number in ``path`` (a pid or port file), None when absent or unreadable."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_pid(pid: int, marker: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait for exit, SIGKILL as a last resort."""
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return
        time.sleep(0.2)
    log.warning("pid %s did not exit within %.0fs; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid, marker):
        time.sleep(0.1)


def spawn(cmd: list[str], log_path: Path, cwd: Path) -> int:
    """Start ``cmd`` detached (own session, reparented to init) and return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script = '"$@" >>"$LB_LOG" 2>&1 </dev/null & echo $!'
    out = subprocess.run(  # noqa: S603
        ["/bin/sh", "-c", script, "sh", *cmd],
        cwd=cwd,
        env={**os.environ, "LB_LOG": str(log_path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    return int(out.stdout.strip())


def is_root() -> bool:
    """True when running as root (apt installs, ``runuser`` for PostgreSQL)."""
    return os.geteuid() == 0


# --------------------------------------------------------------------------- services


class Service:
    """One service of the stack; subclasses fill in probing, starting and stopping."""

    name = "service"
    marker = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stack_dir = settings.stack_dir.resolve()
        self.logs = self.stack_dir / "logs"
        self.run_dir = self.stack_dir / "run"

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def where(self) -> str:
        raise NotImplementedError

    def managed(self) -> bool:
        """True when the configured address is the one the local stack serves."""
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def our_pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if pid is not None and pid_alive(pid, self.marker) else None

    def missing_packages(self) -> list[str]:
        return []

    def start(self, progress: Progress) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pid = self.our_pid()
        if pid is not None:
            stop_pid(pid, self.marker)
        self.pid_file.unlink(missing_ok=True)
        self.port_file.unlink(missing_ok=True)

    def after_start(self, progress: Progress) -> None:
        """Hook run once the process listens (PostgreSQL creates its role and database)."""

    def purge(self) -> None:
        """Delete the data of our instance."""

    def port(self) -> int:
        raise NotImplementedError

    @property
    def port_file(self) -> Path:
        return self.run_dir / f"{self.name}.port"

    def _record_port(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port_file.write_text(f"{self.port()}\n")

    def serving_pid(self) -> int | None:
        """Our pid when our process is the one serving the configured port."""
        pid = self.our_pid()
        return pid if pid is not None and read_pid(self.port_file) == self.port() else None

    def _check_not_elsewhere(self) -> bool:
        """True when our process already runs for this port (still starting up)."""
        pid = self.our_pid()
        if pid is None:
            return False
        if self.serving_pid() is None:
            raise ServiceUnavailable(
                f"{self.name}: our server (pid {pid}) runs on port {read_pid(self.port_file)}, "
                f"not {self.port()}; run `leaderboard stack down` first"
            )
        return True

    def state(self) -> ServiceState:
        pid = self.serving_pid()
        up = self.answers()
        owner = ("ours" if pid else "external") if up else None
        detail = ""
        if not up and pid:
            detail = "process running but not answering"
        return ServiceState(self.name, up, owner, self.where(), self.log_path, pid, detail)
