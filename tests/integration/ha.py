"""Helpers for tests against the local Redis with failover (``stack up --ha``).

``ha_pipeline`` is a pipeline (tests/integration/conftest.py) whose workers, clients and checks
reach Redis through the three Sentinels; ``kill_primary`` SIGKILLs whichever node is the
primary now, ``restore`` brings the killed node back (the Sentinels make it a replica) and waits
until a failover is possible again, so that the next test finds the same group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from infra import stack as local_stack
from infra.stack.base import read_pid
from infra.stack.sentinel import RedisHA, Sentinels
from streams.settings import Settings
from tests.integration.conftest import Pipeline, wait_until

#: Bound on a failover here: 2 s to deem the primary down, then election and promotion.
FAILOVER_TIMEOUT_S = 60.0


def ha_settings(base: Settings) -> Settings:
    """Start the HA group if needed, wait until it can fail over, and return settings using it."""
    local_stack.up(base, setup=False, ha=True)
    sentinels = Sentinels(base)
    wait_until(sentinels.ready, timeout=FAILOVER_TIMEOUT_S, every=0.5)
    addresses = ",".join(f"127.0.0.1:{port}" for port in sentinels.ports)
    return base.model_copy(update={"redis_ha": True, "redis_sentinels": addresses})


def primary_port(settings: Settings) -> int:
    """Port of the node the Sentinels name primary now."""
    found = Sentinels(settings).primary()
    assert found is not None, "no Sentinel answers"
    return found[1]


def kill_primary(settings: Settings) -> tuple[int, float]:
    """SIGKILL the primary; returns its port and the monotonic time of the kill."""
    port = primary_port(settings)
    pid = read_pid(RedisHA(settings).member_pid_file(port))
    assert pid is not None, f"no pid file of the node on {port}"
    os.kill(pid, signal.SIGKILL)
    return port, time.monotonic()


def wait_new_primary(settings: Settings, old: int, since: float) -> float:
    """Seconds from ``since`` until the Sentinels name a primary other than ``old``."""
    wait_until(lambda: primary_port(settings) != old, timeout=FAILOVER_TIMEOUT_S, every=0.1)
    return round(time.monotonic() - since, 2)


@contextlib.contextmanager
def replication_cut(settings: Settings) -> Iterator[None]:
    """Keep the replica from receiving the primary's writes for the body of the ``with``.

    The replica is given a password the primary does not know of, so its reconnections fail,
    and the primary drops the current link; afterwards the setting is cleared again on the
    replica (whichever role it has then), in memory and in its configuration file (which the
    Sentinels had it rewrite when they promoted it).
    """
    primary = primary_port(settings)
    replica = next(p for p in RedisHA(settings).ports if p != primary)
    with redis.Redis(port=replica, socket_timeout=2) as r, redis.Redis(port=primary) as m:
        r.config_set("masterauth", "not-the-primary-password")
        m.client_kill_filter(_type="replica")
        try:
            yield
        finally:
            r.config_set("masterauth", "")
            r.config_rewrite()


def restore(settings: Settings) -> None:
    """Start the killed node again and wait until the group can fail over once more."""
    local_stack.up(settings, setup=False, ha=True)
    wait_until(Sentinels(settings).ready, timeout=FAILOVER_TIMEOUT_S, every=0.5)


@contextlib.contextmanager
def ha_pipeline_of(stack: Settings) -> Iterator[Pipeline]:
    """An isolated pipeline whose every Redis client goes through the Sentinels; afterwards
    its workers stop and the HA group is whole again."""
    settings = ha_settings(stack)
    p = Pipeline(settings, f"t{os.urandom(4).hex()}")
    p.env["LEADERBOARD_REDIS_HA"] = "1"
    p.env["LEADERBOARD_REDIS_SENTINELS"] = settings.redis_sentinels
    try:
        yield p
    finally:
        p.stop_all()
        restore(settings)


@pytest.fixture
def ha_pipeline(stack: Settings) -> Iterator[Pipeline]:
    """``ha_pipeline_of`` as a fixture."""
    with ha_pipeline_of(stack) as p:
        yield p


__all__ = [
    "ha_pipeline",
    "ha_pipeline_of",
    "ha_settings",
    "kill_primary",
    "replication_cut",
    "restore",
    "wait_new_primary",
]
