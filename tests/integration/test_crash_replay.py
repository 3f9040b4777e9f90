"""Crash the projector with SIGKILL mid-stream; live state must equal a clean pass and a replay."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
import uuid
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from processors.bootstrap import get_codec
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import replay_board
from projections.store import RankingStore
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)
from streams.model import ModelBoard
from streams.rules import standings_checksum
from streams.testing import fold_log
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration

HOUR = 3_600_000
START = 1_793_491_200_000 - 40 * HOUR  # 2026-10-30 08:00 UTC: the stream crosses a month end


def boards(tag: str) -> list[LeaderboardConfigured]:
    return [
        # a backfill board, ranked by the claimed times: its stream crosses a month end
        LeaderboardConfigured(
            f"{tag}-incr",
            SortOrder.DESC,
            Operator.INCR,
            ResetPeriod.MONTHLY,
            time_source=TimeSource.CLIENT,
        ),
        LeaderboardConfigured(f"{tag}-best", SortOrder.DESC, Operator.BEST, ResetPeriod.NONE),
        LeaderboardConfigured(f"{tag}-lap", SortOrder.ASC, Operator.BEST, ResetPeriod.DAILY),
    ]


def produce_stream(
    p: Pipeline, cfgs: list[LeaderboardConfigured], n: int, seed: int, pause: float = 0.02
) -> None:
    rng = random.Random(seed)
    with LeaderboardProducer(p.settings) as prod:
        t = START
        for i in range(n):
            cfg = rng.choice(cfgs)
            t += rng.randint(0, 60_000)
            entries = tuple(
                ScoreEntry(f"p{rng.randint(0, 40)}", rng.randint(1, 1000))
                for _ in range(rng.randint(1, 4))
            )
            prod.submit(
                MatchResultSubmitted(uuid.uuid4().hex, f"m{i}", cfg.leaderboard_id, t, entries)
            )
            if i % 50 == 0:
                prod.flush()
                time.sleep(pause)


def expected(p: Pipeline, cfgs: list[LeaderboardConfigured]) -> dict[str, ModelBoard]:
    log = read_to_end(p.settings, p.settings.topic("scores"))
    s = p.settings
    return fold_log(cfgs, log, get_codec(s), s.partitions, s.period_grace_ms)


async def live_state(p: Pipeline, cfg: LeaderboardConfigured) -> tuple[int, dict[str, str]]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    store = RankingStore(client)
    out = {}
    for period in await store.periods(cfg.leaderboard_id):
        out[period] = (await store.checksum(cfg.leaderboard_id, period, cfg.sort_order))[0]
    v = await store.version(cfg.leaderboard_id)
    await client.aclose()
    return v, out


def model_state(m: ModelBoard) -> tuple[int, dict[str, str]]:
    return m.version, {p: standings_checksum(m.standings(p)) for p in m.scores}


def test_sigkill_then_replay_matches_clean_pass(pipeline: Pipeline) -> None:
    tag = f"c{uuid.uuid4().hex[:6]}"
    cfgs = boards(tag)
    with LeaderboardProducer(pipeline.settings) as prod:
        for c in cfgs:
            prod.configure(c)
    worker = pipeline.start_worker()
    pipeline.start_worker("sinks")
    producer = threading.Thread(target=produce_stream, args=(pipeline, cfgs, 3000, 7))
    producer.start()
    rng = random.Random(11)
    kills = 0
    while producer.is_alive() or kills < 3:
        time.sleep(rng.uniform(1.0, 4.0))
        pipeline.kill(worker)
        kills += 1
        worker = pipeline.start_worker()
        if kills >= 6:
            break
    producer.join()
    models = expected(pipeline, cfgs)
    for cfg in cfgs:
        want = model_state(models[cfg.leaderboard_id])
        wait_until(
            lambda c=cfg, w=want: asyncio.run(live_state(pipeline, c))[0] == w[0], timeout=120
        )
        assert asyncio.run(live_state(pipeline, cfg)) == want, cfg.leaderboard_id

    # rank changes: every version of every board published at least once, none invented
    # (the live version moves at the Redis apply; the publish of that batch follows it)
    codec = get_codec(pipeline.settings)
    want_versions = {
        c.leaderboard_id: set(range(1, models[c.leaderboard_id].version + 1)) for c in cfgs
    }

    def published() -> dict[str, set[int]]:
        seen: dict[str, set[int]] = defaultdict(set)
        for msg in read_to_end(pipeline.settings, pipeline.settings.topic("rank-changes")):
            rc = codec.decode_as(msg.value(), RankChanged)
            seen[rc.leaderboard_id] |= {c.version for c in rc.changes}
        return seen

    def complete() -> bool:
        seen = published()
        return all(want_versions[b] <= seen[b] for b in want_versions)

    wait_until(complete, timeout=60, every=1.0)
    seen = published()
    for cfg in cfgs:
        assert seen[cfg.leaderboard_id] == want_versions[cfg.leaderboard_id]

    # replay from the log, and from the audit history, into shadow keys: identical to live
    for cfg in cfgs:
        report = asyncio.run(replay_board(pipeline.settings, cfg, verify=True))
        assert report.diffs and report.verified, report.diffs
        assert report.version == models[cfg.leaderboard_id].version
        n = models[cfg.leaderboard_id].version
        wait_until(
            lambda b=cfg.leaderboard_id, n=n: asyncio.run(audit_count(pipeline, b)) == n,
            timeout=120,
        )
        report = asyncio.run(replay_board(pipeline.settings, cfg, source="postgres", verify=True))
        assert report.diffs and report.verified, report.diffs


async def audit_count(p: Pipeline, board: str) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(p.settings.postgres_dsn) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM score_audit WHERE leaderboard_id = %s", [board]
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


def test_rebalance_audit_and_postgres_replay(pipeline: Pipeline) -> None:
    """Two workers share the partitions; one leaves mid-stream; a sinks worker writes the audit."""
    tag = f"r{uuid.uuid4().hex[:6]}"
    cfgs = boards(tag)
    with LeaderboardProducer(pipeline.settings) as prod:
        for c in cfgs:
            prod.configure(c)
    first = pipeline.start_worker()
    second = pipeline.start_worker()
    pipeline.start_worker("sinks")
    producer = threading.Thread(target=produce_stream, args=(pipeline, cfgs, 1500, 3, 0.3))
    producer.start()
    time.sleep(5)
    assert producer.is_alive(), "the stream should still be flowing when a worker leaves"
    pipeline.kill(second, signal.SIGTERM)
    producer.join()
    models = expected(pipeline, cfgs)
    for cfg in cfgs:
        want = model_state(models[cfg.leaderboard_id])
        wait_until(
            lambda c=cfg, w=want: asyncio.run(live_state(pipeline, c))[0] == w[0], timeout=120
        )
        assert asyncio.run(live_state(pipeline, cfg)) == want, cfg.leaderboard_id
        # the audit history holds every applied entry exactly once
        n = models[cfg.leaderboard_id].version
        wait_until(
            lambda b=cfg.leaderboard_id, n=n: asyncio.run(audit_count(pipeline, b)) == n,
            timeout=120,
        )
        report = asyncio.run(replay_board(pipeline.settings, cfg, source="postgres", verify=True))
        assert report.diffs and report.verified, report.diffs
    assert first.poll() is None


def test_swap_under_live_traffic(pipeline: Pipeline) -> None:
    """A --swap rebuild while scores keep flowing ends equal to a clean pass of the whole log."""
    tag = f"s{uuid.uuid4().hex[:6]}"
    cfgs = boards(tag)[:1]
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfgs[0])
    pipeline.start_worker()
    produce_stream(pipeline, cfgs, 600, 5)
    traffic = threading.Thread(target=produce_stream, args=(pipeline, cfgs, 600, 6))
    traffic.start()
    report = asyncio.run(replay_board(pipeline.settings, cfgs[0], swap=True))
    assert report.swapped
    traffic.join()
    model = expected(pipeline, cfgs)[cfgs[0].leaderboard_id]
    want = model_state(model)
    wait_until(lambda: asyncio.run(live_state(pipeline, cfgs[0]))[0] == want[0], timeout=120)
    assert asyncio.run(live_state(pipeline, cfgs[0])) == want
