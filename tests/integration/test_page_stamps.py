"""The cached pages' period and stamp reads (gateway/cache.py ``PageStamps``) on the real Redis:
one round trip per event-loop turn for every reader of that turn, each answer as fresh as a
read of its own, the period exactly ``current_period``'s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from processors.gateway.cache import PageStamps, page_stamp
from projections.keys import BoardKeys
from projections.profiles import profiles_version_key
from projections.push import current_period
from streams import rules
from streams.events import LeaderboardConfigured, Operator, ResetPeriod, SortOrder
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(stack: Settings) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(stack.redis_url)
    yield r
    await r.aclose()


def _cfg(board: str, reset: ResetPeriod = ResetPeriod.NONE) -> LeaderboardConfigured:
    return LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST, reset)


async def _hget_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


async def test_readers_of_one_turn_share_one_round_trip(
    client: aioredis.Redis, unique_name: Callable[[str], str]
) -> None:
    board, profiles = unique_name("stamps"), unique_name("profiles")
    other = unique_name("stamps")
    await client.hset(BoardKeys(board).state, "ver", 41)
    await client.hset(BoardKeys(other).state, "ver", 7)
    await client.set(profiles_version_key(profiles), 3)
    stamps = PageStamps(client, profiles)
    before = await _hget_calls(client)
    got = await asyncio.gather(
        *[stamps.read(_cfg(board)) for _ in range(16)], stamps.read(_cfg(other))
    )
    assert await _hget_calls(client) - before == 2  # one HGET per board, in one pipeline
    assert stamps.round_trips == 1
    assert got[:16] == [(rules.ALL_TIME, (41, 3))] * 16
    assert got[16] == (rules.ALL_TIME, (7, 3))
    assert (41, 3) == await page_stamp(client, board, profiles)


async def test_a_read_asked_after_a_write_sees_it(
    client: aioredis.Redis, unique_name: Callable[[str], str]
) -> None:
    board, profiles = unique_name("stamps"), unique_name("profiles")
    stamps = PageStamps(client, profiles)
    cfg = _cfg(board)
    assert await stamps.read(cfg) == (rules.ALL_TIME, (0, 0))
    await client.hset(BoardKeys(board).state, "ver", 5)
    assert await stamps.read(cfg) == (rules.ALL_TIME, (5, 0))
    await client.incr(profiles_version_key(profiles))
    assert await stamps.read(cfg) == (rules.ALL_TIME, (5, 1))
    assert stamps.round_trips == 3


async def test_the_period_of_a_periodic_board_is_current_periods(
    client: aioredis.Redis, unique_name: Callable[[str], str]
) -> None:
    board, profiles = unique_name("stamps"), unique_name("profiles")
    cfg = _cfg(board, ResetPeriod.DAILY)
    stamps = PageStamps(client, profiles)
    # nothing known yet: the wall clock's period, as current_period says
    assert (await stamps.read(cfg))[0] == await current_period(client, cfg)
    keys = BoardKeys(board)
    await client.hset(keys.ended_periods, "2026-11-25", 1)
    await client.hset(keys.open_periods, "2026-11-26", 1)
    await client.hset(keys.state, "ver", 9)
    assert await stamps.read(cfg) == ("2026-11-26", (9, 0))
    assert await current_period(client, cfg) == "2026-11-26"


async def test_a_reader_that_leaves_cancels_only_its_own_wait(
    client: aioredis.Redis, unique_name: Callable[[str], str]
) -> None:
    board, profiles = unique_name("stamps"), unique_name("profiles")
    await client.hset(BoardKeys(board).state, "ver", 2)
    stamps = PageStamps(client, profiles)
    gone = stamps.read(_cfg(board))
    kept = stamps.read(_cfg(board))
    gone.cancel()
    assert await kept == (rules.ALL_TIME, (2, 0))


async def test_a_failed_read_fails_every_reader_of_its_turn(
    unique_name: Callable[[str], str],
) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    stamps = PageStamps(dead, unique_name("profiles"))
    got = await asyncio.gather(
        *[stamps.read(_cfg(unique_name("stamps"))) for _ in range(3)], return_exceptions=True
    )
    assert all(isinstance(g, Exception) for g in got)
    await dead.aclose()
