"""Shared fixtures: settings, the running local stack and clients for each of its services."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient

from streams.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings from the environment (LEADERBOARD_*), as the application reads them."""
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """Make sure Kafka, Redis and PostgreSQL answer (starts them if needed; idempotent)."""
    from infra import stack as local_stack

    local_stack.up(settings)
    return settings


@pytest.fixture
def redis_client(stack: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


@pytest.fixture
def pg_conn(stack: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack.postgres_dsn) as conn:
        yield conn


@pytest.fixture
def kafka_admin(stack: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap})


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of names no other test (or earlier run) uses: ``unique_name("scores")``."""

    def make(prefix: str = "test") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make
