"""The fast rebuild path (fold + bulk load) against the apply script, from a real log.

A live projector (clock marks every 0.3 s, a short grace) applies a generated log with every
operator and sort, ties, refused matches, duplicates, late events, a tournament window that
ends, a board closed mid-stream and a client-time board crossing a month end. Then, per board:
the fast rebuild and the apply-script rebuild both verify equal to live on every period, and a
fast ``--swap`` leaves every live key byte-identical.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import signal
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from processors import replay
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import REBUILT, CommittedProbe, rebuild_all, replay_board
from projections.store import RankingStore
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)
from streams.partitioning import partition_for
from tests.contract.test_bulk_load import dump
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration

GRACE = 1_500
HOUR = 3_600_000


def board_set(tag: str, now: int) -> list[LeaderboardConfigured]:
    return [
        LeaderboardConfigured(f"{tag}-best", SortOrder.DESC, Operator.BEST, watch_top_n=3),
        LeaderboardConfigured(f"{tag}-set", SortOrder.ASC, Operator.SET, ResetPeriod.DAILY),
        LeaderboardConfigured(f"{tag}-incr", SortOrder.DESC, Operator.INCR, ResetPeriod.WEEKLY),
        LeaderboardConfigured(f"{tag}-decr", SortOrder.ASC, Operator.DECR, ResetPeriod.MONTHLY),
        LeaderboardConfigured(
            f"{tag}-cup", SortOrder.DESC, Operator.BEST, starts_at=now - HOUR, ends_at=now + 5_000
        ),
        LeaderboardConfigured(
            f"{tag}-shut",
            SortOrder.DESC,
            Operator.INCR,
            ResetPeriod.DAILY,
            status=BoardStatus.CLOSED,
            closed_at=now + 5_500,
        ),
        LeaderboardConfigured(
            f"{tag}-back",
            SortOrder.DESC,
            Operator.INCR,
            ResetPeriod.MONTHLY,
            time_source=TimeSource.CLIENT,
        ),
    ]


def produce(p: Pipeline, cfgs: list[LeaderboardConfigured], n: int, seed: int) -> None:
    """Scores with ties (few distinct values), duplicates, invalid entries and overflow."""
    rng = random.Random(seed)
    sent: list[MatchResultSubmitted] = []
    back = 1_793_491_200_000 - 30 * HOUR  # the client-time board crosses a month end
    topic = p.settings.topic("scores")
    with LeaderboardProducer(p.settings) as prod:
        for i in range(n):
            cfg = rng.choice(cfgs)
            now = int(time.time() * 1000)
            at = back + i * 60_000 if cfg.time_source is TimeSource.CLIENT else now
            if cfg.time_source is TimeSource.CLIENT and rng.random() < 0.05:
                at -= 40 * HOUR  # late for an ended period
            entries = [
                ScoreEntry(
                    f"p{rng.randint(0, 30)}",
                    rng.choice([rng.randint(1, 5), rng.randint(1, 500)]),
                    rng.choice([None, None, None, Operator.SET, Operator.INCR, Operator.DECR]),
                    {"name": f"n{rng.randint(0, 3)}"} if rng.random() < 0.2 else {},
                )
                for _ in range(rng.randint(1, 4))
            ]
            if rng.random() < 0.03:
                entries.append(ScoreEntry("bad\x00id", 1))  # the whole match is refused
            if rng.random() < 0.02:
                entries.append(ScoreEntry("p0", 2**53 - 2, Operator.INCR))  # may overflow
            ev = MatchResultSubmitted(
                uuid.uuid4().hex, f"m{i}", cfg.leaderboard_id, at, tuple(entries)
            )
            if sent and rng.random() < 0.03:
                ev = rng.choice(sent)  # a duplicate
            sent.append(ev)
            prod.publish(topic, ev.leaderboard_id, ev)  # past the edge's checks, as any client
            if i % 40 == 0:
                prod.flush()
                time.sleep(0.05)


async def live_dump(p: Pipeline, board: str) -> dict[str, Any]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        return await dump(client, f"lb:{{{board}}}")
    finally:
        await client.aclose()


async def live_version(p: Pipeline, board: str) -> int:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        return await RankingStore(client).version(board)
    finally:
        await client.aclose()


def test_fast_and_lua_rebuilds_equal_live_on_every_board_and_period(
    pipeline_factory: Any,
) -> None:
    p: Pipeline = pipeline_factory()
    p.env.update({"LEADERBOARD_PERIOD_GRACE_MS": str(GRACE), "LEADERBOARD_CLOCK_MARK_S": "0.3"})
    p.settings = p.settings.model_copy(update={"period_grace_ms": GRACE})
    tag = f"f{uuid.uuid4().hex[:6]}"
    cfgs = board_set(tag, int(time.time() * 1000))
    with LeaderboardProducer(p.settings) as prod:
        for c in cfgs:
            prod.configure(c)
    # the window and the closing boards get scores at once (ranked by their log time, inside
    # the window however slow the worker is to start)
    produce(p, cfgs[4:6], 40, 4)
    worker = p.start_worker()
    produce(p, cfgs, 700, 5)
    topic = p.settings.topic("scores")
    # the window's end and the closing pass (plus the grace): the worker's clock marks end
    # both periods, however slow it was to start
    ending = [c.leaderboard_id for c in cfgs[4:6]]
    wait_until(lambda: all(asyncio.run(live_dump(p, b)).get(":pe") for b in ending), timeout=120)
    p.kill(worker, signal.SIGTERM)
    # a projector that writes no marks catches up with the whole log, marks included
    worker = p.start_worker(LEADERBOARD_CLOCK_MARK_S="0")
    probe = CommittedProbe(p.settings)
    ends = {m.partition(): m.offset() + 1 for m in read_to_end(p.settings, topic)}
    wait_until(lambda: all(probe.offset(q) >= e for q, e in ends.items()), timeout=90)
    probe.close()
    p.kill(worker, signal.SIGTERM)

    ended = 0
    for i, cfg in enumerate(cfgs):
        board = cfg.leaderboard_id
        fast = asyncio.run(replay_board(p.settings, cfg, verify=True))
        assert fast.diffs and fast.verified, (board, fast.diffs)
        assert fast.folded == fast.entries > 0
        # read and decoded by the second process (a small log folds in one by default)
        forked = asyncio.run(replay_board(p.settings, cfg, verify=True, decode_process=True))
        assert forked.verified and (forked.folded, forked.records) == (fast.folded, fast.records)
        assert [(d.period, d.rebuilt_checksum) for d in forked.diffs] == [
            (d.period, d.rebuilt_checksum) for d in fast.diffs
        ]
        lua = asyncio.run(replay_board(p.settings, cfg, verify=True, fast=False))
        assert lua.verified and lua.folded == 0
        assert [(d.period, d.rebuilt_checksum) for d in lua.diffs] == [
            (d.period, d.rebuilt_checksum) for d in fast.diffs
        ]
        assert lua.version == fast.version == asyncio.run(live_version(p, board))
        before = asyncio.run(live_dump(p, board))
        ended += len(before.get(":pe", {}))
        # every other board's swap folds what the second process decoded; every record is
        # read once (the tail starts where the process stopped)
        swapped = asyncio.run(replay_board(p.settings, cfg, swap=True, decode_process=i % 2 == 0))
        assert swapped.swapped and swapped.version == fast.version
        assert swapped.records == fast.records
        assert asyncio.run(live_dump(p, board)) == before, board
    assert ended >= 2  # the tournament's and the closed board's periods ended on marks
    # every decode process ended with its replay, used or not (a small log folds here)
    assert not multiprocessing.active_children()


async def scrub_board(p: Pipeline, board: str) -> None:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        async for key in client.scan_iter(match=f"lb:{{{board}}}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


def test_rebuild_all_in_parallel_processes_with_progress_and_resume(
    pipeline_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    p: Pipeline = pipeline_factory()
    tag = f"a{uuid.uuid4().hex[:6]}"
    cfgs = board_set(tag, int(time.time() * 1000))[:4]
    with LeaderboardProducer(p.settings) as prod:
        for c in cfgs:
            prod.configure(c)
    worker = p.start_worker(LEADERBOARD_CLOCK_MARK_S="0")
    produce(p, cfgs, 400, 9)
    topic = p.settings.topic("scores")
    probe = CommittedProbe(p.settings)
    ends = {m.partition(): m.offset() + 1 for m in read_to_end(p.settings, topic)}
    wait_until(lambda: all(probe.offset(q) >= e for q, e in ends.items()), timeout=90)
    probe.close()
    p.kill(worker, signal.SIGTERM)
    boards = {c.leaderboard_id: c for c in cfgs}
    before = {b: asyncio.run(live_dump(p, b)) for b in boards}
    for b in boards:  # Redis lost the boards
        asyncio.run(scrub_board(p, b))
    seen: dict[str, tuple[int, int | None]] = {}

    def tick(board: str, n: int, total: int | None) -> None:
        seen[board] = (n, total)

    # workers forked from this process (the project already imported) and spawned (when a
    # Kafka client's threads run here): the same boards
    for method in ("fork", "spawn"):
        monkeypatch.setattr(replay, "worker_start_method", lambda method=method: method)
        seen.clear()
        reports = asyncio.run(rebuild_all(p.settings, boards, parallel=2, progress=tick))
        assert sorted(r.board for r in reports) == sorted(boards)
        assert all(r.swapped and r.folded == r.entries > 0 for r in reports)
        assert set(seen) == set(boards) and all(n and total for n, total in seen.values())
        for b in boards:
            assert asyncio.run(live_dump(p, b)) == before[b], (method, b)
            asyncio.run(scrub_board(p, b))  # lost again for the next run
    monkeypatch.undo()
    reports = asyncio.run(rebuild_all(p.settings, boards, parallel=2))
    assert sorted(r.board for r in reports) == sorted(boards)

    # resume: a board recorded at its live watermark is skipped; one whose live state lost
    # that rebuild (watermark below the record) is rebuilt again
    first, second = sorted(boards)[:2]

    async def interrupted() -> None:
        client = aioredis.Redis.from_url(p.settings.redis_url)
        store = RankingStore(client)
        part = partition_for(first, p.settings.partitions)
        await client.hset(REBUILT, first, await store.watermark(first, part))
        await client.hset(REBUILT, second, 10**9)
        await client.aclose()

    asyncio.run(interrupted())
    again = asyncio.run(rebuild_all(p.settings, boards, parallel=1, resume=True))
    assert sorted(r.board for r in again) == sorted(set(boards) - {first})
    for b in boards:
        assert asyncio.run(live_dump(p, b)) == before[b], b
