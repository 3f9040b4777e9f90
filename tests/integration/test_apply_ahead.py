"""Deferred batches keep Redis busy: each apply call is sent while the one before is still
settled, and none is sent after one that failed (it would move a board's watermark past the
failed call's records, which would then never apply)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest

from processors.bootstrap import get_codec, make_client
from processors.workers.projector import APPLY_CHUNK_ENTRIES, Projector, RawRecord
from projections.redis_client import RedisClient
from projections.scripts import ProjectionLost
from projections.store import RankingStore
from streams.errors import ServiceUnavailable
from streams.events import LeaderboardConfigured, MatchResultSubmitted, ScoreEntry
from streams.partitioning import partition_for
from streams.settings import Settings
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)

pytestmark = pytest.mark.integration

BOARDS = ("ahead-a", "ahead-b")
#: records per batch: two apply calls of each batch (10 entries a record)
BATCH = APPLY_CHUNK_ENTRIES // 10 + 50


def _batches(settings: Settings, count: int) -> list[list[RawRecord]]:
    """``count`` batches of 10-entry matches over ``BOARDS``, placed as Kafka would."""
    codec = get_codec(settings)
    rng = random.Random(3)
    offsets: dict[int, int] = {}
    raws: list[RawRecord] = []
    t = 1_700_000_000_000
    for i in range(count * BATCH):
        board = BOARDS[i % len(BOARDS)]
        entries = tuple(
            ScoreEntry(f"p{rng.randrange(3000)}", rng.randrange(10**6)) for _ in range(10)
        )
        ev = MatchResultSubmitted(uuid.uuid4().hex, f"m{i}", board, t + i, entries)
        part = partition_for(board, settings.partitions)
        offsets[part] = offsets.get(part, -1) + 1
        raws.append(RawRecord(part, offsets[part], board.encode(), codec.encode(ev), t + i))
    return [raws[i : i + BATCH] for i in range(0, len(raws), BATCH)]


def _projector(settings: Settings, store: RankingStore) -> Projector:
    configs = {b: LeaderboardConfigured(b, watch_top_n=10) for b in BOARDS}
    return Projector(settings, store, configs.get, get_codec(settings), None)


async def _standings(store: RankingStore) -> list[object]:
    return [
        await store.top(b, "all", LeaderboardConfigured(b).sort_order, limit=5000) for b in BOARDS
    ]


@pytest.fixture
async def stores(
    redis_backend: RedisClient,  # noqa: F811
) -> AsyncIterator[tuple[RankingStore, RankingStore]]:
    """Two stores of the parametrized backend: one for the overlapped run, one for the
    reference run (batch after batch)."""
    tag = f"ah{uuid.uuid4().hex[:8]}"
    yield (
        RankingStore(redis_backend, prefix=f"{tag}x"),
        RankingStore(redis_backend, prefix=f"{tag}y"),
    )
    await scrub(redis_backend, f"{tag}*")


@pytest.fixture
async def guarded(stack: Settings) -> AsyncIterator[tuple[RankingStore, RankingStore]]:
    """As ``stores`` on the single node, the first store's calls checking a projection
    marker inside the script (as the live projector's do there)."""
    client = make_client(stack)
    tag = f"ah{uuid.uuid4().hex[:8]}"
    guard = f"{tag}:epoch"
    await client.set(guard, "1")
    yield (
        RankingStore(client, prefix=f"{tag}x", guard_key=guard),
        RankingStore(client, prefix=f"{tag}y"),
    )
    await scrub(client, f"{tag}*")
    await client.aclose()


async def test_deferred_batches_overlap_and_end_as_one_batch_after_the_other(
    redis_settings: Settings,  # noqa: F811
    stores: tuple[RankingStore, RankingStore],
) -> None:
    ahead, plain = stores
    batches = _batches(redis_settings, 3)
    overlapped, sequential = _projector(redis_settings, ahead), _projector(redis_settings, plain)
    finishes = []
    for batch in batches:
        stats = await overlapped.process(batch, defer=True)
        assert stats.finish is not None
        finishes.append(stats.finish)
    # every batch's calls were sent before any outcome was read: the last is still pending
    assert overlapped._inflight is not None
    applied = 0
    for finish in finishes:
        await finish()
    for batch in batches:
        applied += (await sequential.process(batch)).entries_applied
    assert applied == 3 * BATCH * 10
    assert await _standings(ahead) == await _standings(plain)
    for b in BOARDS:  # every outbox cleared by its batch's finish
        assert await ahead.client.hlen(ahead.keys(b).outbox) == 0


async def test_no_call_is_sent_after_one_that_failed(
    stack: Settings, guarded: tuple[RankingStore, RankingStore]
) -> None:
    """The first deferred batch's call fails (the projection marker is gone); once the
    marker is back, the next batch must not be sent ahead, or its records would move the
    boards past the first batch's, which would then never apply."""
    ahead, plain = guarded
    batch, second, third = _batches(stack, 3)
    first, rest = batch[:100], batch[100:]  # one apply call, then two
    proj, sequential = _projector(stack, ahead), _projector(stack, plain)
    assert ahead.guard_key is not None
    await ahead.client.delete(ahead.guard_key)
    stats = await proj.process(first, defer=True)
    assert stats.finish is not None
    await proj._after_inflight()  # Redis refused it (NOEPOCH)
    await ahead.client.set(ahead.guard_key, "1")

    with pytest.raises(ServiceUnavailable):
        await proj.process(rest, defer=True)
    assert await _versions(ahead) == [0, 0]  # nothing of either batch applied
    with pytest.raises(ProjectionLost):
        await stats.finish()

    # handled again in order, as the worker does (batching._consume_overlapped)
    for part in (first, rest, second):
        await proj.process(part)
        await sequential.process(part)
    assert await _standings(ahead) == await _standings(plain)
    assert await _versions(ahead) == await _versions(plain)
    # and the next deferred batch is sent ahead again
    later = await proj.process(third, defer=True)
    assert later.finish is not None
    await later.finish()
    await sequential.process(third)
    assert await _standings(ahead) == await _standings(plain)
    assert await _versions(ahead) == await _versions(plain)


async def test_a_batch_sends_no_call_after_its_own_failed_one(
    stack: Settings, guarded: tuple[RankingStore, RankingStore]
) -> None:
    """A batch of two calls whose first fails raises before it sends the second (handled
    again whole by the worker)."""
    ahead, _ = guarded
    (batch,) = _batches(stack, 1)
    proj = _projector(stack, ahead)
    assert ahead.guard_key is not None
    await ahead.client.delete(ahead.guard_key)
    calls = await _evalsha_calls(ahead.client)
    with pytest.raises(ServiceUnavailable):
        await proj.process(batch, defer=True)
    assert await _evalsha_calls(ahead.client) - calls == len(BOARDS)  # the first call only
    await ahead.client.set(ahead.guard_key, "1")


async def _evalsha_calls(client: RedisClient) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _versions(store: RankingStore) -> list[int]:
    found = [await store.client.hget(store.keys(b).state, "ver") for b in BOARDS]
    return [int(v or 0) for v in found]
