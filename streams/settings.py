"""One settings object, read from ``LEADERBOARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Repository root (the folder holding pyproject.toml) when run from a checkout.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the service; each field maps to ``LEADERBOARD_<FIELD>``.

    Defaults point at the local stack started by ``leaderboard stack up``, which uses
    non-standard ports so that it never collides with servers already on the machine.
    """

    model_config = SettingsConfigDict(env_prefix="LEADERBOARD_", extra="ignore")

    # --- services -------------------------------------------------------------------
    # Unset, the four client addresses follow the local stack's ports (see _follow_ports), so
    # moving a port moves every client too.
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    redis_url: str = Field("redis://127.0.0.1:16379/0", description="Redis URL")
    redis_cluster: bool = Field(
        False, description="connect to redis_cluster_url with the Redis Cluster client"
    )
    redis_cluster_url: str = Field(
        "redis://127.0.0.1:17001/0", description="any node of the Redis Cluster (seed)"
    )
    redis_sentinels: str = Field(
        "",
        description="host:port,... of Redis Sentinels: every Redis client then asks them for the"
        " primary of redis_sentinel_master (empty = no Sentinel; see redis_ha)",
    )
    redis_sentinel_master: str = Field(
        "leaderboard", description="the master name the Sentinels monitor"
    )
    redis_ha: bool = Field(
        False,
        description="connect through the local stack's Sentinels (`stack up --ha`); sets"
        " redis_sentinels from redis_sentinel_port unless it is given",
    )
    postgres_dsn: str = Field(
        "postgresql://leaderboard:leaderboard@127.0.0.1:15432/leaderboard",
        description="PostgreSQL connection string",
    )
    schema_registry_url: str | None = Field(
        None, description="Confluent Schema Registry URL; unset = Avro single-object encoding"
    )

    # --- local stack ----------------------------------------------------------------
    stack_offset: int = Field(
        0,
        ge=0,
        le=30_000,
        description="added to every default port: a second stack beside the first in one variable",
    )
    stack_dir: Path = Field(PROJECT_ROOT / ".stack", description="data and logs of the local stack")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    redis_port: int = 16379
    redis_cluster_port: int = Field(17001, description="first port of the local cluster")
    redis_cluster_nodes: int = Field(3, ge=3, description="masters of the local cluster")
    postgres_port: int = 15432
    redis_ha_port: int = Field(
        16381, description="first of the two Redis nodes of `stack up --ha` (primary, replica)"
    )
    redis_sentinel_port: int = Field(
        16391, description="first of the three Sentinels of `stack up --ha`"
    )
    kafka_heap: str = "512m"
    prometheus_port: int = Field(
        19090, description="the local Prometheus of `stack up --monitoring` (not Debian's :9090)"
    )
    schema_registry_port: int = Field(
        18081,
        description="the local Schema Registry of `stack up --schema-registry` (Apicurio; its"
        " Confluent API is http://127.0.0.1:PORT/apis/ccompat/v7)",
    )

    # --- topics ---------------------------------------------------------------------
    topic_prefix: str = Field("", description="prefix added to every topic name")
    partitions: int = Field(6, ge=1, description="partitions of the score topic")
    scores_topic: str = "scores"
    config_topic: str = "leaderboards"
    rank_changes_topic: str = "rank-changes"
    notifications_topic: str = "notifications"
    periods_topic: str = "period-closed"
    participants_topic: str = "participants"
    dlq_suffix: str = ".dlq"

    # --- worker ---------------------------------------------------------------------
    app_id: str = Field("leaderboard", description="Faust app id (the consumer group)")
    batch_size: int = Field(500, ge=1, description="records per applied batch")
    batch_within: float = Field(0.05, gt=0, description="seconds to wait to fill a batch")
    overtaken_limit: int = Field(
        10, ge=0, description="max overtaken notices per change (the rest are counted)"
    )
    period_grace_ms: int = Field(60_000, ge=0, description="late-event grace after a period ends")
    dedup_window_ms: int = Field(
        7 * 24 * 3_600_000, ge=1, description="event ids are remembered this long (event time)"
    )
    dedup_max_ids: int = Field(1_000_000, ge=1, description="at most this many ids per board")
    clock_mark_s: float = Field(
        5.0,
        ge=0,
        description="a projector writes a clock mark to each score partition it owns this often"
        " (0 = never): periods and windows then close on time without score traffic",
    )
    closed_period_retention_s: int = Field(
        7 * 24 * 3600, ge=0, description="Redis keeps a closed period this long"
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6,
        description="consumer session time-out: how soon a dead worker's partitions move",
    )
    worker_web_port: int = Field(16066, description="Faust worker web port (0 = disabled)")
    worker_metrics_port: int = Field(
        0, ge=0, description="a worker serves Prometheus /metrics here (0 = not served)"
    )
    worker_metrics_host: str = Field(
        "127.0.0.1",
        description="address of a worker's /metrics server (0.0.0.0 in a container: probes)",
    )

    # --- gateway --------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    rate_per_client: float = Field(
        0.0,
        ge=0,
        description="HTTP requests/s per client address at the gateway (0 = no limit)",
    )
    rate_per_client_burst: int = Field(
        0, ge=0, description="burst per client address (0 = twice the rate, at least 1)"
    )

    # --- logging --------------------------------------------------------------------
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line"
    )
    api_keys: str = Field("", description="comma-separated API keys for writes")
    admin_keys: str = Field("", description="comma-separated admin API keys; empty = api_keys")
    gateway_open: bool = Field(
        False, description="with no key configured, accept writes and admin calls from anyone"
    )
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; none")

    # --- player tokens (JWT) ----------------------------------------------------------
    jwt_secret: SecretStr = Field(
        SecretStr(""), description="HS256 secret of player tokens (at least 32 bytes); empty = none"
    )
    jwt_public_key: Path | None = Field(
        None, description="PEM file of the RS256/ES256 public key that signs player tokens"
    )
    jwt_jwks_file: Path | None = Field(
        None, description="local JWKS JSON file of player-token keys (chosen by the token's kid)"
    )
    jwt_audience: str = Field("", description="required `aud` of player tokens; empty = unchecked")
    jwt_issuer: str = Field("", description="required `iss` of player tokens; empty = unchecked")
    jwt_leeway_s: float = Field(
        30.0, ge=0, le=600, description="clock skew allowed on a player token's exp/nbf/iat"
    )

    # --- traces (OpenTelemetry) ---------------------------------------------------------
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP collector base URL for traces (else OTEL_EXPORTER_OTLP_ENDPOINT);"
        " empty = none",
    )
    trace_file: Path | None = Field(
        None, description="with no OTLP endpoint: append spans to this JSON-lines file"
    )

    @model_validator(mode="after")
    def _follow_ports(self) -> Settings:
        """Client addresses not set explicitly point at the local stack's (possibly moved)
        ports: ``LEADERBOARD_KAFKA_PORT=29092`` alone moves the broker and every client, and
        ``LEADERBOARD_STACK_OFFSET=N`` moves every port not set explicitly by N."""
        given = set(self.model_fields_set)
        if self.stack_offset:
            for name in OFFSET_PORTS:
                value = getattr(self, name)
                if name not in given and value:  # 0 = "not served" stays 0
                    setattr(self, name, value + self.stack_offset)
        # the cluster bus of each node listens 10000 above its port (Redis' rule)
        highest = {name: getattr(self, name) for name in OFFSET_PORTS}
        highest["redis_cluster_port"] += self.redis_cluster_nodes - 1 + 10_000
        highest["redis_ha_port"] += 1  # the replica
        highest["redis_sentinel_port"] += SENTINELS - 1
        for name, port in highest.items():
            if port > 65_535:
                raise ValueError(
                    f"{name} {getattr(self, name)} needs port {port}, above 65535: lower "
                    f"LEADERBOARD_STACK_OFFSET ({self.stack_offset}) or LEADERBOARD_{name.upper()}"
                )
        derived = {
            "kafka_bootstrap": f"127.0.0.1:{self.kafka_port}",
            "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
            "redis_cluster_url": f"redis://127.0.0.1:{self.redis_cluster_port}/0",
            "postgres_dsn": (
                f"postgresql://leaderboard:leaderboard@127.0.0.1:{self.postgres_port}/leaderboard"
            ),
        }
        if self.redis_ha and "redis_sentinels" not in given:
            derived["redis_sentinels"] = ",".join(
                f"127.0.0.1:{self.redis_sentinel_port + i}" for i in range(SENTINELS)
            )
        for name, value in derived.items():
            if name not in given:
                setattr(self, name, value)
        sentinel_addresses(self.redis_sentinels)  # a malformed list fails here, in one line
        # deriving is not setting: a later model_copy still sees these as defaults
        self.__pydantic_fields_set__ = given
        return self

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def dlq(self, name: str) -> str:
        """Dead-letter topic that sits beside input topic ``name``."""
        return f"{self.topic_prefix}{name}{self.dlq_suffix}"


#: The ports ``stack_offset`` moves (their defaults; an explicitly set port is kept as given).
OFFSET_PORTS = (
    "kafka_port",
    "kafka_controller_port",
    "redis_port",
    "redis_cluster_port",
    "postgres_port",
    "redis_ha_port",
    "redis_sentinel_port",
    "gateway_port",
    "worker_web_port",
    "worker_metrics_port",
    "prometheus_port",
    "schema_registry_port",
)


#: Sentinels of the local stack (`stack up --ha`): three, so that two of them make a quorum.
SENTINELS = 3


def sentinel_addresses(text: str) -> list[tuple[str, int]]:
    """``host:port,...`` as (host, port) pairs; [] for an empty text; ValueError when malformed."""
    found: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65_535:
            raise ValueError(
                f"LEADERBOARD_REDIS_SENTINELS: {item!r} is not host:port (expected e.g. "
                "127.0.0.1:26379,127.0.0.1:26380)"
            )
        found.append((host.strip("[]"), int(port)))
    return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
