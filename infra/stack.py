"""The local stack: Kafka (KRaft, from Maven Central), Redis and PostgreSQL, started without Docker.

``up`` is idempotent: a service that already answers on its configured address is reused (ours
if its pid file names a live process of ours, external otherwise); a missing one is installed if
needed, started with its data under ``Settings.stack_dir`` and waited for until it really answers.
``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from processors.bootstrap import migrate_database
from processors.kafka.admin import create_topics
from streams.errors import LeaderboardError, ServiceUnavailable
from streams.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

#: Called with a short human-readable line whenever the stack makes progress.
Progress = Callable[[str], None]

KAFKA_INFRA = PROJECT_ROOT / "infra" / "kafka"
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
        text = f"{self.name:<13} {state:<5} {owner:<18} {self.where}"
        if self.log is not None and self.owner != "external":
            text += f"  log: {_display(self.log)}"
        if self.detail:
            text += f"  ({self.detail})"
        return text


def _noop(_: str) -> None:
    pass


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int, marker: str) -> bool:
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


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _stop_pid(pid: int, marker: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait for exit, SIGKILL as a last resort."""
    if not _pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid, marker):
            return
        time.sleep(0.2)
    log.warning("pid %s did not exit within %.0fs; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _pid_alive(pid, marker):
        time.sleep(0.1)


def _spawn(cmd: list[str], log_path: Path, cwd: Path) -> int:
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


def _is_root() -> bool:
    return os.geteuid() == 0


_apt_updated = False


def _apt_install(packages: list[str], progress: Progress, logs: Path) -> None:
    """Install Debian packages (root only); ``apt-get update`` runs once per process."""
    global _apt_updated
    if not _is_root() or shutil.which("apt-get") is None:
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
            f"apt-get install {' '.join(packages)} failed; read {_display(apt_log)}"
        )


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
        pid = _read_pid(self.pid_file)
        return pid if pid is not None and _pid_alive(pid, self.marker) else None

    def missing_packages(self) -> list[str]:
        return []

    def start(self, progress: Progress) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pid = self.our_pid()
        if pid is not None:
            _stop_pid(pid, self.marker)
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
        return pid if pid is not None and _read_pid(self.port_file) == self.port() else None

    def _check_not_elsewhere(self) -> bool:
        """True when our process already runs for this port (still starting up)."""
        pid = self.our_pid()
        if pid is None:
            return False
        if self.serving_pid() is None:
            raise ServiceUnavailable(
                f"{self.name}: our server (pid {pid}) runs on port {_read_pid(self.port_file)}, "
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
        if self.managed() and not _port_open("127.0.0.1", self.settings.kafka_port):
            return False
        from confluent_kafka.admin import AdminClient

        quiet = logging.getLogger("leaderboard.stack.rdkafka")
        quiet.setLevel(logging.CRITICAL)
        conf: dict[str, Any] = {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "socket.timeout.ms": 3000,
            "logger": quiet,
        }
        admin = AdminClient(conf)
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
            raise ServiceUnavailable(f"kafka: resolving jars failed; read {_display(mvn_log)}")
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
            f"-Xmx{self.settings.kafka_heap}",
            f"-Xms{self.settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_INFRA / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
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
                    "-t",
                    cluster_id,
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
                f"kafka: formatting storage failed; read {_display(self.log_path)}"
            )

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return  # still starting up
        if _port_open("127.0.0.1", self.settings.kafka_port):
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
        pid = _spawn(self._java("kafka.Kafka", str(self.config)), self.log_path, self.home)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        self._record_port()

    def purge(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        (self.home / "cluster.id").unlink(missing_ok=True)


class Redis(Service):
    """Redis from Debian's ``redis-server`` package, append-only file under the stack dir."""

    name = "redis"
    marker = "redis-server"

    def _url(self) -> tuple[str, int]:
        parts = urlsplit(self.settings.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    def where(self) -> str:
        return self.settings.redis_url

    def port(self) -> int:
        return self.settings.redis_port

    def managed(self) -> bool:
        host, port = self._url()
        return host in LOCAL_HOSTS and port == self.settings.redis_port

    def answers(self) -> bool:
        import redis

        client = redis.Redis.from_url(
            self.settings.redis_url, socket_connect_timeout=2, socket_timeout=2
        )
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def missing_packages(self) -> list[str]:
        return [] if shutil.which("redis-server") else ["redis-server"]

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return
        if _port_open("127.0.0.1", self.settings.redis_port):
            raise ServiceUnavailable(
                f"redis: port {self.settings.redis_port} is taken by a program that does not "
                "answer PING; free it or set LEADERBOARD_REDIS_PORT and LEADERBOARD_REDIS_URL"
            )
        data = self.stack_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        progress("redis: starting")
        self._record_port()
        redis_server = shutil.which("redis-server") or "redis-server"
        done = subprocess.run(  # noqa: S603
            [
                redis_server,
                "--port",
                str(self.settings.redis_port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(data),
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.log_path),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceUnavailable(
                f"redis: failed to start ({done.stderr.strip() or done.stdout.strip()}); "
                f"read {_display(self.log_path)}"
            )

    def purge(self) -> None:
        shutil.rmtree(self.stack_dir / "redis", ignore_errors=True)


class RedisCluster(Service):
    """A local Redis Cluster: ``redis_cluster_nodes`` masters (no replicas) on consecutive ports.

    Each node is Debian's ``redis-server`` in cluster mode with its data under
    ``<stack_dir>/redis-cluster/<port>/``; the first ``up`` joins them with
    ``redis-cli --cluster create``, later runs reuse the cluster the nodes remember.
    """

    name = "redis-cluster"
    marker = "redis-server"

    @property
    def ports(self) -> list[int]:
        """The node ports, the first one being ``redis_cluster_port``."""
        first = self.settings.redis_cluster_port
        return list(range(first, first + self.settings.redis_cluster_nodes))

    def node_dir(self, port: int) -> Path:
        return self.stack_dir / "redis-cluster" / str(port)

    def node_pid_file(self, port: int) -> Path:
        return self.run_dir / f"redis-cluster-{port}.pid"

    def node_log(self, port: int) -> Path:
        return self.logs / f"redis-cluster-{port}.log"

    @property
    def log_path(self) -> Path:
        return self.node_log(self.ports[0])

    def where(self) -> str:
        return self.settings.redis_cluster_url

    def port(self) -> int:
        return self.settings.redis_cluster_port

    def managed(self) -> bool:
        parts = urlsplit(self.settings.redis_cluster_url)
        return (parts.hostname or "") in LOCAL_HOSTS and parts.port == self.ports[0]

    def _node_pids(self) -> list[int | None]:
        pids = [_read_pid(self.node_pid_file(p)) for p in self.ports]
        return [p if p is not None and _pid_alive(p, self.marker) else None for p in pids]

    def our_pid(self) -> int | None:
        pids = self._node_pids()
        return pids[0] if all(pids) else None

    def serving_pid(self) -> int | None:
        return self.our_pid()

    def _info(self) -> dict[str, Any] | None:
        import redis

        parts = urlsplit(self.settings.redis_cluster_url)
        client = redis.Redis(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        try:
            info: dict[str, Any] = client.cluster("INFO")
            return info
        except Exception:
            return None
        finally:
            client.close()

    def answers(self) -> bool:
        info = self._info()
        return info is not None and str(info.get("cluster_state")) == "ok"

    def missing_packages(self) -> list[str]:
        return [] if shutil.which("redis-server") else ["redis-server"]

    def start(self, progress: Progress) -> None:
        pids = self._node_pids()
        redis_server = shutil.which("redis-server") or "redis-server"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for port, pid in zip(self.ports, pids, strict=True):
            if pid is not None:
                continue
            if _port_open("127.0.0.1", port):
                raise ServiceUnavailable(
                    f"redis-cluster: port {port} is taken by another program; free it or set "
                    "LEADERBOARD_REDIS_CLUSTER_PORT and LEADERBOARD_REDIS_CLUSTER_URL"
                )
            data = self.node_dir(port)
            data.mkdir(parents=True, exist_ok=True)
            progress(f"redis-cluster: starting node {port}")
            done = subprocess.run(  # noqa: S603
                [
                    redis_server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--daemonize",
                    "yes",
                    "--dir",
                    str(data),
                    "--pidfile",
                    str(self.node_pid_file(port)),
                    "--logfile",
                    str(self.node_log(port)),
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                start_new_session=True,
                check=False,
            )
            if done.returncode != 0:
                raise ServiceUnavailable(
                    f"redis-cluster: node {port} failed to start "
                    f"({done.stderr.strip() or done.stdout.strip()}); "
                    f"read {_display(self.node_log(port))}"
                )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not all(_port_open("127.0.0.1", p) for p in self.ports):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"redis-cluster: nodes did not listen within {REDIS_START_TIMEOUT:.0f}s; "
                    f"read the logs under {_display(self.logs)}"
                )
            time.sleep(0.1)
        info = self._info() or {}
        if int(info.get("cluster_slots_assigned", 0)) == 0:
            self._create(progress)

    def _create(self, progress: Progress) -> None:
        progress("redis-cluster: joining the nodes (redis-cli --cluster create)")
        cli = shutil.which("redis-cli") or "redis-cli"
        with self.log_path.open("a") as out:
            done = subprocess.run(  # noqa: S603
                [
                    cli,
                    "--cluster",
                    "create",
                    *[f"127.0.0.1:{p}" for p in self.ports],
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if done.returncode != 0:
            raise ServiceUnavailable(
                f"redis-cluster: creating the cluster failed; read {_display(self.log_path)} "
                "(`leaderboard stack down --purge` resets a half-made cluster)"
            )

    def stop(self) -> None:
        for port, pid in zip(self.ports, self._node_pids(), strict=True):
            if pid is not None:
                _stop_pid(pid, self.marker)
            self.node_pid_file(port).unlink(missing_ok=True)

    def running(self) -> bool:
        """True when any node of ours runs (``down`` and ``status`` then include the cluster)."""
        return any(self._node_pids())

    def state(self) -> ServiceState:
        up = self.answers()
        pid = self.our_pid()
        owner = ("ours" if pid else "external") if up else None
        detail = f"{len(self.ports)} masters on ports {self.ports[0]}-{self.ports[-1]}"
        if not up and self.running():
            detail = "nodes running but the cluster is not ok"
        return ServiceState(self.name, up, owner, self.where(), self.log_path, pid, detail)

    def purge(self) -> None:
        shutil.rmtree(self.stack_dir / "redis-cluster", ignore_errors=True)


class Postgres(Service):
    """PostgreSQL from Debian's packages: own cluster (initdb), run as the ``postgres`` user."""

    name = "postgres"
    marker = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._base: Path | None = None

    # -- configuration ---------------------------------------------------------------
    def _dsn(self) -> dict[str, Any]:
        from psycopg.conninfo import conninfo_to_dict

        return dict(conninfo_to_dict(self.settings.postgres_dsn))

    def where(self) -> str:
        d = self._dsn()
        return f"postgresql://{d.get('host', '')}:{d.get('port', 5432)}/{d.get('dbname', '')}"

    def port(self) -> int:
        return self.settings.postgres_port

    def managed(self) -> bool:
        d = self._dsn()
        return str(d.get("host", "")) in LOCAL_HOSTS and str(d.get("port", "5432")) == str(
            self.settings.postgres_port
        )

    def _bin(self, tool: str) -> str:
        candidates = sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
            key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
        )
        if candidates:
            return candidates[-1]
        return shutil.which(tool) or tool

    def missing_packages(self) -> list[str]:
        return [] if glob.glob("/usr/lib/postgresql/*/bin/initdb") else ["postgresql"]

    def _as_postgres(self) -> list[str]:
        """Prefix that runs a command as the ``postgres`` OS user (the server refuses root)."""
        return ["runuser", "-u", "postgres", "--"] if _is_root() else []

    @property
    def base(self) -> Path:
        """Folder holding data and socket: in the stack dir when the server's user can reach it."""
        if self._base is None:
            self._base = self._choose_base()
        return self._base

    def _fallback_base(self) -> Path:
        digest = hashlib.sha256(str(self.stack_dir).encode()).hexdigest()[:12]
        # Used when the postgres user cannot reach the stack dir (e.g. a clone under /root).
        return Path("/var/tmp") / f"leaderboard-stack-{digest}" / "postgres"  # noqa: S108

    def _choose_base(self) -> Path:
        local = self.stack_dir / "postgres"
        if not _is_root():
            return local
        if (local / "data" / "PG_VERSION").is_file():
            return local
        fallback = self._fallback_base()
        if (fallback / "data" / "PG_VERSION").is_file():
            return fallback
        if len(str(local / "run" / ".s.PGSQL.65535")) < 100:
            local.mkdir(parents=True, exist_ok=True)
            shutil.chown(local, "postgres", "postgres")
            ok = subprocess.run(  # noqa: S603
                [*self._as_postgres(), "test", "-w", str(local), "-a", "-x", str(local)],
                cwd="/",
                check=False,
            )
            if ok.returncode == 0:
                return local
            shutil.rmtree(local, ignore_errors=True)
        return fallback

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"

    # -- probing ---------------------------------------------------------------------
    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.settings.postgres_dsn, connect_timeout=3) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except Exception:
            return False

    def our_pid(self) -> int | None:
        # The data dir may be unreadable for a non-root user; only ours can be read.
        try:
            pid = _read_pid(self.pid_file)
        except PermissionError:
            return None
        return pid if pid is not None and _pid_alive(pid, self.marker) else None

    # -- lifecycle -------------------------------------------------------------------
    def _prepare_dir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(path, "postgres", "postgres")
            for parent in path.parents:
                if parent in (Path("/var/tmp"), self.stack_dir):  # noqa: S108
                    break
                shutil.chown(parent, "postgres", "postgres")

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return
        if _port_open("127.0.0.1", self.settings.postgres_port):
            raise ServiceUnavailable(
                f"postgres: port {self.settings.postgres_port} is taken by a server that does "
                "not accept LEADERBOARD_POSTGRES_DSN; free it or set LEADERBOARD_POSTGRES_PORT "
                "and LEADERBOARD_POSTGRES_DSN"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        self._prepare_dir(self.base)
        self._prepare_dir(self.socket_dir)
        if not (self.data / "PG_VERSION").is_file():
            progress("postgres: initdb (first run only)")
            self._prepare_dir(self.data)
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                "initdb",
            )
        progress("postgres: starting")
        self._record_port()
        options = " ".join(
            [
                f"-p {self.settings.postgres_port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={shlex.quote(str(self.socket_dir))}",
            ]
        )
        self._run(
            [
                self._bin("pg_ctl"),
                "start",
                "-w",
                "-t",
                str(int(POSTGRES_START_TIMEOUT)),
                "-D",
                str(self.data),
                "-o",
                options,
            ],
            "pg_ctl start",
        )

    def _run(self, cmd: list[str], what: str) -> None:
        with self.log_path.open("a") as out:
            done = subprocess.run(  # noqa: S603
                [*self._as_postgres(), *cmd],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                cwd=self.base,
                start_new_session=True,
                check=False,
            )
        if done.returncode != 0:
            raise ServiceUnavailable(f"postgres: {what} failed; read {_display(self.log_path)}")

    def after_start(self, progress: Progress) -> None:
        """Create the role and database named by the DSN (idempotent), as the superuser."""
        import psycopg
        from psycopg import sql

        d = self._dsn()
        user = str(d.get("user") or "leaderboard")
        password = str(d.get("password") or "leaderboard")
        dbname = str(d.get("dbname") or user)
        progress("postgres: ensuring role and database")
        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.settings.postgres_port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(user)
                    )
                )

    def stop(self) -> None:
        if self.our_pid() is None:
            return
        self._run(
            [self._bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)],
            "pg_ctl stop",
        )
        self.port_file.unlink(missing_ok=True)

    def purge(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self._fallback_base().parent, ignore_errors=True)


# --------------------------------------------------------------------------- the stack


def services(settings: Settings, *, redis_cluster: bool = False) -> list[Service]:
    """The services in start order (Kafka first: it takes longest, the others start meanwhile).

    The Redis Cluster joins when asked for (``redis_cluster``), when the settings use it, or
    when our nodes already run (so that ``status`` shows it and ``down`` stops it).
    """
    found: list[Service] = [Kafka(settings), Redis(settings), Postgres(settings)]
    cluster = RedisCluster(settings)
    if redis_cluster or settings.redis_cluster or cluster.running():
        found.append(cluster)
    return found


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialize concurrent ``up``/``down`` calls (e.g. a test session and ``make up``)."""
    run = settings.stack_dir.resolve() / "run"
    run.mkdir(parents=True, exist_ok=True)
    with (run / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _wait(svc: Service, timeout: float, progress: Progress) -> None:
    progress(f"{svc.name}: waiting for it to answer on {svc.where()}")
    deadline = time.monotonic() + timeout
    while True:
        if svc.answers():
            return
        if svc.our_pid() is None and not isinstance(svc, Postgres):
            raise ServiceUnavailable(
                f"{svc.name}: the process exited while starting; read {_display(svc.log_path)}"
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"{svc.name}: no answer on {svc.where()} within {timeout:.0f}s; "
                f"read {_display(svc.log_path)}"
            )
        time.sleep(0.5)


_TIMEOUTS = {
    "kafka": KAFKA_START_TIMEOUT,
    "redis": REDIS_START_TIMEOUT,
    "redis-cluster": REDIS_START_TIMEOUT,
}


def up(
    settings: Settings,
    progress: Progress = _noop,
    *,
    setup: bool = True,
    redis_cluster: bool = False,
) -> list[ServiceState]:
    """Bring every service up (reusing healthy ones) and wait until each answers.

    ``redis_cluster`` also starts the local Redis Cluster beside the single node.
    """
    with _locked(settings):
        all_services = services(settings, redis_cluster=redis_cluster)
        started: list[Service] = []
        to_start: list[Service] = []
        for svc in all_services:
            progress(f"{svc.name}: checking {svc.where()}")
            if svc.answers():
                continue
            if not svc.managed():
                raise ServiceUnavailable(
                    f"{svc.name}: the configured server {svc.where()} does not answer; start it "
                    f"or unset the LEADERBOARD_* variable to use the local stack"
                )
            to_start.append(svc)
        missing = sorted({pkg for svc in to_start for pkg in svc.missing_packages()})
        if missing:
            _apt_install(missing, progress, settings.stack_dir.resolve() / "logs")
        for svc in to_start:
            svc.start(progress)
            started.append(svc)
        for svc in started:
            if isinstance(svc, Postgres):
                svc.after_start(progress)
            _wait(svc, _TIMEOUTS.get(svc.name, POSTGRES_START_TIMEOUT), progress)
        if setup:
            run_setup_hooks(settings, progress)
        return [svc.state() for svc in all_services]


def down(settings: Settings, progress: Progress = _noop, *, purge: bool = False) -> list[str]:
    """Stop what ``up`` started (never external servers); ``purge`` also deletes their data."""
    stopped: list[str] = []
    with _locked(settings):
        for svc in reversed(services(settings)):
            if svc.our_pid() is not None:
                progress(f"{svc.name}: stopping")
                svc.stop()
                stopped.append(svc.name)
            if purge:
                progress(f"{svc.name}: deleting data")
                svc.purge()
    return stopped


def status(settings: Settings) -> list[ServiceState]:
    """Which services answer, and whether they are ours or external."""
    return [svc.state() for svc in services(settings)]


# --------------------------------------------------------------------------- setup hooks


def run_setup_hooks(settings: Settings, progress: Progress = _noop) -> None:
    """Apply database migrations and create topics."""
    progress("postgres: applying migrations")
    try:
        applied = migrate_database(settings)
    except LeaderboardError:
        raise
    except Exception as exc:
        raise LeaderboardError(f"database migrations failed: {exc}") from exc
    for name in applied or []:
        progress(f"postgres: applied migration {name}")
    progress("kafka: creating topics")
    try:
        create_topics(settings)
    except LeaderboardError:
        raise
    except Exception as exc:
        raise LeaderboardError(f"creating topics failed: {exc}") from exc
