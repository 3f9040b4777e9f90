"""The Redis client type the stores accept: one node or a Redis Cluster (built in bootstrap)."""

from __future__ import annotations

from typing import TypeAlias

import redis.asyncio as aioredis

#: Either client: the store only issues commands whose keys share one hash tag.
RedisClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster


def is_cluster(client: RedisClient) -> bool:
    """True for the cluster client."""
    return isinstance(client, aioredis.RedisCluster)
