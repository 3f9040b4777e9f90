"""One factory for the Redis client: a single node or a Redis Cluster, chosen by settings."""

from __future__ import annotations

from typing import TypeAlias

import redis.asyncio as aioredis

from streams.settings import Settings

#: Either client: the store only issues commands whose keys share one hash tag.
RedisClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster

CLUSTER_SCHEME = "redis+cluster://"


def cluster_url(settings: Settings) -> str | None:
    """The seed URL of the cluster when one is configured, else None."""
    if settings.redis_url.startswith(CLUSTER_SCHEME):
        return "redis://" + settings.redis_url[len(CLUSTER_SCHEME) :]
    if settings.redis_cluster:
        return settings.redis_cluster_url
    return None


def make_client(settings: Settings) -> RedisClient:
    """A Redis Cluster client when ``redis_cluster`` is set (or the URL is ``redis+cluster://``).

    Otherwise the plain single-node client on ``redis_url``, exactly as before.
    """
    url = cluster_url(settings)
    if url is None:
        return aioredis.Redis.from_url(settings.redis_url)
    return aioredis.RedisCluster.from_url(url)


def is_cluster(client: RedisClient) -> bool:
    """True for the cluster client."""
    return isinstance(client, aioredis.RedisCluster)
