"""Apicurio Registry for the local stack (``stack up --schema-registry``), a real Schema Registry.

Its runnable distribution comes from Maven Central (``io.apicurio:apicurio-registry-app``,
``tar.gz`` classifier ``all``), downloaded once and unpacked under
``<stack_dir>/schema-registry`` like the Kafka jars. It runs on Java 17 with in-memory storage
on ``LEADERBOARD_SCHEMA_REGISTRY_PORT`` (moved by ``LEADERBOARD_STACK_OFFSET``); clients use
its Confluent-compatible API (``url()``) as ``LEADERBOARD_SCHEMA_REGISTRY_URL``.
``use-canonical-hash`` makes a re-sent schema keep its id, as Confluent's registry does.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from infra.stack.base import Progress, Service, display, port_open, spawn
from streams.errors import ServiceUnavailable
from streams.settings import Settings

#: The Maven coordinates of the runnable distribution (group:artifact:version:type:classifier).
ARTIFACT = "io.apicurio:apicurio-registry-app:3.0.9:tar.gz:all"

#: Path of the Confluent-compatible API below the registry's base URL.
CCOMPAT_PATH = "/apis/ccompat/v7"

SCHEMA_REGISTRY_START_TIMEOUT = 60.0


class SchemaRegistry(Service):
    """Apicurio Registry (in-memory storage) serving the Confluent Schema Registry API."""

    name = "schema-registry"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.stack_dir / "schema-registry"
        self.dist = self.home / "dist"
        # the unpacked jar's path names our instance: it tells our process from any other
        self.marker = str(self.dist)

    def port(self) -> int:
        return self.settings.schema_registry_port

    def url(self) -> str:
        """The Confluent-compatible API: the value for ``LEADERBOARD_SCHEMA_REGISTRY_URL``."""
        return f"http://127.0.0.1:{self.port()}{CCOMPAT_PATH}"

    def where(self) -> str:
        return self.url()

    def managed(self) -> bool:
        return True

    def answers(self) -> bool:
        if not port_open("127.0.0.1", self.port()):
            return False
        try:
            with urllib.request.urlopen(self.url() + "/subjects", timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except OSError:
            return False

    def _stamp(self) -> Path:
        return self.dist / ".resolved"

    def _dist_ready(self) -> bool:
        stamp = self._stamp()
        return stamp.is_file() and stamp.read_text().strip() == ARTIFACT

    def missing_packages(self) -> list[str]:
        missing = []
        if shutil.which("java") is None:
            missing.append("openjdk-17-jre-headless")
        if not self._dist_ready() and shutil.which("mvn") is None:
            missing.append("maven")
        return missing

    def runner(self) -> Path:
        """The runnable jar of the unpacked distribution."""
        found = sorted(self.dist.glob("*-runner.jar"))
        if not found:
            raise ServiceUnavailable(
                f"schema-registry: no runnable jar under {display(self.dist)}; "
                "run `leaderboard stack down --purge` and start it again"
            )
        return found[0]

    def _resolve(self, progress: Progress) -> None:
        """Download the distribution from Maven Central and unpack it (first run only)."""
        if self._dist_ready():
            return
        progress("schema-registry: downloading Apicurio Registry from Maven Central (first run)")
        tmp = self.home / "download.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        mvn_log = self.logs / "schema-registry-maven.log"
        with mvn_log.open("a") as out:
            done = subprocess.run(  # noqa: S603
                [
                    shutil.which("mvn") or "/usr/bin/mvn",
                    "-q",
                    "-B",
                    "dependency:copy",
                    f"-Dartifact={ARTIFACT}",
                    f"-DoutputDirectory={tmp}",
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                check=False,
            )
        archives = sorted(tmp.glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ServiceUnavailable(
                f"schema-registry: downloading {ARTIFACT} failed; read {display(mvn_log)}"
            )
        unpacked = tmp / "dist"
        with tarfile.open(archives[0]) as tar:
            tar.extractall(unpacked, filter="data")
        archives[0].unlink()
        (unpacked / ".resolved").write_text(ARTIFACT + "\n")
        shutil.rmtree(self.dist, ignore_errors=True)
        unpacked.rename(self.dist)
        shutil.rmtree(tmp, ignore_errors=True)

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return
        if port_open("127.0.0.1", self.port()):
            raise ServiceUnavailable(
                f"schema-registry: port {self.port()} is taken by another program; free it or "
                "set LEADERBOARD_SCHEMA_REGISTRY_PORT"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self._resolve(progress)
        jar = self.runner()
        progress("schema-registry: starting")
        cmd = [
            "java",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dquarkus.http.port={self.port()}",
            "-Dquarkus.http.host=127.0.0.1",
            "-Dquarkus.management.enabled=false",
            "-Dapicurio.ccompat.use-canonical-hash=true",
            "-jar",
            str(jar),
        ]
        pid = spawn(cmd, self.log_path, self.home)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        self._record_port()
