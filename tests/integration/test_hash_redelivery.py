"""A hash-sharded board's record applied again keeps the versions it was first given.

A hash board's versions count every shard's changes; a shard without a change in a batch gave
its current version, which had moved on when later batches were applied before the batch came
again (redelivered after a projector crash, or applied by a rebuild before the live projector):
the batch's rank changes were published again under later records' versions (the sharded fault
scenario's 8 duplicated and 8 missing versions).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from projections.keys import BoardKeys
from projections.layout import ShardLayout
from projections.redis_client import RedisClient
from projections.sharded import ShardedStore
from projections.store import RankingStore, SourceRecord
from streams.events import LeaderboardConfigured, MatchResultSubmitted, ScoreEntry
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)
from tests.integration.test_store_contract import BASE, DAY

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(redis_backend: RedisClient) -> AsyncIterator[ShardedStore]:  # noqa: F811
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield ShardedStore(RankingStore(redis_backend, prefix=prefix, grace_ms=DAY))
    await scrub(redis_backend, f"{prefix}:*")


def _homed(layout: ShardLayout, shard: int, n: int) -> list[str]:
    found: list[str] = []
    i = 0
    while len(found) < n:
        pid = f"p{i}"
        if layout.home(pid) == shard:
            found.append(pid)
        i += 1
    return found


async def test_a_batch_redelivered_after_later_batches_keeps_its_versions(
    store: ShardedStore,
) -> None:
    """Records of shard 0, then records of shard 1, then the first ones again: same versions,
    and what keeps them is dropped with the outbox once they are acknowledged."""
    layout = ShardLayout.parse("hash:3")
    cfg = LeaderboardConfigured("hb", metadata={"shards": "hash:3"})
    on0, on1 = _homed(layout, 0, 2), _homed(layout, 1, 3)

    def rec(offset: int, pid: str) -> SourceRecord:
        ev = MatchResultSubmitted(
            f"e{offset}", f"m{offset}", "hb", BASE + offset * 1000, (ScoreEntry(pid, offset + 1),)
        )
        return SourceRecord(0, offset, ev)

    first = [rec(0, on0[0]), rec(1, on0[1])]  # shard 0 only
    later = [rec(2 + i, pid) for i, pid in enumerate(on1)]  # shard 1 only
    a = await store.apply([(cfg, first)])
    b = await store.apply([(cfg, later)])
    again = await store.apply([(cfg, first)])  # redelivered after a crash: kept results
    assert [c.version for c in a[0].changes] == [1, 2]
    assert [c.version for c in b[0].changes] == [3, 4, 5]
    assert [c.version for c in again[0].changes] == [1, 2]
    bases = BoardKeys(layout.shard_ids("hb")[0], store.prefix).bases
    assert await store.client.hlen(bases) == 5
    await store.acknowledge([*again, *b])
    assert await store.client.hlen(bases) == 0
