"""The Redis apply script and the reference model agree on random event sequences."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest

from projections.redis_client import RedisClient
from projections.store import RankingStore, SourceRecord
from streams import rules
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.model import ModelBoard
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)

pytestmark = pytest.mark.integration

DAY = 86_400_000
BASE = 1_793_491_200_000  # 2026-11-01T00:00:00Z


@pytest.fixture
async def store(redis_backend: RedisClient) -> AsyncIterator[RankingStore]:  # noqa: F811
    """A store on a fresh prefix, once on the single node and once on the cluster."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield RankingStore(redis_backend, prefix=prefix, grace_ms=DAY)
    await scrub(redis_backend, f"{prefix}:*")


def random_records(rng: random.Random, board: str, n: int) -> list[SourceRecord]:
    players = [f"p{i}" for i in range(12)]
    out = []
    t = BASE + 20 * DAY
    for offset in range(n):
        t += rng.choice([0, 0, 1, 1000, DAY // 2])
        if rng.random() < 0.05:
            t -= 3 * DAY  # out-of-order event time, may be late for a closed period
        entries = tuple(
            ScoreEntry(
                rng.choice(players),
                rng.choice([rng.randint(-5, 5), rng.randint(-1000, 1000), 2**53 - 2]),
                rng.choice([None, None, Operator.SET, Operator.INCR, Operator.DECR]),
            )
            for _ in range(rng.randint(1, 3))
        )
        eid = f"e{rng.randint(0, n * 2)}"  # some duplicates
        out.append(SourceRecord(0, offset, MatchResultSubmitted(eid, "m", board, t, entries)))
    return out


@pytest.mark.parametrize("sort", [SortOrder.DESC, SortOrder.ASC])
@pytest.mark.parametrize(
    "reset,operator",
    [
        (ResetPeriod.NONE, Operator.BEST),
        (ResetPeriod.MONTHLY, Operator.INCR),
        (ResetPeriod.DAILY, Operator.SET),
        (ResetPeriod.WEEKLY, Operator.BEST),
    ],
)
async def test_store_matches_model(
    store: RankingStore, sort: SortOrder, reset: ResetPeriod, operator: Operator
) -> None:
    rng = random.Random(f"{sort}{reset}{operator}")
    cfg = LeaderboardConfigured("board", sort_order=sort, operator=operator, reset_period=reset)
    model = ModelBoard(cfg, grace_ms=DAY)
    records = random_records(rng, "board", 400)
    rejected_model = 0
    for rec in records:
        rejected_model += bool(model.apply(rec.offset, rec.event))

    async def run() -> tuple[dict[str, list[tuple[int, str, int]]], int, int]:
        i = 0
        rejected = 0
        while i < len(records):
            size = rng.randint(1, 50)
            chunk = records[i : i + size]
            outs = await store.apply([(cfg, chunk)])
            # redelivery of the same chunk changes nothing
            again = await store.apply([(cfg, chunk)])
            assert [c.version for c in again[0].changes] == [c.version for c in outs[0].changes]
            await store.acknowledge(outs)
            assert (await store.apply([(cfg, chunk)]))[0].changes == []
            rejected += len({r.offset for r in outs[0].rejections})
            i += size
        periods = await store.periods("board")
        standings = {
            p: [
                (e.rank, e.participant_id, e.score) for e in await store.standings("board", p, sort)
            ]
            for p in periods
        }
        return standings, await store.version("board"), rejected

    standings, version, rejected = await run()
    assert set(standings) == set(model.scores)
    for period, rows in standings.items():
        assert rows == model.standings(period), period
    assert version == model.version
    assert rejected == rejected_model
    assert rules.standings_checksum(next(iter(standings.values()))) != ""


async def test_swap_and_clear_on_each_backend(redis_backend: RedisClient) -> None:  # noqa: F811
    """The rebuild path (shadow apply, SCAN for keys, swap script, clear) works on both."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    live = RankingStore(redis_backend, prefix=prefix, grace_ms=DAY)
    shadow = RankingStore(redis_backend, prefix=prefix + "r", grace_ms=DAY)
    cfg = LeaderboardConfigured("swapped", reset_period=ResetPeriod.MONTHLY)
    records = random_records(random.Random(7), "swapped", 60)
    await live.apply([(cfg, records[:30])])
    await shadow.apply([(cfg, records)])
    try:
        assert await live.swap_from(shadow, "swapped", 0)
        assert await shadow.board_keys("swapped") == []
        periods = await live.periods("swapped")
        assert periods and await live.version("swapped") > 0
        assert await live.clear("swapped") > 0
        assert await live.periods("swapped") == []
    finally:
        await scrub(redis_backend, f"{prefix}*")
