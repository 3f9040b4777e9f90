"""Sharded boards (hash and score range) rebuilt from a real log: swap and ``rebuild --all``.

A live projector and sinks worker apply a generated log (ties, refused matches, duplicates,
overflowing increments). ``replay --swap`` then rebuilds each sharded board while scores keep
arriving (its catch-up tail goes through the live apply step), and the live board must still
verify equal to the log from Kafka and from PostgreSQL, with every version published. After
Redis lost the boards, ``rebuild --all`` must restore every key of every shard byte for byte.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections import defaultdict
from typing import Any

import pytest
import redis.asyncio as aioredis

from processors.bootstrap import get_codec
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import REBUILT, CommittedProbe, rebuild_all, replay_board
from projections.layout import layout_of
from projections.sharded import ShardedStore
from projections.store import RankingStore
from streams.events import (
    LeaderboardConfigured,
    Operator,
    RankChanged,
    ResetPeriod,
    SortOrder,
)
from streams.partitioning import partition_for
from tests.contract.test_bulk_load import dump
from tests.integration.conftest import Pipeline, wait_until
from tests.integration.test_rebuild import produce

pytestmark = pytest.mark.integration


def sharded_boards(tag: str) -> list[LeaderboardConfigured]:
    return [
        LeaderboardConfigured(
            f"{tag}-hash",
            SortOrder.DESC,
            Operator.INCR,
            ResetPeriod.DAILY,
            watch_top_n=3,
            metadata={"shards": "hash:3"},
        ),
        LeaderboardConfigured(
            f"{tag}-range", SortOrder.ASC, Operator.BEST, metadata={"shards": "range:50,200"}
        ),
    ]


def caught_up(p: Pipeline) -> None:
    """Wait until the live projector group committed the whole score topic."""
    probe = CommittedProbe(p.settings)
    ends = {
        m.partition(): m.offset() + 1 for m in read_to_end(p.settings, p.settings.topic("scores"))
    }
    try:
        wait_until(lambda: all(probe.offset(q) >= e for q, e in ends.items()), timeout=90)
    finally:
        probe.close()


def prefixes(cfg: LeaderboardConfigured) -> list[str]:
    """Key prefixes of a board and of each of its shards."""
    layout = layout_of(cfg)
    ids = layout.shard_ids(cfg.leaderboard_id) if layout else []
    return [f"lb:{{{b}}}" for b in [cfg.leaderboard_id, *ids]]


async def _dump_all(p: Pipeline, cfg: LeaderboardConfigured) -> dict[str, Any]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        return {pre: await dump(client, pre) for pre in prefixes(cfg)}
    finally:
        await client.aclose()


async def _scrub(p: Pipeline, cfg: LeaderboardConfigured) -> None:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        for pre in prefixes(cfg):
            async for key in client.scan_iter(match=f"{pre}:*", count=1000):
                await client.delete(key)
    finally:
        await client.aclose()


async def _version(p: Pipeline, board: str) -> int:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        return await ShardedStore(RankingStore(client)).version(board)
    finally:
        await client.aclose()


def published_versions(p: Pipeline) -> dict[str, set[int]]:
    codec = get_codec(p.settings)
    seen: dict[str, set[int]] = defaultdict(set)
    for msg in read_to_end(p.settings, p.settings.topic("rank-changes")):
        rc = codec.decode_as(msg.value() or b"", RankChanged)
        seen[rc.leaderboard_id] |= {c.version for c in rc.changes}
    return seen


def test_sharded_swap_under_live_traffic_verifies_from_kafka_and_postgres(
    pipeline_factory: Any,
) -> None:
    p: Pipeline = pipeline_factory()
    cfgs = sharded_boards(f"w{uuid.uuid4().hex[:6]}")
    with LeaderboardProducer(p.settings) as prod:
        for c in cfgs:
            prod.configure(c)
    p.start_worker(LEADERBOARD_CLOCK_MARK_S="0")
    p.start_worker("sinks")
    produce(p, cfgs, 300, 13)
    caught_up(p)
    # more scores arrive while the boards are rebuilt and swapped: the swap catches up
    more = threading.Thread(target=produce, args=(p, cfgs, 300, 14), daemon=True)
    more.start()
    reports = [asyncio.run(replay_board(p.settings, cfg, swap=True)) for cfg in cfgs]
    more.join(60)
    assert not more.is_alive()
    assert all(r.swapped and r.entries > 0 and r.folded == 0 for r in reports)
    caught_up(p)
    published = published_versions(p)
    for cfg in cfgs:
        board = cfg.leaderboard_id
        rep = asyncio.run(replay_board(p.settings, cfg, verify=True))
        assert rep.diffs and rep.verified, (board, rep.diffs)
        version = asyncio.run(_version(p, board))
        assert rep.version == version > 0
        # every version published once at least (the swap's tail by the live worker), none more
        wait_until(lambda b=board, v=version: set(range(1, v + 1)) <= published_versions(p)[b])
        assert published_versions(p)[board] == set(range(1, version + 1)), board
        # the audit (sinks worker) rebuilds the same standings
        wait_until(
            lambda c=cfg: (
                asyncio.run(replay_board(p.settings, c, source="postgres", verify=True)).verified
            ),
            timeout=60,
        )
    assert published  # the live worker published rank changes at all


def test_rebuild_all_restores_every_shard_byte_for_byte(pipeline_factory: Any) -> None:
    p: Pipeline = pipeline_factory()
    tag = f"r{uuid.uuid4().hex[:6]}"
    cfgs = [*sharded_boards(tag), LeaderboardConfigured(f"{tag}-plain", SortOrder.DESC)]
    with LeaderboardProducer(p.settings) as prod:
        for c in cfgs:
            prod.configure(c)
    worker = p.start_worker(LEADERBOARD_CLOCK_MARK_S="0")
    produce(p, cfgs, 400, 15)
    caught_up(p)
    p.kill(worker, signal.SIGTERM)
    before = {c.leaderboard_id: asyncio.run(_dump_all(p, c)) for c in cfgs}
    for c in cfgs:  # Redis lost the boards
        asyncio.run(_scrub(p, c))
        assert not any(asyncio.run(_dump_all(p, c)).values())
    boards = {c.leaderboard_id: c for c in cfgs}
    reports = asyncio.run(rebuild_all(p.settings, boards, parallel=2))
    assert sorted(r.board for r in reports) == sorted(boards)
    assert all(r.swapped and r.entries > 0 for r in reports)
    for c in cfgs:
        got = asyncio.run(_dump_all(p, c))
        assert got == before[c.leaderboard_id], c.leaderboard_id
        if layout_of(c) is not None:  # the shards hold the board, the layout key names them
            assert all(got[pre] for pre in prefixes(c)[1:])
    # resume after an interruption: a sharded board recorded at its live watermark (that of
    # every shard) is skipped, the boards not recorded are rebuilt again
    done = cfgs[0].leaderboard_id
    asyncio.run(_record_rebuilt(p, done))
    again = asyncio.run(rebuild_all(p.settings, boards, parallel=1, resume=True))
    assert sorted(r.board for r in again) == sorted(set(boards) - {done})
    for c in cfgs:
        assert asyncio.run(_dump_all(p, c)) == before[c.leaderboard_id], c.leaderboard_id


async def _record_rebuilt(p: Pipeline, board: str) -> None:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        wm = await ShardedStore(RankingStore(client)).watermark(
            board, partition_for(board, p.settings.partitions)
        )
        assert wm >= 0
        await client.hset(REBUILT, board, wm)
    finally:
        await client.aclose()
