"""Sharded boards (hash and score range) read and write exactly like an unsharded board."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from processors.bootstrap import get_codec
from processors.workers.projector import Projector, RawRecord
from processors.workers.topk import TopKCache
from projections.redis_client import RedisClient, is_cluster
from projections.scripts import APPLY, RANGE_APPLY, ProjectionLost
from projections.sharded import ShardedStore
from projections.store import RankingStore, SourceRecord
from projections.topk import read_topk
from streams.errors import LeaderboardError
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)
from tests.integration.test_store_contract import BASE, DAY, random_records

pytestmark = pytest.mark.integration

LAYOUTS = ["hash:3", "range:-100,0,100"]


@pytest.fixture
async def stores(redis_backend: RedisClient) -> AsyncIterator[tuple[ShardedStore, RankingStore]]:  # noqa: F811
    """A sharded-capable store and a plain one on a fresh prefix of the backend."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    plain = RankingStore(redis_backend, prefix=prefix, grace_ms=DAY)
    yield ShardedStore(plain), plain
    await scrub(redis_backend, f"{prefix}:*")


def sharded(cfg: LeaderboardConfigured, layout: str, board: str) -> LeaderboardConfigured:
    """The same configuration under another id, sharded by ``layout``."""
    return replace(cfg, leaderboard_id=board, metadata={"shards": layout})


def rename(records: list[SourceRecord], board: str) -> list[SourceRecord]:
    """The same records addressed to another board."""
    return [replace(r, event=replace(r.event, leaderboard_id=board)) for r in records]


async def feed(
    store: ShardedStore | RankingStore,
    cfg: LeaderboardConfigured,
    records: list[SourceRecord],
    rng: random.Random,
) -> list:  # type: ignore[type-arg]
    """Apply in random chunks with redelivery (as the projector would); returns the changes."""
    changes = []
    i = 0
    while i < len(records):
        chunk = records[i : i + rng.randint(1, 40)]
        outs = await store.apply([(cfg, chunk)])
        again = await store.apply([(cfg, chunk)])
        assert [c.version for c in again[0].changes] == [c.version for c in outs[0].changes]
        await store.acknowledge(outs)
        changes += outs[0].changes
        i += len(chunk)
    return changes


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sort", [SortOrder.DESC, SortOrder.ASC])
@pytest.mark.parametrize(
    "reset,operator", [(ResetPeriod.NONE, Operator.BEST), (ResetPeriod.DAILY, Operator.INCR)]
)
async def test_sharded_equals_unsharded(
    stores: tuple[ShardedStore, RankingStore],
    layout: str,
    sort: SortOrder,
    reset: ResetPeriod,
    operator: Operator,
) -> None:
    """Random sequences (duplicates, late events, periods): same standings, versions, changes."""
    sharded_store, plain = stores
    rng = random.Random(f"{layout}{sort}{reset}{operator}")
    cfg = LeaderboardConfigured("plain", sort_order=sort, operator=operator, reset_period=reset)
    scfg = sharded(cfg, layout, "shb")
    records = random_records(rng, "plain", 300)
    ref = await feed(plain, cfg, records, random.Random(1))
    got = await feed(sharded_store, scfg, rename(records, "shb"), random.Random(2))
    assert [(c.version, c.participant_id, c.new_score) for c in got] == [
        (c.version, c.participant_id, c.new_score) for c in ref
    ]
    if layout.startswith("range"):  # exact per-change global ranks
        assert [(c.old_rank, c.new_rank) for c in got] == [(c.old_rank, c.new_rank) for c in ref]
    periods = await plain.periods("plain")
    assert await sharded_store.periods("shb") == periods
    assert await sharded_store.version("shb") == await plain.version("plain")
    for p in periods:
        assert await sharded_store.checksum("shb", p, sort) == await plain.checksum(
            "plain", p, sort
        )


def scripted(board: str, n: int = 2000) -> list[SourceRecord]:
    """A fixed stream: many participants, ties, band-crossing increments, two entries a record."""
    rng = random.Random(42)
    out = []
    for offset in range(n):
        entries = tuple(
            ScoreEntry(
                f"p{rng.randint(0, 1499)}",
                rng.choice([rng.randint(-300, 300), rng.randint(0, 20)]),
                rng.choice([None, Operator.INCR, Operator.SET]),
            )
            for _ in range(2)
        )
        ev = MatchResultSubmitted(f"e{offset}", f"m{offset}", board, BASE + offset * 1000, entries)
        out.append(SourceRecord(0, offset, ev))
    return out


@pytest.mark.parametrize("sort", [SortOrder.DESC, SortOrder.ASC])
async def test_same_checksum_and_exact_ranks(
    stores: tuple[ShardedStore, RankingStore],
    sort: SortOrder,
) -> None:
    """One scripted stream: plain, hash- and range-sharded boards agree on every read."""
    sharded_store, plain = stores
    cfg = LeaderboardConfigured("plain", sort_order=sort)
    boards = {
        "hash": sharded(cfg, "hash:4", "h"),
        "range": sharded(cfg, "range:-100,0,50,200", "r"),
    }
    await feed(plain, cfg, scripted("plain"), random.Random(3))
    for name, c in boards.items():
        await feed(sharded_store, c, scripted(name[0]), random.Random(4))
    want = await plain.checksum("plain", "all", sort)
    rows = await plain.standings("plain", "all", sort)
    pids = [e.participant_id for e in rows] + ["nobody"]
    expect = await plain.ranks("plain", "all", sort, pids)
    for name in boards:
        board = name[0]
        assert await sharded_store.checksum(board, "all", sort) == want, name
        assert await sharded_store.count(board, "all") == len(rows)
        assert await sharded_store.ranks(board, "all", sort, pids) == expect, name
        for offset, limit in [(0, 10), (37, 100), (len(rows) - 5, 10)]:
            assert await sharded_store.top(
                board, "all", sort, limit=limit, offset=offset
            ) == await plain.top("plain", "all", sort, limit=limit, offset=offset)
        pid = rows[len(rows) // 2].participant_id
        assert await sharded_store.around(board, "all", sort, pid, 3) == await plain.around(
            "plain", "all", sort, pid, 3
        )


async def test_topk_cache_equals_scatter_gather(stores: tuple[ShardedStore, RankingStore]) -> None:
    """The cached global top K is the scatter-gather top K, with its version."""
    sharded_store, _ = stores
    cfg = sharded(LeaderboardConfigured("x"), "hash:4", "k")
    await feed(sharded_store, cfg, scripted("k"), random.Random(5))
    cache = TopKCache(sharded_store, k=250)
    built = await cache.rebuild(cfg, "all", now_ms=BASE)
    assert built is not None
    cached = await read_topk(sharded_store, "k", "all")
    assert cached is not None
    assert cached.entries == await sharded_store.top("k", "all", cfg.sort_order, limit=250)
    assert cached.version == await sharded_store.version("k")
    assert cached.computed_at == BASE
    for offset, limit in [(0, 100), (150, 30), (90, 20), (240, 50)]:
        page = await read_topk(sharded_store, "k", "all", limit=limit, offset=offset)
        assert page is not None
        assert page.entries == cached.entries[offset : offset + limit]


async def test_projector_routes_sharded_boards(
    redis_settings: Settings,  # noqa: F811
    redis_backend: RedisClient,  # noqa: F811
) -> None:
    """The projector (live and replay code path) writes a sharded board through its shards."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    plain = RankingStore(redis_backend, prefix=prefix, grace_ms=DAY)
    cfgs = {
        "p": LeaderboardConfigured("p"),
        "s": sharded(LeaderboardConfigured("s"), "range:0,100", "s"),
    }
    proj = Projector(redis_settings, plain, cfgs.get, get_codec(redis_settings), None)
    try:
        for board in cfgs:
            decoded = [(RawRecord(0, r.offset, None, b""), r.event) for r in scripted(board, 300)]
            await proj.apply_decoded(decoded[:150])
            await proj.apply_decoded(decoded)  # redelivery overlaps
        reader = ShardedStore(plain)
        assert await reader.layout("s") is not None and await reader.layout("p") is None
        assert await reader.checksum("s", "all", SortOrder.DESC) == await plain.checksum(
            "p", "all", SortOrder.DESC
        )
        assert await plain.count("s", "all") == 0  # nothing written to the unsharded keys
    finally:
        await scrub(redis_backend, f"{prefix}:*")


async def test_missing_marker_stops_plain_hash_and_range_boards(
    redis_backend: RedisClient,  # noqa: F811
) -> None:
    """Without its projection marker the apply raises ProjectionLost, plain or sharded (a range
    shard applied onto an emptied Redis would restart its versions)."""
    if is_cluster(redis_backend):
        pytest.skip("the projection marker guards the single node only")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    marker = f"{prefix}:marker"
    store = ShardedStore(RankingStore(redis_backend, prefix=prefix, grace_ms=DAY, guard_key=marker))
    try:
        for cfg in [
            LeaderboardConfigured("p"),
            sharded(LeaderboardConfigured("h"), "hash:2", "h"),
            sharded(LeaderboardConfigured("r"), "range:0,100", "r"),
        ]:
            recs = scripted(cfg.leaderboard_id, 5)
            with pytest.raises(ProjectionLost):
                await store.apply([(cfg, recs)])
            await redis_backend.set(marker, "1")
            outs = await store.apply([(cfg, recs)])
            assert [c.version for c in outs[0].changes] == list(range(1, 11))
            await redis_backend.delete(marker)
    finally:
        await scrub(redis_backend, f"{prefix}:*")


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_swap_waits_for_every_shard_and_replaces_them_all(
    redis_backend: RedisClient,  # noqa: F811
    layout: str,
) -> None:
    """The swap compares each shadow shard with the highest live shard (a live batch may be
    half applied across shards), then replaces every shard and the layout key at once; each
    shard keeps the results its live shard has not applied yet."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    live = ShardedStore(RankingStore(redis_backend, prefix=prefix, grace_ms=DAY))
    shadow = ShardedStore(RankingStore(redis_backend, prefix=prefix + "r", grace_ms=DAY))
    cfg = sharded(LeaderboardConfigured("x", reset_period=ResetPeriod.DAILY), layout, "w")
    records = scripted("w", 60)
    try:
        await live.apply([(cfg, records[:50])])
        ids = [f"w#{i}" for i in range(3 if layout.startswith("hash") else 4)]
        # shard 1 live is behind (a live batch reached the other shards first)
        await redis_backend.hset(f"{prefix}:{{{ids[1]}}}:s", "wm:0", 39)
        await shadow.apply([(cfg, records[:45])])
        assert await live.watermark("w", 0) == 39
        if is_cluster(redis_backend):  # the shards sit in different slots: no atomic swap
            with pytest.raises(LeaderboardError, match="Redis Cluster"):
                await live.swap_from(shadow, "w", 0)
            return
        assert not await live.swap_from(shadow, "w", 0)  # 45 < 49 on shard 0
        await shadow.apply([(cfg, records[45:])])
        want = {
            p: await shadow.standings("w", p, SortOrder.DESC) for p in await shadow.periods("w")
        }
        assert await live.swap_from(shadow, "w", 0)
        assert await shadow.board_keys("w") == []
        assert await live.layout("w") is not None
        assert await live.version("w") == 120
        for p, rows in want.items():
            assert await live.standings("w", p, SortOrder.DESC) == rows
        for i, sid in enumerate(ids):
            kept = sorted(int(o) for o in await redis_backend.hkeys(f"{prefix}:{{{sid}}}:ob"))
            assert kept == list(range(40 if i == 1 else 50, 60)), sid
    finally:
        await scrub(redis_backend, f"{prefix}*")


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_big_batch_is_applied_in_slices_as_one(
    stores: tuple[ShardedStore, RankingStore],
    layout: str,
) -> None:
    """A batch larger than ``slice_entries`` goes to the shards in short script calls; its
    outcome and the state are those of the unsliced batch (and of a plain board)."""
    sharded_store, plain = stores
    sliced = ShardedStore(plain, slice_entries=7)
    cfg = LeaderboardConfigured("plain", reset_period=ResetPeriod.DAILY, watch_top_n=5)
    (ref,) = await plain.apply([(cfg, scripted("plain", 300))])
    (whole,) = await sharded_store.apply([(sharded(cfg, layout, "one"), scripted("one", 300))])
    calls = 0
    run_many = RANGE_APPLY.run_many if layout.startswith("range") else APPLY.run_many

    async def counted(client: RedisClient, batch: list) -> list:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        return await run_many(client, batch)

    script = RANGE_APPLY if layout.startswith("range") else APPLY
    script.run_many = counted  # type: ignore[method-assign]
    try:
        (out,) = await sliced.apply([(sharded(cfg, layout, "cut"), scripted("cut", 300))])
    finally:
        del script.run_many
    assert calls >= 300 * 2 // 7  # slices of at most 7 entries (3 records of 2)
    assert out.offsets == whole.offsets == list(range(300))
    assert [c.version for c in out.changes] == [c.version for c in ref.changes]
    assert [(c.participant_id, c.new_score) for c in out.changes] == [
        (c.participant_id, c.new_score) for c in ref.changes
    ]
    assert len(out.rejections) == len(whole.rejections)
    for period in await plain.periods("plain"):
        want = await plain.checksum("plain", period, SortOrder.DESC)
        assert await sliced.checksum("cut", period, SortOrder.DESC) == want
        assert await sharded_store.checksum("one", period, SortOrder.DESC) == want
