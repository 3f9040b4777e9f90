"""The stack as a whole: which services it has, and ``up``, ``down`` and ``status`` over them.

``up`` and ``down`` hold a file lock under the stack dir, so concurrent calls (a test session
and ``make up``) run one after the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from infra.stack.base import (
    KAFKA_START_TIMEOUT,
    POSTGRES_START_TIMEOUT,
    REDIS_START_TIMEOUT,
    Progress,
    Service,
    ServiceState,
    display,
    noop,
)
from infra.stack.hooks import run_setup_hooks
from infra.stack.kafka import Kafka
from infra.stack.packages import apt_install
from infra.stack.postgres import Postgres
from infra.stack.prometheus import Prometheus
from infra.stack.redis import Redis, RedisCluster
from infra.stack.registry import SCHEMA_REGISTRY_START_TIMEOUT, SchemaRegistry
from infra.stack.sentinel import RedisHA, Sentinels
from streams.errors import ServiceUnavailable
from streams.settings import Settings


def services(
    settings: Settings,
    *,
    redis_cluster: bool = False,
    monitoring: bool = False,
    ha: bool = False,
    schema_registry: bool = False,
) -> list[Service]:
    """The services in start order (Kafka first: it takes longest, the others start meanwhile).

    The Redis Cluster joins when asked for (``redis_cluster``), when the settings use it, or
    when our nodes already run (so that ``status`` shows it and ``down`` stops it); Prometheus
    likewise when asked for (``monitoring``) or when ours runs, and the Redis primary, replica
    and Sentinels when asked for (``ha``), when ``redis_ha`` is set or when any of ours runs
    (the Sentinels after the nodes: ``down`` stops them first, so none fails over meanwhile);
    the Schema Registry when asked for (``schema_registry``) or when ours runs.
    """
    found: list[Service] = [Kafka(settings), Redis(settings), Postgres(settings)]
    cluster = RedisCluster(settings)
    if redis_cluster or settings.redis_cluster or cluster.running():
        found.append(cluster)
    nodes, sentinels = RedisHA(settings), Sentinels(settings)
    if ha or settings.redis_ha or nodes.running() or sentinels.running():
        found += [nodes, sentinels]
    prometheus = Prometheus(settings)
    if monitoring or prometheus.our_pid() is not None:
        found.append(prometheus)
    registry = SchemaRegistry(settings)
    if schema_registry or registry.our_pid() is not None:
        found.append(registry)
    return found


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Serialize concurrent ``up``/``down`` calls (e.g. a test session and ``make up``)."""
    run = settings.stack_dir.resolve() / "run"
    run.mkdir(parents=True, exist_ok=True)
    with (run / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ExitedWhileStarting(ServiceUnavailable):
    """The service's process died before it answered (started once more before giving up)."""


def _last_error(log_path: Path) -> str:
    """The last error line of a service's log, as ``: <line>`` (empty when none)."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(max(0, log_path.stat().st_size - 16384))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if any(w in line.lower() for w in ("error", "fatal", "panic", "exception")):
            return ": " + line.strip()[-300:]
    return ""


def _wait_started(svc: Service, timeout: float, progress: Progress) -> None:
    """Wait until ``svc`` answers; a process that died while starting is started once more
    (a port or lock still held for a moment by a process that just stopped)."""
    try:
        _wait(svc, timeout, progress)
    except ExitedWhileStarting as exc:
        progress(f"{exc}; starting it once more")
        time.sleep(2.0)
        svc.start(progress)
        _wait(svc, timeout, progress)


def _wait(svc: Service, timeout: float, progress: Progress) -> None:
    progress(f"{svc.name}: waiting for it to answer on {svc.where()}")
    deadline = time.monotonic() + timeout
    while True:
        if svc.answers():
            return
        if svc.our_pid() is None and not isinstance(svc, Postgres):
            raise ExitedWhileStarting(
                f"{svc.name}: the process exited while starting{_last_error(svc.log_path)}; "
                f"read {display(svc.log_path)}"
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"{svc.name}: no answer on {svc.where()} within {timeout:.0f}s; "
                f"read {display(svc.log_path)}"
            )
        time.sleep(0.5)


_TIMEOUTS = {
    "kafka": KAFKA_START_TIMEOUT,
    "redis": REDIS_START_TIMEOUT,
    "redis-cluster": REDIS_START_TIMEOUT,
    "prometheus": REDIS_START_TIMEOUT,
    "redis-ha": REDIS_START_TIMEOUT,
    "redis-sentinel": REDIS_START_TIMEOUT,
    "schema-registry": SCHEMA_REGISTRY_START_TIMEOUT,
}


def up(
    settings: Settings,
    progress: Progress = noop,
    *,
    setup: bool = True,
    redis_cluster: bool = False,
    monitoring: bool = False,
    ha: bool = False,
    schema_registry: bool = False,
) -> list[ServiceState]:
    """Bring every service up (reusing healthy ones) and wait until each answers.

    ``redis_cluster`` also starts the local Redis Cluster beside the single node;
    ``monitoring`` starts our Prometheus (installing Debian's package when missing);
    ``ha`` starts a Redis primary, its replica and three Sentinels (``redis-sentinel``);
    ``schema_registry`` starts Apicurio Registry (downloaded from Maven Central on first use).
    """
    with locked(settings):
        all_services = services(
            settings,
            redis_cluster=redis_cluster,
            monitoring=monitoring,
            ha=ha,
            schema_registry=schema_registry,
        )
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
            apt_install(missing, progress, settings.stack_dir.resolve() / "logs")
        for svc in to_start:
            svc.start(progress)
            started.append(svc)
        for svc in started:
            if isinstance(svc, Postgres):
                svc.after_start(progress)
            _wait_started(svc, _TIMEOUTS.get(svc.name, POSTGRES_START_TIMEOUT), progress)
        if setup:
            run_setup_hooks(settings, progress)
        return [svc.state() for svc in all_services]


def down(settings: Settings, progress: Progress = noop, *, purge: bool = False) -> list[str]:
    """Stop what ``up`` started (never external servers); ``purge`` also deletes their data."""
    stopped: list[str] = []
    with locked(settings):
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
