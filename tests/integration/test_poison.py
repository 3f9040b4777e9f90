"""Poison input interleaved with good records: each bad one is dead-lettered with its reason, every
good one is applied, and the projector process neither dies nor restarts its agent."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from processors.bootstrap import get_codec, postgres
from processors.kafka.producer import LeaderboardProducer, read_to_end
from projections.store import RankingStore
from streams.codec import SINGLE_OBJECT_MARKER
from streams.events import (
    CLOCK_KEY,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    RankChange,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)
from streams.model import ModelBoard
from streams.partitioning import partition_for
from streams.rules import standings_checksum
from tests.integration.conftest import ARTIFACTS, Pipeline, wait_until

pytestmark = pytest.mark.integration

HOUR = 3_600_000
DAY = 24 * HOUR
START = 1_793_491_200_000 - 3 * DAY  # 2026-10-29 00:00 UTC


def _match(board: str, at: int, *entries: tuple[str, int], event_id: str | None = None):
    return MatchResultSubmitted(
        event_id or uuid.uuid4().hex,
        f"m-{uuid.uuid4().hex[:6]}",
        board,
        at,
        tuple(ScoreEntry(pid, score) for pid, score in entries),
    )


async def _live(p: Pipeline, cfg: LeaderboardConfigured) -> tuple[int, dict[str, str]]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        store = RankingStore(client)
        out = {}
        for period in await store.periods(cfg.leaderboard_id):
            out[period] = (await store.checksum(cfg.leaderboard_id, period, cfg.sort_order))[0]
        return await store.version(cfg.leaderboard_id), out
    finally:
        await client.aclose()


def test_poison_records_are_dead_lettered_and_good_ones_applied(pipeline: Pipeline) -> None:
    tag = f"z{uuid.uuid4().hex[:6]}"
    # backfill boards (ranked by the claimed times): the plan places records in past periods
    client = TimeSource.CLIENT
    daily = LeaderboardConfigured(
        f"{tag}-daily", SortOrder.DESC, Operator.BEST, ResetPeriod.DAILY, time_source=client
    )
    cup = LeaderboardConfigured(
        f"{tag}-cup",
        SortOrder.DESC,
        Operator.INCR,
        starts_at=START,
        ends_at=START + 2 * DAY,
        time_source=client,
    )
    cfgs = [daily, cup]
    codec = get_codec(pipeline.settings)
    scores = pipeline.settings.topic("scores")
    good = codec.encode(_match(daily.leaderboard_id, START, ("seed", 1)))
    body_start = len(SINGLE_OBJECT_MARKER) + 8
    dup_id = uuid.uuid4().hex
    grace = pipeline.settings.period_grace_ms

    # (key, value bytes, expected reason fragment or None for a good record, partition or None)
    plan: list[tuple[str | None, bytes, str | None, int | None]] = []

    def ok(board: str, at: int, *entries: tuple[str, int], event_id: str | None = None) -> None:
        value = codec.encode(_match(board, at, *entries, event_id=event_id))
        plan.append((board, value, None, None))

    def bad(key: str | None, value: bytes, reason: str, partition: int | None = None) -> None:
        plan.append((key, value, reason, partition))

    d, c = daily.leaderboard_id, cup.leaderboard_id
    ok(d, START + 1000, ("alice", 10), ("bob", 7))
    bad(d, os.urandom(64), "not an Avro single-object record")
    ok(c, START + 2000, ("alice", 5))
    bad(d, good[: body_start + 5], "truncated or malformed Avro body")
    ok(d, START + 3000, ("carol", 12))
    bad(d, SINGLE_OBJECT_MARKER + b"\x01" * 8 + good[body_start:], "unknown schema fingerprint")
    ok(c, START + 4000, ("bob", 3), event_id=dup_id)
    # a 200 KB participant id next to a good entry: the whole match is parked, nothing applied
    bad(
        d,
        codec.encode(_match(d, START + 5000, ("x" * 200_000, 1), ("dave", 9))),
        "participant_id longer than 128 characters",
    )
    bad(d, codec.encode(_match(d, START + 6000, ("erin", 2**53))), "outside the exact range")
    bad(
        f"{tag}-nope",
        codec.encode(_match(f"{tag}-nope", START, ("alice", 1))),
        "unknown leaderboard",
    )
    ok(c, START + 7000, ("carol", 4))
    bad(
        c, codec.encode(_match(c, START + 2 * DAY + 1, ("alice", 1))), "after the tournament window"
    )
    bad(c, codec.encode(_match(c, START - 1, ("alice", 1))), "before the tournament window")
    bad(
        c, codec.encode(_match(c, START + 8000, ("dave", 1), event_id=dup_id)), "duplicate event id"
    )
    # times the broker's append time (the log's own clock) or the accepted range refuse
    now = int(time.time() * 1000)
    bad(d, codec.encode(_match(d, now + 13 * HOUR, ("mallory", 99))), "ahead of the log's time")
    bad(d, codec.encode(_match(d, now // 1000, ("mallory", 99))), "looks like seconds")
    bad(d, codec.encode(_match(d, 253_402_214_400_000, ("mallory", 99))), "400000 is outside")
    # records replay would not find: another board's key, no key, another partitioner
    bad(c, codec.encode(_match(d, START + 8500, ("mallory", 99))), f"record key {c!r} is not")
    bad(None, codec.encode(_match(d, START + 8600, ("mallory", 99))), "record key None")
    wrong = (partition_for(d, pipeline.settings.partitions) + 1) % pipeline.settings.partitions
    bad(d, codec.encode(_match(d, START + 8700, ("mallory", 99))), "hashes to partition", wrong)
    # the daily period of START ends once an event at or after its end + grace is applied
    ok(d, START + DAY + grace + 1, ("alice", 1))
    bad(d, codec.encode(_match(d, START + 9000, ("frank", 99))), "is closed: late event")
    ok(d, START + DAY + grace + 2, ("bob", 20))
    ok(c, START + 9000, ("alice", 6))

    worker = pipeline.start_worker()
    with LeaderboardProducer(pipeline.settings) as prod:
        for cfg in cfgs:
            prod.configure(cfg)
        prod.flush()
        for key, value, _, partition in plan:
            prod.publish_raw(scores, key, value, partition=partition)

    # the reference: a clean pass of the log through the model (undecodable records skipped)
    models = {cfg.leaderboard_id: ModelBoard(cfg, grace_ms=grace) for cfg in cfgs}
    log = [m for m in read_to_end(pipeline.settings, scores) if m.key() != CLOCK_KEY]
    assert len(log) == len(plan)
    by_board: dict[str, list] = defaultdict(list)
    for msg in log:
        try:
            ev = codec.decode_as(msg.value(), MatchResultSubmitted)
        except Exception:
            continue
        home = partition_for(ev.leaderboard_id, pipeline.settings.partitions)
        placed = msg.key() == ev.leaderboard_id.encode() and msg.partition() == home
        if ev.leaderboard_id in models and placed:  # as replay reads the log
            broker_time = msg.timestamp()[1]
            by_board[ev.leaderboard_id].append((msg.partition(), msg.offset(), ev, broker_time))
    for board, recs in by_board.items():
        for _, off, ev, broker_time in sorted(recs, key=lambda r: (r[0], r[1])):
            models[board].apply(off, ev, broker_time)

    # every bad record is dead-lettered once, with its reason and its source position
    n_bad = sum(1 for _, _, reason, _ in plan if reason)
    dlq_topic = pipeline.settings.dlq("scores")
    wait_until(lambda: sum(1 for _ in read_to_end(pipeline.settings, dlq_topic)) >= n_bad, 90)
    parked = {}
    for msg in read_to_end(pipeline.settings, dlq_topic):
        h = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
        assert h["source.topic"] == scores
        parked[(int(h["source.partition"]), int(h["source.offset"]))] = (h["reason"], msg.value())
    positions = {(m.partition(), m.offset()): m.value() for m in log}
    assert len(parked) == n_bad, sorted(r for r, _ in parked.values())
    expected_reasons = sorted(reason for _, _, reason, _ in plan if reason)
    for reason in expected_reasons:
        hits = [pos for pos, (got, _) in parked.items() if reason in got]
        assert len(hits) == 1, (reason, sorted(r for r, _ in parked.values()))
        assert parked[hits[0]][1] == positions[hits[0]], "dead letter bytes must be unchanged"

    # every good entry is applied: live standings equal the model
    for cfg in cfgs:
        m = models[cfg.leaderboard_id]
        want = (m.version, {p: standings_checksum(m.standings(p)) for p in m.scores})
        wait_until(lambda c=cfg, w=want: asyncio.run(_live(pipeline, c))[0] >= w[0], 60)
        assert asyncio.run(_live(pipeline, cfg)) == want, cfg.leaderboard_id
    assert models[d].version == 5  # alice, bob, carol, alice, bob (a bad entry voids its match)
    assert models[c].version == 4

    # the worker never restarted: same process alive, its agent never crashed
    assert worker.poll() is None, "the projector process died"
    assert worker.pid == pipeline.procs[0].pid
    text = (ARTIFACTS / f"{pipeline.tag}-projector-0.log").read_text(errors="replace")
    assert "Crashed reason" not in text and "Restarting dead" not in text, "the agent crashed"


def _change(board: str, version: int, pid: str, at: int) -> RankChanged:
    change = RankChange(
        version, "all", pid, None, 1, None, 5, 5, "best", f"ev-{version}", "m", 0, at, 0, version
    )
    return RankChanged(board, version, version, (change,))


def test_sinks_worker_dead_letters_a_record_it_can_never_write(pipeline: Pipeline) -> None:
    """A rank change whose audit row cannot exist (year 9999: its next month has no date) is
    parked with the error as its reason; the sinks worker goes on with the next record."""
    board = f"z{uuid.uuid4().hex[:6]}-sink"
    rank_topic = pipeline.settings.topic(pipeline.settings.rank_changes_topic)
    worker = pipeline.start_worker("sinks")
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST))
        prod.publish(rank_topic, board, _change(board, 1, "doomed", 253_402_214_400_000))
        prod.publish(rank_topic, board, _change(board, 2, "fine", START))
        prod.flush()

    def audited() -> object:
        with postgres(pipeline.settings) as conn:
            row = conn.execute(
                "SELECT string_agg(participant_id, ',') FROM score_audit WHERE leaderboard_id = %s",
                (board,),
            ).fetchone()
        return row[0] if row else None

    assert wait_until(audited, 90) == "fine"
    dlq = pipeline.settings.dlq(pipeline.settings.rank_changes_topic)
    parked = wait_until(lambda: list(read_to_end(pipeline.settings, dlq)), 60)
    assert len(parked) == 1
    headers = {k: (v or b"").decode() for k, v in parked[0].headers() or []}
    assert headers["reason"].startswith("ValueError: year 10000 is out of range")
    assert worker.poll() is None, "the sinks worker died"


def test_workers_export_prometheus_metrics(pipeline: Pipeline) -> None:
    """A worker with LEADERBOARD_WORKER_METRICS_PORT serves records, applied entries, batch
    time and dead letters by reason kind."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    board = f"z{uuid.uuid4().hex[:6]}-metrics"
    cfg = LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST)
    pipeline.start_worker(LEADERBOARD_WORKER_METRICS_PORT=str(port))
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfg)
        prod.flush()
        for i in range(3):
            prod.submit(_match(board, START + i, (f"p{i}", i), event_id=f"ev{i}"))
        prod.submit(_match(board, START + 9, ("p9", 9), event_id="ev0"))  # a duplicate
        prod.flush()

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return ""

    applied = 'leaderboard_worker_entries_applied_total{role="projector"} 3.0'
    wait_until(lambda: applied in scrape(), 90)
    text = scrape()
    assert 'leaderboard_worker_dead_letters_total{reason="duplicate",role="projector"} 1.0' in text
    assert 'leaderboard_worker_records_total{role="projector"} 4.0' in text
    assert 'leaderboard_worker_batch_seconds_count{role="projector"}' in text
