"""Fixtures that run a test once against the single Redis node and once against the cluster.

Import them into a test module (``from tests.integration.conftest_cluster import ...``);
the cluster is started by ``leaderboard stack up --redis-cluster`` logic when it is not up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from processors.bootstrap import RedisClient, make_client
from streams.settings import Settings

BACKENDS = ["single", "cluster"]


@pytest.fixture(scope="session")
def cluster_settings(stack: Settings) -> Settings:
    """Settings whose Redis is the local three-master cluster (started if needed)."""
    from infra import stack as local_stack

    local_stack.up(stack, setup=False, redis_cluster=True)
    return stack.model_copy(update={"redis_cluster": True})


@pytest.fixture(params=BACKENDS)
def redis_settings(request: pytest.FixtureRequest, stack: Settings) -> Settings:
    """The stack's settings for one Redis backend: ``single`` node or ``cluster``."""
    if request.param == "cluster":
        settings: Settings = request.getfixturevalue("cluster_settings")
        return settings
    return stack


async def scrub(client: RedisClient, pattern: str) -> None:
    """Delete every key matching ``pattern`` (on every node of a cluster)."""
    async for key in client.scan_iter(match=pattern, count=1000):
        await client.delete(key)


@pytest.fixture
async def redis_backend(redis_settings: Settings) -> AsyncIterator[RedisClient]:
    """An async client of the parametrized backend, closed after the test."""
    client = make_client(redis_settings)
    yield client
    await client.aclose()
