"""The local stack: Kafka (KRaft, from Maven Central), Redis and PostgreSQL, started without Docker.

``up`` is idempotent: a service that already answers on its configured address is reused (ours
if its pid file names a live process of ours, external otherwise); a missing one is installed if
needed, started with its data under ``Settings.stack_dir`` and waited for until it really answers.
``down`` stops only what ``up`` started.

Use it as ``from infra import stack as local_stack; local_stack.up(settings, progress)``. The
modules: ``base`` (the ``Service`` base class, processes, pid and port files), ``kafka``,
``redis`` (single node and cluster), ``sentinel`` (``up --ha``: primary, replica and three
Sentinels), ``postgres``, ``prometheus`` (``up --monitoring``),
``registry`` (``up --schema-registry``: Apicurio Registry), ``packages`` (apt-get installs),
``lifecycle`` (``up``, ``down``, ``status``) and ``hooks`` (migrations and topics).
"""

from __future__ import annotations

from infra.stack.base import (
    KAFKA_START_TIMEOUT,
    LOCAL_HOSTS,
    POSTGRES_START_TIMEOUT,
    REDIS_START_TIMEOUT,
    STOP_TIMEOUT,
    Progress,
    Service,
    ServiceState,
)
from infra.stack.hooks import run_setup_hooks
from infra.stack.kafka import KAFKA_INFRA, Kafka
from infra.stack.lifecycle import down, locked, services, status, up
from infra.stack.postgres import Postgres
from infra.stack.prometheus import Prometheus
from infra.stack.redis import Redis, RedisCluster
from infra.stack.registry import SchemaRegistry
from infra.stack.sentinel import RedisHA, Sentinels
from streams.errors import LeaderboardError, ServiceUnavailable

__all__ = [
    "KAFKA_INFRA",
    "KAFKA_START_TIMEOUT",
    "LOCAL_HOSTS",
    "POSTGRES_START_TIMEOUT",
    "REDIS_START_TIMEOUT",
    "STOP_TIMEOUT",
    "Kafka",
    "LeaderboardError",
    "Postgres",
    "Progress",
    "Prometheus",
    "Redis",
    "RedisCluster",
    "RedisHA",
    "SchemaRegistry",
    "Sentinels",
    "Service",
    "ServiceState",
    "ServiceUnavailable",
    "down",
    "locked",
    "run_setup_hooks",
    "services",
    "status",
    "up",
]
