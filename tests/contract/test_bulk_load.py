"""The fast rebuild path against the apply script: fold in the model, bulk-load, same keys.

The same random sequences (every operator, both sorts, every reset, tournament windows, closed
boards, clock marks, ties, duplicates and the dedup horizon, refused matches, metadata) go
through the Redis apply script in random chunks, and through a folding MemoryStore whose final
state ``projections.bulk`` loads under another prefix: every key, field, member and score must
be byte-identical, and every period's checksum equal.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from processors.bootstrap import make_client
from projections import bulk
from projections.memory import MemoryStore
from projections.redis_client import RedisClient
from projections.store import RankingStore, SourceRecord
from streams import rules
from streams.errors import LeaderboardError
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings
from tests.contract.records import BASE, DAY, random_records
from tests.contract.store_contract import DEDUP, GRACE, OVERTAKEN
from tests.integration.conftest_cluster import scrub

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(stack: Settings) -> AsyncIterator[RedisClient]:
    made = make_client(stack)
    yield made
    await made.aclose()


def enrich(rng: random.Random, records: list[SourceRecord]) -> list[SourceRecord]:
    """Add metadata to some entries and an invalid entry (a refused match) to some records."""
    out = []
    for r in records:
        ev = r.event
        if ev.event_id and rng.random() < 0.2:
            entries = tuple(
                replace(e, metadata={"name": f"n{rng.randint(0, 3)}", "cc": "fr"})
                for e in ev.entries
            )
            ev = replace(ev, entries=entries)
        if ev.event_id and rng.random() < 0.04:
            ev = replace(ev, entries=(*ev.entries, ScoreEntry("bad\x00id", 1)))
        out.append(replace(r, event=ev))
    return out


async def dump(client: RedisClient, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (name without it) with its full contents."""
    out: dict[str, Any] = {}
    async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = await client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        name = key[len(prefix) :]
        if kind == "zset":
            out[name] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            out[name] = await client.hgetall(key)
        else:
            out[name] = (kind, await client.dump(key))
    return out


CONFIGS = [
    LeaderboardConfigured("board", SortOrder.DESC, Operator.BEST, ResetPeriod.NONE, watch_top_n=3),
    LeaderboardConfigured("board", SortOrder.ASC, Operator.BEST, ResetPeriod.DAILY),
    LeaderboardConfigured("board", SortOrder.DESC, Operator.INCR, ResetPeriod.MONTHLY),
    LeaderboardConfigured("board", SortOrder.ASC, Operator.DECR, ResetPeriod.WEEKLY),
    LeaderboardConfigured("board", SortOrder.DESC, Operator.SET, ResetPeriod.DAILY),
    # a tournament window: its end closes the all-time period
    LeaderboardConfigured(
        "board",
        SortOrder.DESC,
        Operator.BEST,
        ResetPeriod.NONE,
        starts_at=BASE + 5 * DAY,
        ends_at=BASE + 15 * DAY,
    ),
    # a board closed in the middle of its log: every open period ends at the cut
    LeaderboardConfigured(
        "board",
        SortOrder.DESC,
        Operator.INCR,
        ResetPeriod.WEEKLY,
        status=BoardStatus.CLOSED,
        closed_at=BASE + 10 * DAY,
    ),
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.sort_order}-{c.operator}-{c.reset_period}"
)
@pytest.mark.parametrize("seed", [1, 2])
async def test_bulk_load_leaves_the_keys_of_the_apply_script(
    client: RedisClient, cfg: LeaderboardConfigured, seed: int
) -> None:
    rng = random.Random(f"{seed}{cfg}")
    records = enrich(rng, random_records(rng, "board", 500, marks=True))
    lua_prefix, bulk_prefix = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    lua = RankingStore(
        client, prefix=lua_prefix, overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP
    )
    fold = MemoryStore(overtaken_limit=0, grace_ms=GRACE, dedup=DEDUP, fold=True)
    try:
        i = 0
        while i < len(records):
            chunk = records[i : i + rng.randint(1, 60)]
            (out,) = await lua.apply([(cfg, chunk)])
            await lua.acknowledge([out])
            (folded,) = await fold.apply([(cfg, chunk)])
            await fold.acknowledge([folded])
            assert folded.offsets == out.offsets
            assert sorted((r.offset, r.reason) for r in folded.rejections) == sorted(
                (r.offset, r.reason) for r in out.rejections
            )
            assert folded.periods_ended == out.periods_ended
            i += len(chunk)
        found = fold.folded("board")
        assert found is not None
        model, watermarks = found
        keys = RankingStore(client, prefix=bulk_prefix).keys("board")
        loaded = await bulk.load(client, keys, model, watermarks, chunk=7)
        await bulk.verify(client, keys, model, loaded)
        want = await dump(client, lua_prefix)
        got = await dump(client, bulk_prefix)
        assert got == want
        assert len(loaded.checksums) >= 1
        for period, (digest, count) in loaded.checksums.items():
            assert await lua.checksum("board", period, cfg.sort_order) == (digest, count)
        # the check catches a load that went wrong: a score moved, a member too many
        first = keys.zset(sorted(loaded.checksums)[0])
        member, score = (await client.zrange(first, -1, -1, withscores=True))[0]
        await client.zadd(first, {member: score + 1})
        with pytest.raises(LeaderboardError, match="differs from the folded log"):
            await bulk.verify(client, keys, model, loaded)
        await client.zadd(first, {member: score})
        await bulk.verify(client, keys, model, loaded)
        await client.zadd(first, {rules.member(BASE, 0, 0, "ghost"): 0})
        n = len(loaded.orders[sorted(loaded.checksums)[0]])
        with pytest.raises(LeaderboardError, match=f"Redis {n + 1} rows, fold {n} rows"):
            await bulk.verify(client, keys, model, loaded)
    finally:
        await scrub(client, f"{lua_prefix}*")
        await scrub(client, f"{bulk_prefix}*")


async def test_the_lua_tail_continues_a_bulk_loaded_board(client: RedisClient) -> None:
    """Fold a prefix, load it, apply the rest with the script: the keys of a Lua-only run."""
    cfg = CONFIGS[2]
    rng = random.Random(11)
    records = enrich(rng, random_records(rng, "board", 300, marks=True))
    lua_prefix, mixed_prefix = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    lua = RankingStore(client, prefix=lua_prefix, grace_ms=GRACE, dedup=DEDUP)
    mixed = RankingStore(client, prefix=mixed_prefix, grace_ms=GRACE, dedup=DEDUP)
    fold = MemoryStore(grace_ms=GRACE, dedup=DEDUP, fold=True)
    try:
        await lua.acknowledge(await lua.apply([(cfg, records)]))
        await fold.apply([(cfg, records[:200])])
        found = fold.folded("board")
        assert found is not None
        await bulk.load(client, mixed.keys("board"), *found)
        # overlapping: the records at or below the loaded watermark change nothing
        await mixed.acknowledge(await mixed.apply([(cfg, records[150:])]))
        assert await dump(client, mixed_prefix) == await dump(client, lua_prefix)
    finally:
        await scrub(client, f"{lua_prefix}*")
        await scrub(client, f"{mixed_prefix}*")


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.sort_order}-{c.operator}-{c.reset_period}"
)
async def test_the_replay_fold_leaves_the_keys_of_the_projector_and_script(
    stack: Settings, client: RedisClient, cfg: LeaderboardConfigured
) -> None:
    """``replay``'s fold (matches straight to the model, ids checked once, marks through the
    projector) and the live projector over the apply script leave the same keys."""
    from processors.bootstrap import get_codec
    from processors.replay import ReplayReport, _Fold
    from processors.workers.projector import Projector, RawRecord
    from streams.events import CLOCK_KEY, clock_mark
    from streams.partitioning import partition_for

    settings = stack.model_copy(
        update={"period_grace_ms": GRACE, "dedup_window_ms": DEDUP[0], "dedup_max_ids": DEDUP[1]}
    )
    rng = random.Random(f"fold{cfg}")
    part = partition_for("board", settings.partitions)
    decoded: list[tuple[RawRecord, Any]] = []
    for r in enrich(rng, random_records(rng, "board", 600, marks=True)):
        if not r.event.event_id:  # a mark as the log holds it: the clock board, its key
            decoded.append(
                (RawRecord(part, r.offset, CLOCK_KEY, None, r.time), clock_mark("t", r.time))
            )
            continue
        ev = r.event
        if rng.random() < 0.03:  # a valid id seen before, with a score out of the exact range
            ev = replace(ev, entries=(*ev.entries, ScoreEntry("p1", 2**60)))
        decoded.append((RawRecord(part, r.offset, b"board", None, r.time), ev))
    # at the end, fresh: a known id with a score out of the exact range refuses its match
    last = max(raw.log_time or 0 for raw, _ in decoded)
    for k, entries in enumerate([(("p1", 2**60), ("p2", 5)), (("p2", 7),)]):
        ev = MatchResultSubmitted(
            f"fresh{k}", "m", "board", last, tuple(ScoreEntry(*e) for e in entries)
        )
        decoded.append((RawRecord(part, len(decoded), b"board", None, last), ev))
    lua_prefix, fold_prefix = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    lua = RankingStore(client, prefix=lua_prefix, grace_ms=GRACE, dedup=DEDUP)
    live = Projector(
        settings,
        lua,
        lambda b: cfg if b == "board" else None,
        get_codec(settings),
        None,
        boards=lambda: (cfg,),
    )
    fold = _Fold(settings, cfg, RankingStore(client, prefix=fold_prefix))
    report = ReplayReport("board", "kafka")
    try:
        i = 0
        while i < len(decoded):
            chunk = decoded[i : i + rng.randint(1, 80)]
            await live.apply_decoded(chunk)
            await fold.apply(chunk, report)
            i += len(chunk)
        await fold.load(report)
        assert report.folded == report.entries == await lua.version("board")
        assert await dump(client, fold_prefix) == await dump(client, lua_prefix)
    finally:
        await scrub(client, f"{lua_prefix}*")
        await scrub(client, f"{fold_prefix}*")


async def test_a_bucketed_index_loads_in_a_few_round_trips(client: RedisClient) -> None:
    """20,000 participants fill every bucket of the participant index (thousands of small
    HSETs): the load sends them by arguments per round trip, not by commands, so the board
    takes a handful of round trips (one per eight commands was ~550), and verifies."""
    cfg = CONFIGS[0]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    fold = MemoryStore(grace_ms=GRACE, dedup=DEDUP, fold=True)
    records = [
        SourceRecord(
            0,
            i,
            MatchResultSubmitted(
                f"e{i}",
                f"e{i}",
                "board",
                BASE + i,
                tuple(ScoreEntry(f"p{i * 10 + j}", (i * 7 + j) % 997) for j in range(10)),
            ),
        )
        for i in range(2_000)
    ]
    try:
        await fold.apply([(cfg, records)])
        found = fold.folded("board")
        assert found is not None
        keys = RankingStore(client, prefix=prefix).keys("board")
        loaded = await bulk.load(client, keys, *found)
        await bulk.verify(client, keys, found[0], loaded)
        assert loaded.members == 20_000
        assert loaded.keys > 4_000  # the index buckets, the event ids, the state
        assert 1 <= loaded.round_trips <= 4
    finally:
        await scrub(client, f"{prefix}*")


async def test_a_failed_round_trip_leaves_no_reply_for_the_next_user(client: RedisClient) -> None:
    """Round trips overlap (replies read one round trip late): a command refused in one of
    them raises, and the connection goes back to the pool without replies left unread."""
    key = f"bulkerr{uuid.uuid4().hex[:6]}"
    if not isinstance(client, aioredis.Redis):
        pytest.skip("the overlapped round trips are the single-node path")
    trip = 8  # commands per round trip (4 arguments each)
    out = bulk.Sender(client, args_per_trip=4 * trip)
    with pytest.raises(ResponseError):
        try:
            for i in range(trip):  # one round trip with a refused command in it
                await out.send("ZADD", key, "not-a-score" if i == 2 else i, f"m{i}")
            for i in range(trip * 2):  # later round trips, sent before it is read
                await out.send("ZADD", key, i, f"n{i}")
            await out.flush()
        finally:
            await out.close()
    for _ in range(3 * trip):  # every pooled connection answers its own command
        assert await client.execute_command("ECHO", "mine") in (b"mine", "mine")
    assert await client.zcard(key) >= trip - 1
    await client.unlink(key)
