"""The Redis client type the stores accept, and the clients that reach Redis through Sentinel.

``processors.bootstrap`` builds every client; when ``LEADERBOARD_REDIS_SENTINELS`` is set it
asks the functions below, which ask the Sentinels for the current primary of
``LEADERBOARD_REDIS_SENTINEL_MASTER`` on each new connection (redis-py's Sentinel support), so
a client follows a failover by itself.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from streams.settings import Settings, sentinel_addresses

#: Either client: the store only issues commands whose keys share one hash tag.
RedisClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster

#: Seconds a Sentinel may take to answer "who is the primary?" before the next one is asked.
SENTINEL_TIMEOUT_S = 1.0


#: Arguments at which a command is packed by hiredis (below, redis-py's packer is as fast).
FAST_PACK_ARGS = 64

#: Argument types hiredis packs exactly as redis-py's encoder does (no bool, float or None).
_PLAIN = frozenset((bytes, str, int))


class FastPackConnection(aioredis.Connection):
    """redis-py's asyncio connection with big commands packed by hiredis (C).

    The blocking client already packs with hiredis; the asyncio one packs in Python, about
    7 µs per argument on the dev machine, and an apply call of 2,000 coalesced submissions has
    26,000 arguments (a third of the projector's time, measured with cProfile). Commands with
    arguments of other types (bool, float, None) go to redis-py's packer, so its checks and
    encodings are unchanged.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        """The RESP bytes of one command (see ``redis.asyncio.Connection.pack_command``)."""
        # the types checked in C (a generator over 26,000 arguments cost as much as packing)
        if len(args) < FAST_PACK_ARGS or not _PLAIN.issuperset(map(type, args)):
            return super().pack_command(*args)
        head = args[0]
        # like redis-py: a command name with spaces ("CONFIG GET") is several arguments
        name = head.encode().split() if isinstance(head, str) else head.split()
        return [hiredis.pack_command((*name, *args[1:]))]


def is_cluster(client: RedisClient) -> bool:
    """True for the cluster client."""
    return isinstance(client, aioredis.RedisCluster)


def uses_sentinel(settings: Settings) -> bool:
    """True when the clients reach Redis through Sentinels."""
    return bool(settings.redis_sentinels)


def _db(settings: Settings) -> int:
    """The database number of ``redis_url`` (the Sentinels name the host, not the database)."""
    path = settings.redis_url.rsplit("/", 1)[-1]
    return int(path) if path.isdigit() else 0


def sentinel_client(settings: Settings, *, follow_quietly: bool = True) -> aioredis.Redis:
    """An asyncio client on the current primary, found through the Sentinels.

    ``follow_quietly=False`` makes sure, whatever redis-py's default retries are, that a
    command cut by a failover raises instead of being sent again to the new primary, so that
    the caller (the projector) learns that the primary changed and can check what the new one
    holds first.
    """
    sentinel = aiosentinel.Sentinel(
        sentinel_addresses(settings.redis_sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S},
    )
    options: dict[str, Any] = {"db": _db(settings)}
    if not follow_quietly:
        options["retry"] = AsyncRetry(NoBackoff(), 0)
    client: aioredis.Redis = sentinel.master_for(settings.redis_sentinel_master, **options)
    return client


def sync_sentinel_client(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client on the current primary, found through the Sentinels."""
    sentinel = redis.sentinel.Sentinel(
        sentinel_addresses(settings.redis_sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S},
    )
    client: redis.Redis = sentinel.master_for(
        settings.redis_sentinel_master, db=_db(settings), **options
    )
    return client


def primary_address(client: Any) -> tuple[str, int] | None:
    """The primary a Sentinel-managed client last connected to (None for other clients)."""
    pool = getattr(client, "connection_pool", None)
    address = getattr(pool, "master_address", None)
    return (str(address[0]), int(address[1])) if address else None
