"""Topic provisioning with the Kafka AdminClient: create what is missing, list what exists."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from processors.bootstrap import kafka_admin
from streams.errors import LeaderboardError, ServiceUnavailable
from streams.settings import Settings
from streams.topics import TopicSpec, all_topics

__all__ = ["TopicInfo", "create_topics", "list_topics", "require_topics"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as the broker reports it."""

    name: str
    partitions: int
    retention_ms: int | None
    cleanup_policy: str
    expected: bool

    @property
    def retention(self) -> str:
        """Human-readable retention: compacted, infinite, hours or days."""
        if "compact" in self.cleanup_policy:
            return "compacted"
        if self.retention_ms is None:
            return "?"
        if self.retention_ms < 0:
            return "infinite"
        hours = self.retention_ms / 3_600_000
        return f"{hours / 24:g} d" if hours >= 48 else f"{hours:g} h"


def _admin(settings: Settings) -> AdminClient:
    return kafka_admin(settings)


def _unavailable(settings: Settings, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka does not answer at {settings.kafka_bootstrap} ({exc}); "
        "start it with `leaderboard stack up`"
    )


def create_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create every missing topic of ``all_topics``; returns the names created (idempotent)."""
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise _unavailable(settings, exc) from exc
    specs = all_topics(settings)
    _reconcile(admin, [s for s in specs if s.name in existing and s.config], timeout)
    wanted = [
        NewTopic(
            spec.name, num_partitions=spec.partitions, replication_factor=1, config=spec.config
        )
        for spec in specs
        if spec.name not in existing
    ]
    if not wanted:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise LeaderboardError(f"cannot create topic {name}: {exc}") from exc
        logger.info("created topic %s", name)
        created.append(name)
    return created


def _reconcile(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> None:
    """Set the configs the project needs on topics that already exist (idempotent)."""
    if not specs:
        return
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            spec.name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in spec.config.items()
            ],
        )
        for spec in specs
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=timeout)
    for resource, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            logger.warning("cannot update the config of topic %s: %s", resource.name, exc)


def list_topics(settings: Settings, *, timeout: float = 30.0) -> list[TopicInfo]:
    """The project's topics (and any other topic with its prefix) as the broker has them."""
    admin = _admin(settings)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _unavailable(settings, exc) from exc
    expected = {spec.name for spec in all_topics(settings)}
    names = sorted(
        name
        for name in meta.topics
        if name in expected or (settings.topic_prefix and name.startswith(settings.topic_prefix))
    )
    if not names:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            entries = future.result(timeout)
        except KafkaException as exc:
            logger.warning("cannot describe %s: %s", resource.name, exc)
            entries = {}
        configs[resource.name] = {k: str(v.value) for k, v in entries.items()}
    out = []
    for name in names:
        cfg = configs.get(name, {})
        retention = cfg.get("retention.ms")
        out.append(
            TopicInfo(
                name=name,
                partitions=len(meta.topics[name].partitions),
                retention_ms=int(retention) if retention not in (None, "None") else None,
                cleanup_policy=cfg.get("cleanup.policy", "?"),
                expected=name in expected,
            )
        )
    return out


def require_topics(settings: Settings, names: list[str], *, timeout: float = 10.0) -> None:
    """Fail fast with one clear line if Kafka is down or a topic was never created."""
    admin = _admin(settings)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise _unavailable(settings, exc) from exc
    missing = [name for name in names if name not in existing]
    if missing:
        raise LeaderboardError(
            f"topic(s) {', '.join(missing)} do not exist: run `leaderboard topics create`"
        )
