"""Prometheus for the local stack (``stack up --monitoring``), from Debian's ``prometheus``.

Our own process with our own configuration, data under the stack dir and our own port
(``LEADERBOARD_PROMETHEUS_PORT``): the Debian package's service on :9090, if the package
started one, is neither used nor touched. It scrapes every process announced under
``<stack_dir>/run/targets`` (the gateway and each worker with a metrics port, see
``processors.scrape_targets``) and evaluates the alerting rules of ``infra/monitoring``.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from infra.stack.base import Progress, Service, port_open, spawn
from processors.scrape_targets import targets, targets_dir
from streams.errors import ServiceUnavailable
from streams.settings import Settings

#: The alerting rules (and their promtool tests beside them).
MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULES = MONITORING / "alerts.yml"

CONFIG = """\
# Written by `leaderboard stack up --monitoring`; edits are overwritten on the next start.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - {rules}
scrape_configs:
  - job_name: leaderboard
    file_sd_configs:
      - files: ['{targets}/*.json']
        refresh_interval: 5s
"""


def binary(name: str = "prometheus") -> str | None:
    """Path of Debian's ``prometheus`` (or ``promtool``), None when the package is missing."""
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


class Prometheus(Service):
    """Our Prometheus: file-discovered targets, alerting rules, TSDB under the stack dir."""

    name = "prometheus"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.stack_dir / "prometheus"
        self.config = self.home / "prometheus.yml"
        # the config path names our instance: it tells our process from Debian's service
        self.marker = str(self.config)

    def port(self) -> int:
        return self.settings.prometheus_port

    def url(self) -> str:
        """Base URL of the HTTP API and web UI."""
        return f"http://127.0.0.1:{self.port()}"

    def where(self) -> str:
        return self.url()

    def managed(self) -> bool:
        return True

    def answers(self) -> bool:
        if not port_open("127.0.0.1", self.port()):
            return False
        try:
            with urllib.request.urlopen(self.url() + "/-/ready", timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except OSError:
            return False

    def missing_packages(self) -> list[str]:
        return [] if binary() else ["prometheus"]

    def write_config(self) -> None:
        """Write our configuration (targets directory, rules) under the stack dir."""
        self.home.mkdir(parents=True, exist_ok=True)
        folder = targets_dir(self.settings)
        folder.mkdir(parents=True, exist_ok=True)
        targets(self.settings)  # prunes the files of processes that died without cleaning up
        self.config.write_text(CONFIG.format(rules=RULES, targets=folder))

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return
        if port_open("127.0.0.1", self.port()):
            raise ServiceUnavailable(
                f"prometheus: port {self.port()} is taken by another program; free it or set "
                "LEADERBOARD_PROMETHEUS_PORT"
            )
        exe = binary()
        if exe is None:
            raise ServiceUnavailable("prometheus: not installed (apt-get install -y prometheus)")
        self.write_config()
        progress("prometheus: starting")
        cmd = [
            exe,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.home / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address=127.0.0.1:{self.port()}",
            "--web.enable-lifecycle",
        ]
        pid = spawn(cmd, self.log_path, self.home)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        self._record_port()

    def purge(self) -> None:
        shutil.rmtree(self.home / "data", ignore_errors=True)
