"""Where the local Prometheus and the gateway's ``/ops`` page find the processes to scrape.

A process that serves ``/metrics`` (the gateway, each worker) writes one file in Prometheus'
``file_sd`` format under ``<stack_dir>/run/targets/`` (``<role>-<pid>.json``, with a ``role``
label) and deletes it when it exits; Prometheus
(``stack up --monitoring``) watches that directory, and the gateway reads it. Files of
processes that died without cleaning up are pruned by the next reader.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings

__all__ = ["Target", "register", "targets", "targets_dir"]


@dataclass(frozen=True, slots=True)
class Target:
    """One process serving Prometheus metrics."""

    role: str
    address: str  # host:port
    pid: int

    @property
    def url(self) -> str:
        """Its metrics URL."""
        return f"http://{self.address}/metrics"


def targets_dir(settings: Settings) -> Path:
    """The directory of target files (Prometheus ``file_sd_configs`` reads ``*.json`` in it)."""
    return settings.stack_dir.resolve() / "run" / "targets"


def register(settings: Settings, role: str, port: int, host: str = "127.0.0.1") -> Path:
    """Announce this process's metrics endpoint; the file is removed when the process exits."""
    targets(settings)  # prunes the files of processes that died without cleaning up
    folder = targets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a listen-everywhere address, not a bind
        host = "127.0.0.1"
    pid = os.getpid()
    path = folder / f"{role}-{pid}.json"
    body = [{"targets": [f"{host}:{port}"], "labels": {"role": role}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)  # atomic: Prometheus never reads half a file
    atexit.register(_remove, path)
    return path


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def targets(settings: Settings) -> list[Target]:
    """The registered targets of live processes (files of dead ones are deleted)."""
    found: list[Target] = []
    folder = targets_dir(settings)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])  # <role>-<pid>.json
            entry = json.loads(path.read_text())[0]
            target = Target(entry["labels"]["role"], entry["targets"][0], pid)
        except (OSError, ValueError, LookupError, TypeError):
            continue
        if not _alive(pid):
            _remove(path)
            continue
        found.append(target)
    return found
