"""Redis with failover for the local stack (``stack up --ha``): primary, replica, three Sentinels.

The two nodes are Debian's ``redis-server`` on ``redis_ha_port`` and the port after it; the
second starts as a replica of the first. The Sentinels are Debian's ``redis-sentinel`` on
``redis_sentinel_port`` and the two ports after it, monitoring the primary under the name
``redis_sentinel_master`` with a quorum of two. Every configuration file is written under
``<stack_dir>/redis-ha/`` on the first start only: Redis and the Sentinels rewrite their own
files when a failover changes the roles, so a later ``up`` starts each process in the role it
last had (a returning old primary is turned into a replica by the Sentinels).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from infra.stack.base import (
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
from streams.settings import SENTINELS

#: Milliseconds without an answer before a Sentinel deems the primary down (then, with a
#: quorum of two, the failover starts). Low for a fast failover on one machine; on a network
#: with pauses a few seconds are safer.
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10_000

NODE_CONF = """\
# Written by `leaderboard stack up --ha` on the first start; Redis rewrites it on a failover.
port {port}
bind 127.0.0.1
daemonize yes
pidfile {pid_file}
logfile {log_file}
dir {data}
save ""
appendonly yes
appendfsync everysec
hash-max-listpack-entries 1024
replica-read-only yes
{replicaof}"""

SENTINEL_CONF = """\
# Written by `leaderboard stack up --ha` on the first start; the Sentinel rewrites it.
port {port}
bind 127.0.0.1
daemonize yes
pidfile {pid_file}
logfile {log_file}
dir {data}
sentinel monitor {master} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {master} {down_after}
sentinel failover-timeout {master} {failover_timeout}
sentinel parallel-syncs {master} 1
"""


def _client(port: int) -> Any:
    return sync_redis(url=f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1, socket_timeout=1)


def _daemon(exe: str, conf: Path) -> subprocess.CompletedProcess[str]:
    """Run a daemonizing Redis binary on ``conf``; returns once it has forked."""
    return subprocess.run(  # noqa: S603
        [exe, str(conf)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )


class _Group(Service):
    """Processes of one kind on consecutive ports, each with a config file written once."""

    marker = "redis-"
    kind = ""

    @property
    def ports(self) -> list[int]:
        raise NotImplementedError

    @property
    def home(self) -> Path:
        return self.stack_dir / "redis-ha"

    def conf(self, port: int) -> Path:
        return self.home / f"{self.kind}-{port}.conf"

    def member_pid_file(self, port: int) -> Path:
        return self.run_dir / f"{self.kind}-{port}.pid"

    def member_log(self, port: int) -> Path:
        return self.logs / f"{self.kind}-{port}.log"

    @property
    def log_path(self) -> Path:
        return self.member_log(self.ports[0])

    def port(self) -> int:
        return self.ports[0]

    def managed(self) -> bool:
        return True

    def pids(self) -> list[int | None]:
        """Our live pid per port (None where that process is not running)."""
        pids = [read_pid(self.member_pid_file(p)) for p in self.ports]
        return [p if p is not None and pid_alive(p, self.marker) else None for p in pids]

    def our_pid(self) -> int | None:
        pids = self.pids()
        return pids[0] if all(pids) else None

    def serving_pid(self) -> int | None:
        return self.our_pid()

    def running(self) -> bool:
        """True when any process of ours runs (``status`` and ``down`` then include it)."""
        return any(self.pids())

    def missing_packages(self) -> list[str]:
        return [] if shutil.which(self.binary) else [self.package]

    binary = "redis-server"
    package = "redis-server"

    def write_conf(self, port: int) -> None:
        raise NotImplementedError

    def start(self, progress: Progress) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        exe = shutil.which(self.binary) or self.binary
        for port, pid in zip(self.ports, self.pids(), strict=True):
            if pid is not None:
                continue
            if port_open("127.0.0.1", port):
                raise ServiceUnavailable(
                    f"{self.name}: port {port} is taken by another program; free it or move "
                    "the stack (LEADERBOARD_STACK_OFFSET, LEADERBOARD_REDIS_HA_PORT, "
                    "LEADERBOARD_REDIS_SENTINEL_PORT)"
                )
            if not self.conf(port).exists():
                self.write_conf(port)
            progress(f"{self.name}: starting {port}")
            done = _daemon(exe, self.conf(port))
            if done.returncode != 0:
                raise ServiceUnavailable(
                    f"{self.name}: {port} failed to start "
                    f"({done.stderr.strip() or done.stdout.strip()}); "
                    f"read {display(self.member_log(port))}"
                )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not all(self.pids()) or not all(port_open("127.0.0.1", p) for p in self.ports):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"{self.name}: not listening on {self.ports} within "
                    f"{REDIS_START_TIMEOUT:.0f}s; read the logs under {display(self.logs)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for port, pid in zip(self.ports, self.pids(), strict=True):
            if pid is not None:
                stop_pid(pid, self.marker)
            self.member_pid_file(port).unlink(missing_ok=True)

    def purge(self) -> None:
        for port in self.ports:
            self.conf(port).unlink(missing_ok=True)
        shutil.rmtree(self.home / self.kind, ignore_errors=True)


class RedisHA(_Group):
    """The two data nodes: the primary (first port at the first start) and its replica."""

    name = "redis-ha"
    kind = "node"
    binary = package = "redis-server"
    marker = "redis-server"

    @property
    def ports(self) -> list[int]:
        first = self.settings.redis_ha_port
        return [first, first + 1]

    def where(self) -> str:
        return ", ".join(f"127.0.0.1:{p}" for p in self.ports)

    def write_conf(self, port: int) -> None:
        data = self.home / self.kind / str(port)
        data.mkdir(parents=True, exist_ok=True)
        primary = self.ports[0]
        self.conf(port).write_text(
            NODE_CONF.format(
                port=port,
                pid_file=self.member_pid_file(port),
                log_file=self.member_log(port),
                data=data,
                replicaof="" if port == primary else f"replicaof 127.0.0.1 {primary}\n",
            )
        )

    def roles(self) -> dict[int, str]:
        """Each node's replication role (``master``, ``slave``) or ``down``."""
        found: dict[int, str] = {}
        for port in self.ports:
            client = _client(port)
            try:
                found[port] = str(client.info("replication").get("role", "?"))
            except Exception:
                found[port] = "down"
            finally:
                client.close()
        return found

    def answers(self) -> bool:
        return "down" not in self.roles().values()

    def state(self) -> ServiceState:
        roles = self.roles()
        up = "down" not in roles.values()
        pid = self.our_pid()
        owner = ("ours" if pid else "external") if up else None
        names = {"master": "primary", "slave": "replica"}
        detail = ", ".join(f"{p} {names.get(r, r)}" for p, r in roles.items())
        return ServiceState(self.name, up, owner, self.where(), self.log_path, pid, detail)


class Sentinels(_Group):
    """Three Sentinels watching the HA nodes' primary (quorum two)."""

    name = "redis-sentinel"
    kind = "sentinel"
    binary = package = "redis-sentinel"
    marker = "redis-sentinel"

    @property
    def ports(self) -> list[int]:
        first = self.settings.redis_sentinel_port
        return list(range(first, first + SENTINELS))

    def where(self) -> str:
        return ", ".join(f"127.0.0.1:{p}" for p in self.ports)

    def write_conf(self, port: int) -> None:
        data = self.home / self.kind / str(port)
        data.mkdir(parents=True, exist_ok=True)
        self.conf(port).write_text(
            SENTINEL_CONF.format(
                port=port,
                pid_file=self.member_pid_file(port),
                log_file=self.member_log(port),
                data=data,
                master=self.settings.redis_sentinel_master,
                primary=self.settings.redis_ha_port,
                down_after=DOWN_AFTER_MS,
                failover_timeout=FAILOVER_TIMEOUT_MS,
            )
        )

    def views(self) -> dict[int, dict[str, Any] | None]:
        """What each Sentinel says of the master (``SENTINEL MASTER``), None when it is down."""
        found: dict[int, dict[str, Any] | None] = {}
        for port in self.ports:
            client = _client(port)
            try:
                found[port] = client.sentinel_master(self.settings.redis_sentinel_master)
            except Exception:
                found[port] = None
            finally:
                client.close()
        return found

    def answers(self) -> bool:
        return all(v is not None for v in self.views().values())

    def ready(self) -> bool:
        """True when every Sentinel sees the same healthy primary and its peers, and a replica
        is in sync with it: a failover can then happen (the tests wait for it before a kill)."""
        views = list(self.views().values())
        if any(v is None for v in views):
            return False
        primaries = {(v["ip"], int(v["port"])) for v in views if v is not None}
        return (
            len(primaries) == 1
            and all(
                v is not None
                and int(v.get("num-other-sentinels", 0)) >= SENTINELS - 1
                and "s_down" not in str(v.get("flags", ""))
                for v in views
            )
            and self._replica_in_sync()
        )

    def _replica_in_sync(self) -> bool:
        """True when a Sentinel knows a replica that is up and linked to the primary."""
        client = _client(self.ports[0])
        try:
            replicas = client.sentinel_slaves(self.settings.redis_sentinel_master)
        except Exception:
            return False
        finally:
            client.close()
        return any(
            str(r.get("master-link-status")) == "ok"
            and not ({"s_down", "o_down", "disconnected"} & set(str(r.get("flags", "")).split(",")))
            for r in replicas
        )

    def primary(self) -> tuple[str, int] | None:
        """The primary's address as the first answering Sentinel names it."""
        for view in self.views().values():
            if view is not None:
                return str(view["ip"]), int(view["port"])
        return None

    def state(self) -> ServiceState:
        up = self.answers()
        pid = self.our_pid()
        owner = ("ours" if pid else "external") if up else None
        primary = self.primary()
        detail = f"primary {primary[0]}:{primary[1]}" if primary else "no primary known"
        if up and not self.ready():
            detail += ", failover not possible yet (replica or peers not seen)"
        return ServiceState(self.name, up, owner, self.where(), self.log_path, pid, detail)


__all__ = ["DOWN_AFTER_MS", "RedisHA", "Sentinels"]
