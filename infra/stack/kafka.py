"""Apache Kafka 4.x for the local stack: KRaft broker + controller in one JVM, no Docker.

The jars come from Maven Central through ``infra/kafka/pom.xml`` (resolved once, stamped with
the pom's digest); ``infra/kafka/server.properties.template`` is filled in with the configured
ports and the storage is formatted once, never wiped.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import uuid
from collections.abc import Sequence

from infra.stack.base import LOCAL_HOSTS, Progress, Service, display, noop, port_open, spawn
from processors.bootstrap import kafka_admin
from streams.errors import ServiceUnavailable
from streams.settings import PROJECT_ROOT, Settings

#: The broker's JIT: the quick compiler only (C1). On the 2-core development machine the
#: optimizing compiler (C2) was the broker's largest CPU consumer for its first ten minutes
#: and more (14 s of CPU in its first 515 s against 9 s handling requests); C1 alone halves
#: the start-up CPU and cut the broker's CPU per ingested entry by about a third, while its
#: code handles this stack's request rates as well (benchmarks/notes.md, "The machine's CPU
#: budget"). A long-lived production broker on bigger machines keeps the JVM's default.
BROKER_JIT = ("-XX:TieredStopAtLevel=1",)

#: Data folder of the Kafka service (pom, config template, log4j2 config), loaded by path.
KAFKA_INFRA = PROJECT_ROOT / "infra" / "kafka"


class Kafka(Service):
    """Apache Kafka 4.x in KRaft mode (broker + controller), jars from Maven Central."""

    name = "kafka"
    marker = "kafka.Kafka"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.stack_dir / "kafka"
        self.libs = self.home / "libs"
        self.data = self.home / "data"
        self.config = self.home / "server.properties"

    def where(self) -> str:
        return self.settings.kafka_bootstrap

    def port(self) -> int:
        return self.settings.kafka_port

    def managed(self) -> bool:
        servers = [s.strip() for s in self.settings.kafka_bootstrap.split(",") if s.strip()]
        if len(servers) != 1:
            return False
        host, _, port = servers[0].rpartition(":")
        return host in LOCAL_HOSTS and port == str(self.settings.kafka_port)

    def answers(self) -> bool:
        if self.managed() and not port_open("127.0.0.1", self.settings.kafka_port):
            return False
        # list_topics bounds the probe to 3 s; rdkafka's own log lines go to DEBUG.
        admin = kafka_admin(self.settings, **{"socket.timeout.ms": 3000})
        try:
            meta = admin.list_topics(timeout=3)
        except Exception:
            return False
        return bool(meta.brokers)

    def missing_packages(self) -> list[str]:
        missing = []
        if shutil.which("java") is None:
            missing.append("openjdk-17-jre-headless")
        if not self._libs_ready() and shutil.which("mvn") is None:
            missing.append("maven")
        return missing

    def _pom_digest(self) -> str:
        return hashlib.sha256((KAFKA_INFRA / "pom.xml").read_bytes()).hexdigest()

    def _libs_ready(self) -> bool:
        stamp = self.libs / ".resolved"
        return stamp.is_file() and stamp.read_text().strip() == self._pom_digest()

    def _resolve_jars(self, progress: Progress) -> None:
        if self._libs_ready():
            return
        progress("kafka: resolving jars from Maven Central (first run only)")
        tmp = self.home / "libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        mvn_log = self.logs / "maven.log"
        self.logs.mkdir(parents=True, exist_ok=True)
        with mvn_log.open("a") as out:
            done = subprocess.run(  # noqa: S603
                [
                    shutil.which("mvn") or "/usr/bin/mvn",
                    "-q",
                    "-B",
                    "-f",
                    str(KAFKA_INFRA / "pom.xml"),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={tmp}",
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if done.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            raise ServiceUnavailable(f"kafka: resolving jars failed; read {display(mvn_log)}")
        (tmp / ".resolved").write_text(self._pom_digest() + "\n")
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)

    def _write_config(self) -> None:
        template = (KAFKA_INFRA / "server.properties.template").read_text()
        values = {
            "kafka_port": str(self.settings.kafka_port),
            "controller_port": str(self.settings.kafka_controller_port),
            "log_dir": str(self.data),
        }
        for key, value in values.items():
            template = template.replace("${" + key + "}", value)
        self.config.write_text(template)

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            *BROKER_JIT,
            f"-Xmx{self.settings.kafka_heap}",
            f"-Xms{self.settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_INFRA / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            *args,
        ]

    def tool_command(self, main_class: str, args: Sequence[str]) -> list[str]:
        """The java command of one of Kafka's operator tools (jars resolved first if needed)."""
        self._resolve_jars(noop)
        return [
            "java",
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={KAFKA_INFRA / 'log4j2-tools.properties'}",
            "-cp",
            f"{self.libs}/*",
            main_class,
            *args,
        ]

    def _format_once(self, progress: Progress) -> None:
        """Format the log dir unless it already holds a cluster (never wipe data)."""
        if (self.data / "meta.properties").is_file():
            return
        progress("kafka: formatting storage (first run only)")
        id_file = self.home / "cluster.id"
        if not id_file.is_file():
            raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            id_file.write_text(raw + "\n")
        cluster_id = id_file.read_text().strip()
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as out:
            done = subprocess.run(  # noqa: S603
                [
                    *self._java("kafka.tools.StorageTool", "format", "--standalone"),
                    # "=" form: a random id may start with "-" (1 in 64), which argparse would
                    # take for an option
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(self.config),
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                check=False,
            )
        if done.returncode != 0:
            raise ServiceUnavailable(
                f"kafka: formatting storage failed; read {display(self.log_path)}"
            )

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return  # still starting up
        if port_open("127.0.0.1", self.settings.kafka_port):
            raise ServiceUnavailable(
                f"kafka: port {self.settings.kafka_port} is taken by a program that does not "
                "answer Kafka metadata requests; free it or set LEADERBOARD_KAFKA_PORT and "
                "LEADERBOARD_KAFKA_BOOTSTRAP"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self._resolve_jars(progress)
        self._write_config()
        self._format_once(progress)
        progress("kafka: starting broker")
        pid = spawn(self._java("kafka.Kafka", str(self.config)), self.log_path, self.home)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        self._record_port()

    def purge(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        (self.home / "cluster.id").unlink(missing_ok=True)
