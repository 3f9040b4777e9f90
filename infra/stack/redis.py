"""Redis for the local stack, from Debian's ``redis-server``: a single node and a cluster.

The single node keeps an append-only file under the stack dir; the cluster is
``redis_cluster_nodes`` masters on consecutive ports, joined once with ``redis-cli``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.stack.base import (
    LOCAL_HOSTS,
    REDIS_START_TIMEOUT,
    Progress,
    Service,
    ServiceState,
    display,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
)
from processors.bootstrap import sync_redis
from streams.errors import ServiceUnavailable

#: Hash fields Redis keeps in one listpack (the default is 128): the participant index's
#: buckets stay compact up to 4,096 x 1,024 participants per period.
HASH_MAX_LISTPACK_ENTRIES = 1024


def _redis_server(
    port: int, data: Path, pid_file: Path, log_file: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``redis-server`` daemonized on ``port``: append-only file in ``data``, no snapshots.

    ``extra`` adds options (cluster mode); the server forks, so this returns once it is launched.
    """
    return subprocess.run(  # noqa: S603
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            *extra,
            "--daemonize",
            "yes",
            "--dir",
            str(data),
            "--pidfile",
            str(pid_file),
            "--logfile",
            str(log_file),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            # a board's participant index is 4,096 bucket hashes (projections/keys.py): each
            # stays one compact listpack up to this many participants
            "--hash-max-listpack-entries",
            str(HASH_MAX_LISTPACK_ENTRIES),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )


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
        client = sync_redis(url=self.settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
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
        if port_open("127.0.0.1", self.settings.redis_port):
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
        done = _redis_server(self.settings.redis_port, data, self.pid_file, self.log_path)
        if done.returncode != 0:
            raise ServiceUnavailable(
                f"redis: failed to start ({done.stderr.strip() or done.stdout.strip()}); "
                f"read {display(self.log_path)}"
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
        pids = [read_pid(self.node_pid_file(p)) for p in self.ports]
        return [p if p is not None and pid_alive(p, self.marker) else None for p in pids]

    def our_pid(self) -> int | None:
        pids = self._node_pids()
        return pids[0] if all(pids) else None

    def serving_pid(self) -> int | None:
        return self.our_pid()

    def _info(self) -> dict[str, Any] | None:
        parts = urlsplit(self.settings.redis_cluster_url)
        host = parts.hostname or "127.0.0.1"
        netloc = f"[{host}]" if ":" in host else host  # an IPv6 address needs its brackets
        client = sync_redis(
            url=f"redis://{netloc}:{parts.port or 6379}",
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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for port, pid in zip(self.ports, self._node_pids(), strict=True):
            if pid is None:
                self._start_node(port, progress)
        self._await_nodes()
        info = self._info() or {}
        if int(info.get("cluster_slots_assigned", 0)) == 0:
            self._create(progress)

    def _start_node(self, port: int, progress: Progress) -> None:
        if port_open("127.0.0.1", port):
            raise ServiceUnavailable(
                f"redis-cluster: port {port} is taken by another program; free it or set "
                "LEADERBOARD_REDIS_CLUSTER_PORT and LEADERBOARD_REDIS_CLUSTER_URL"
            )
        data = self.node_dir(port)
        data.mkdir(parents=True, exist_ok=True)
        progress(f"redis-cluster: starting node {port}")
        done = _redis_server(
            port,
            data,
            self.node_pid_file(port),
            self.node_log(port),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        )
        if done.returncode != 0:
            raise ServiceUnavailable(
                f"redis-cluster: node {port} failed to start "
                f"({done.stderr.strip() or done.stdout.strip()}); "
                f"read {display(self.node_log(port))}"
            )

    def _await_nodes(self) -> None:
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not all(port_open("127.0.0.1", p) for p in self.ports):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"redis-cluster: nodes did not listen within {REDIS_START_TIMEOUT:.0f}s; "
                    f"read the logs under {display(self.logs)}"
                )
            time.sleep(0.1)

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
                f"redis-cluster: creating the cluster failed; read {display(self.log_path)} "
                "(`leaderboard stack down --purge` resets a half-made cluster)"
            )

    def stop(self) -> None:
        for port, pid in zip(self.ports, self._node_pids(), strict=True):
            if pid is not None:
                stop_pid(pid, self.marker)
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
