"""The store contract on Redis: the single node, Redis Cluster, and sharded boards on both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from projections.keys import BoardKeys, event_bucket, event_key, index_value
from projections.push import read_many
from projections.redis_client import RedisClient, is_cluster
from projections.sharded import ShardedStore
from projections.store import RankingStore
from streams import rules
from streams.events import LeaderboardConfigured
from tests.contract.moderation_contract import ModerationContract
from tests.contract.records import rec
from tests.contract.store_contract import DEDUP, GRACE, OVERTAKEN, StoreContract
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)

pytestmark = pytest.mark.integration


class TestRedisStore(StoreContract, ModerationContract):
    """RankingStore (apply.lua), once on the single node and once on the cluster."""

    @pytest.fixture
    async def store(self, redis_backend: RedisClient) -> AsyncIterator[RankingStore]:  # noqa: F811
        prefix = f"t{uuid.uuid4().hex[:8]}"
        yield RankingStore(
            redis_backend, prefix=prefix, overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP
        )
        await scrub(redis_backend, f"{prefix}*")  # the shadow's prefix too

    def shadow_of(self, store: RankingStore) -> RankingStore:
        return RankingStore(
            store.client,
            prefix=store.prefix + "r",
            overtaken_limit=OVERTAKEN,
            grace_ms=GRACE,
            dedup=DEDUP,
        )


class TestShardedStore(StoreContract):
    """ShardedStore over RankingStore, every board sharded by hash or by score range."""

    coalesced = False

    @pytest.fixture(params=["hash:3", "range:-100,0,100"])
    async def store(
        self,
        request: pytest.FixtureRequest,
        redis_backend: RedisClient,  # noqa: F811
    ) -> AsyncIterator[ShardedStore]:
        self.shards = request.param
        if request.param.startswith("hash"):
            # hash shards: ranks at batch boundaries, rejections shard by shard
            self.exact_ranks = self.ordered_rejections = False
        self.notices = "mover"
        # one script swaps every shard: the shards' hash tags must share one node
        self.swap_refused = "Redis Cluster" if is_cluster(redis_backend) else None
        prefix = f"t{uuid.uuid4().hex[:8]}"
        plain = RankingStore(
            redis_backend, prefix=prefix, overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP
        )
        yield ShardedStore(plain)
        await scrub(redis_backend, f"{prefix}*")  # the shadow's prefix too

    def shadow_of(self, store: ShardedStore) -> ShardedStore:
        return ShardedStore(
            RankingStore(
                store.client,
                prefix=store.prefix + "r",
                overtaken_limit=OVERTAKEN,
                grace_ms=GRACE,
                dedup=DEDUP,
            )
        )


async def test_the_apply_script_writes_the_members_rules_member_writes(
    redis_backend: RedisClient,  # noqa: F811
) -> None:
    """Lua's tie-break prefix equals rules.member at the edges of every part."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RankingStore(redis_backend, prefix=prefix)
    cfg = LeaderboardConfigured("edges")
    top = rules.MAX_EVENT_MS - 1
    recs = [
        rec(0, "e0", rules.MIN_EVENT_MS, ("a", 1), ("b", 2)),
        rec(2**31 + 5, "e1", 1_793_491_234_567, ("c", 3), ("d", 4), ("e", 5)),
        rec(10**15 - 1, "e2", top, *[(f"p{i}", 10 + i) for i in range(70)]),
    ]
    try:
        await store.apply([(cfg, recs)])
        stored = {
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await redis_backend.zrange(BoardKeys("edges", prefix).zset("all"), 0, -1)
        }
        want = {
            rules.member(r.event.occurred_at, r.offset, i, e.participant_id)
            for r in recs
            for i, e in enumerate(r.event.entries)
        }
        assert stored == want
    finally:
        await scrub(redis_backend, f"{prefix}*")


async def test_the_participant_index_holds_each_prefix_in_the_bucket_python_names(
    redis_backend: RedisClient,  # noqa: F811
) -> None:
    """apply.lua files each participant under BoardKeys.index (SHA-1 of the UTF-8 id, as
    Python computes it), storing only the member's tie-break prefix (as keys.index_value
    packs it), in compact buckets."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RankingStore(redis_backend, prefix=prefix)
    cfg = LeaderboardConfigured("bkt")
    keys = BoardKeys("bkt", prefix)
    pids = ["a", "zoë", "玩家", *[f"u{i:07d}" for i in range(300)]]
    recs = [rec(i, f"e{i}", rules.MIN_EVENT_MS + i, (pid, i)) for i, pid in enumerate(pids)]
    try:
        await store.apply([(cfg, recs)])
        found = {
            k.decode() if isinstance(k, bytes) else str(k)
            async for k in redis_backend.scan_iter(match=f"{keys.members('all')}:*")
        }
        assert found == {keys.index("all", pid) for pid in pids}
        for r, pid in zip(recs, pids, strict=True):
            stored = await redis_backend.hget(keys.index("all", pid), pid)
            want = rules.member(r.event.occurred_at, r.offset, 0, pid)
            assert stored == index_value(want[: rules.TIEBREAK_WIDTH])  # 14 bytes
        encodings = {await redis_backend.object("encoding", k) for k in found}
        assert encodings <= {"listpack", b"listpack"}
        ranks = await store.ranks("bkt", "all", cfg.sort_order, ["玩家", "nobody"])
        assert ranks[0] is not None and ranks[0].rank == len(pids) - 2 and ranks[1] is None
    finally:
        await scrub(redis_backend, f"{prefix}*")


async def test_the_event_id_set_keeps_uuids_as_16_bytes_and_tells_every_id_apart(
    redis_backend: RedisClient,  # noqa: F811
) -> None:
    """apply.lua stores event ids in their ``event_key`` form: a lowercase UUID as 16 bytes,
    other ids as text; ids whose forms could meet (a 16-character id spelling a UUID's bytes,
    the same UUID in capitals) stay distinct, and a true duplicate is still refused."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RankingStore(redis_backend, prefix=prefix)
    cfg = LeaderboardConfigured("evk")
    u = "6a6a6a6a-6a6a-6a6a-6a6a-6a6a6a6a6a6a"  # its 16 bytes spell "j" x 16
    ids = [u, "j" * 16, u.upper(), "j" * 15 + "\0", "short", "mod-" + str(uuid.uuid4())]
    recs = [rec(i, eid, rules.MIN_EVENT_MS + i, (f"p{i}", i)) for i, eid in enumerate(ids)]
    recs.append(rec(len(ids), u, rules.MIN_EVENT_MS + 99, ("late", 1)))
    try:
        (out,) = await store.apply([(cfg, recs)])
        assert [r.reason for r in out.rejections] == [f"duplicate event id {u}"]
        keys = BoardKeys("evk", prefix)
        day = rules.dedup_day(rules.MIN_EVENT_MS)
        assert await redis_backend.hgetall(keys.events) == {str(day).encode(): b"6"}
        stored: set[bytes] = set()
        async for name in redis_backend.scan_iter(match=f"{keys.events}:*"):
            fields = await redis_backend.hkeys(name)
            for f in fields:  # each id in its day's bucket (keys.event_bucket)
                assert name.decode() == keys.event_ids(day, event_bucket(f))
            stored |= set(fields)
        assert stored == {event_key(e) for e in ids}
        assert event_key(u) == b"j" * 16 and len(stored) == len(ids)
    finally:
        await scrub(redis_backend, f"{prefix}*")


async def test_the_push_reads_find_participants_through_the_packed_index(
    redis_backend: RedisClient,  # noqa: F811
) -> None:
    """push.read_many (its own script) decodes the index's 14-byte prefixes as apply.lua does:
    the listed participants' rows, best first, with the board's version."""
    board = f"rm{uuid.uuid4().hex[:8]}"
    store = RankingStore(redis_backend)
    cfg = LeaderboardConfigured(board)
    scores = {"a": 5, "b": 9, "c": 7, "d": 9}
    recs = [
        rec(i, f"e{i}", rules.MIN_EVENT_MS + i, (p, s)) for i, (p, s) in enumerate(scores.items())
    ]
    try:
        await store.apply([(cfg, recs)])
        snap = await read_many(redis_backend, cfg, "all", ["c", "nobody", "d", "b"])
        assert snap.version == 4 and snap.count == 4
        rows = [(r["rank"], r["participant_id"], r["score"]) for r in snap.entries]
        assert rows == [(1, "b", 9), (2, "d", 9), (3, "c", 7)]
    finally:
        await scrub(redis_backend, f"lb:{{{board}}}*")
