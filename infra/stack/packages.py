"""Debian packages the stack needs (Java, Maven, Redis, PostgreSQL), installed with apt-get.

Only root can install; anyone else gets a message naming the packages to install by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from infra.stack.base import Progress, display, is_root
from streams.errors import ServiceUnavailable

_apt_updated = False


def apt_install(packages: list[str], progress: Progress, logs: Path) -> None:
    """Install Debian packages (root only); ``apt-get update`` runs once per process."""
    global _apt_updated
    if not is_root() or shutil.which("apt-get") is None:
        raise ServiceUnavailable(
            f"missing {' '.join(packages)}: install them "
            f"(e.g. sudo apt-get install -y {' '.join(packages)}) and retry"
        )
    apt_get = shutil.which("apt-get") or "/usr/bin/apt-get"
    logs.mkdir(parents=True, exist_ok=True)
    apt_log = logs / "apt.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with apt_log.open("a") as out:
        if not _apt_updated:
            progress("apt-get update")
            subprocess.run(  # noqa: S603
                [apt_get, "update"], stdout=out, stderr=out, env=env, check=False
            )
            _apt_updated = True
        progress(f"apt-get install {' '.join(packages)}")
        done = subprocess.run(  # noqa: S603
            [apt_get, "install", "-y", "--no-install-recommends", *packages],
            stdout=out,
            stderr=out,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if done.returncode != 0:
        raise ServiceUnavailable(
            f"apt-get install {' '.join(packages)} failed; read {display(apt_log)}"
        )
