"""The one place where clients are built: Kafka, Redis, PostgreSQL, Faust apps and the codec.

Every other module receives what it needs from here, so a setting (a port, the Redis Cluster
switch, the Schema Registry URL) is read in one place and honoured by every process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import redis
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from projections.redis_client import (
    FastPackConnection,
    RedisClient,
    is_cluster,
    sentinel_client,
    sync_sentinel_client,
    uses_sentinel,
)
from sinks.audit import AuditWriter
from sinks.migrate import migrate
from streams.codec import Codec, SingleObjectCodec
from streams.errors import ServiceUnavailable
from streams.settings import Settings

if TYPE_CHECKING:
    import faust

__all__ = [
    "RedisClient",
    "audit_writer",
    "client_config",
    "cluster_url",
    "faust_app",
    "faust_codec",
    "get_codec",
    "is_cluster",
    "kafka_admin",
    "kafka_consumer",
    "kafka_producer",
    "make_client",
    "migrate_database",
    "pg_connect",
    "pg_connect_async",
    "postgres",
    "sync_redis",
]

CLUSTER_SCHEME = "redis+cluster://"

_rdkafka_logger = logging.getLogger("processors.rdkafka")


class _QuietLog:
    """librdkafka's own log lines at DEBUG: our code reports failures itself, once, clearly."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        _rdkafka_logger.debug(msg, *args)


# --------------------------------------------------------------------------- Kafka


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Base librdkafka config: bootstrap servers, and its log lines routed to Python logging."""
    return {"bootstrap.servers": settings.kafka_bootstrap, "logger": _QuietLog(), **extra}


def kafka_consumer(settings: Settings, **extra: Any) -> Consumer:
    """A confluent-kafka consumer on the configured cluster; ``extra`` adds librdkafka keys."""
    return Consumer(client_config(settings, **extra))


def kafka_producer(config: Mapping[str, Any]) -> Producer:
    """A raw confluent-kafka producer from a full librdkafka config (see LeaderboardProducer)."""
    return Producer(dict(config))


def kafka_admin(settings: Settings, **extra: Any) -> AdminClient:
    """An admin client (topics, offsets, configs) on the configured cluster."""
    return AdminClient(client_config(settings, **extra))


def faust_app(settings: Settings, app_id: str, **options: Any) -> faust.App:
    """A Faust app on the configured broker with the project's common options."""
    import faust  # only worker processes pay for importing Faust

    (settings.stack_dir / "faust").mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "datadir": str(settings.stack_dir / "faust" / "{conf.name}-data"),
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "store": "memory://",
        "web_enabled": False,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
    }
    return faust.App(app_id, **(base | options))


# --------------------------------------------------------------------------- codec

_CODECS: dict[str, Codec] = {}


def get_codec(settings: Settings) -> Codec:
    """The codec the settings ask for, one per process and registry.

    Confluent wire format when a Schema Registry URL is set, Avro single-object otherwise.
    """
    url = settings.schema_registry_url or ""
    codec = _CODECS.get(url)
    if codec is None:
        if url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            from processors.kafka.registry import ConfluentCodec

            codec = ConfluentCodec(SchemaRegistryClient.new_client({"url": url}))
        else:
            codec = SingleObjectCodec()
        _CODECS[url] = codec
    return codec


def faust_codec(codec: Codec) -> Any:
    """A Faust ``Codec`` wrapping ``codec`` so agents receive typed events.

    Register it with ``faust.serializers.codecs.register("leaderboard_avro", faust_codec(c))``
    and use ``value_serializer="leaderboard_avro"`` on topics.
    """
    from faust.serializers.codecs import Codec as FaustCodec

    class _LeaderboardAvro(FaustCodec):
        def _dumps(self, obj: Any) -> bytes:
            if isinstance(obj, bytes | bytearray):
                return bytes(obj)
            return codec.encode(obj)

        def _loads(self, s: bytes) -> Any:
            return codec.decode(s)

    return _LeaderboardAvro()


# --------------------------------------------------------------------------- Redis


def cluster_url(settings: Settings) -> str | None:
    """The seed URL of the cluster when one is configured, else None."""
    if settings.redis_url.startswith(CLUSTER_SCHEME):
        return "redis://" + settings.redis_url[len(CLUSTER_SCHEME) :]
    if settings.redis_cluster:
        return settings.redis_cluster_url
    return None


def make_client(
    settings: Settings, *, follow_quietly: bool = True, wait_for_connection_s: float | None = None
) -> RedisClient:
    """A Redis Cluster client when ``redis_cluster`` is set (or the URL is ``redis+cluster://``).

    With ``redis_sentinels`` a client on the primary the Sentinels name (``follow_quietly``:
    see ``projections.redis_client.sentinel_client``); otherwise the plain single-node client
    on ``redis_url``. ``wait_for_connection_s`` (single node): when all of the pool's
    connections are busy, a call waits up to that long for one instead of failing at once
    with ``MaxConnectionsError`` (the gateway: a burst of readers must queue, not be closed).
    """
    url = cluster_url(settings)
    if url is None and uses_sentinel(settings):
        return sentinel_client(settings, follow_quietly=follow_quietly)
    if url is None and wait_for_connection_s is not None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=100, timeout=wait_for_connection_s
        )
        return aioredis.Redis.from_pool(pool)
    if url is None:
        return aioredis.Redis.from_url(settings.redis_url, connection_class=FastPackConnection)
    return aioredis.RedisCluster.from_url(url)


def redis_at(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client on one explicit node (the stack's health checks, the cluster's nodes)."""
    return aioredis.Redis.from_url(url, **options)


def sync_redis(settings: Settings | None = None, *, url: str | None = None, **options: Any) -> Any:
    """A blocking client (CLI tools, benchmarks, the stack): cluster-aware like ``make_client``."""
    if url is None:
        assert settings is not None, "sync_redis needs settings or a url"
        cluster = cluster_url(settings)
        if cluster is not None:
            return redis.RedisCluster.from_url(cluster, **options)
        if uses_sentinel(settings):
            return sync_sentinel_client(settings, **options)
        url = settings.redis_url
    return redis.Redis.from_url(url, **options)


# --------------------------------------------------------------------------- PostgreSQL


def pg_connect(settings: Settings | str, **options: Any) -> psycopg.Connection[Any]:
    """A blocking PostgreSQL connection on the configured DSN (or an explicit DSN)."""
    dsn = settings if isinstance(settings, str) else settings.postgres_dsn
    return psycopg.connect(dsn, **options)


async def pg_connect_async(
    settings: Settings | str, **options: Any
) -> psycopg.AsyncConnection[Any]:
    """An asyncio PostgreSQL connection on the configured DSN (or an explicit DSN)."""
    dsn = settings if isinstance(settings, str) else settings.postgres_dsn
    return await psycopg.AsyncConnection.connect(dsn, **options)


def _dsn(settings: Settings | str) -> str:
    return settings if isinstance(settings, str) else settings.postgres_dsn


@contextmanager
def postgres(
    settings: Settings | str, *, connect_timeout: int = 10
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection, closed on exit; an unreachable server is one clear error."""
    try:
        conn = psycopg.connect(_dsn(settings), autocommit=True, connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ServiceUnavailable(
            f"PostgreSQL is unreachable ({first}); start it with `leaderboard stack up`"
        ) from exc
    with conn:
        yield conn


def migrate_database(settings: Settings | str) -> list[str]:
    """Apply the pending SQL migrations (infra/migrations) to the configured database."""
    with postgres(settings) as conn:
        return migrate(conn)


def audit_writer(settings: Settings | str, *, connect_timeout: float = 5.0) -> AuditWriter:
    """The audit writer on the configured database; it reconnects through this factory."""
    dsn = _dsn(settings)

    async def connect() -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=max(1, int(connect_timeout))
        )

    return AuditWriter(connect)
