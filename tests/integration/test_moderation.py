"""Moderation and tournament limits against the real stack: Kafka, the projector, Redis, the
sinks worker and PostgreSQL; moderation written by the CLI, replayed by ``replay --verify``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
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
    PeriodClosed,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)
from streams.testing import fold_log
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration

#: Matches of the void cases: m2 is voided; m3 comes after it and keeps its own result.
MATCHES = [
    ("m1", [("a", 10), ("b", 10), ("c", 7)]),
    ("m2", [("a", 50), ("c", 3), ("d", 9)]),
    ("m3", [("a", 20), ("b", 10), ("c", 1)]),
]


def submit(prod: LeaderboardProducer, board: str, event_id: str, *entries: tuple[str, int]) -> None:
    prod.submit(
        MatchResultSubmitted(
            event_id,
            event_id,
            board,
            _now(),
            tuple(ScoreEntry(pid, score) for pid, score in entries),
        )
    )
    prod.flush()


def _now() -> int:
    return int(time.time() * 1000)


def cli(p: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``leaderboard ARGS`` with the pipeline's settings."""
    return subprocess.run(
        [sys.executable, "-m", "processors", *args],
        env=p.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _rows(p: Pipeline, board: str) -> tuple[int, list[tuple[int, str, int]]]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    store = RankingStore(client)
    rows = await store.standings(board, "all", SortOrder.DESC)
    version = await store.version(board)
    await client.aclose()
    return version, [(e.rank, e.participant_id, e.score) for e in rows]


def rows(p: Pipeline, board: str) -> tuple[int, list[tuple[int, str, int]]]:
    return asyncio.run(_rows(p, board))


def dead_letters(p: Pipeline) -> list[dict[str, str]]:
    out = []
    for msg in read_to_end(p.settings, p.settings.dlq("scores")):
        out.append({k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []})
    return out


def audit(p: Pipeline, board: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(p.settings.postgres_dsn) as conn:
        return conn.execute(
            "SELECT operator, participant_id, event_id, match_id, new_rank FROM score_audit"
            " WHERE leaderboard_id = %s AND operator NOT IN ('best', 'set', 'incr', 'decr')"
            " ORDER BY version",
            [board],
        ).fetchall()


@pytest.mark.parametrize("operator", [Operator.INCR, Operator.BEST])
def test_void_remove_ban_then_replay_verifies(pipeline: Pipeline, operator: Operator) -> None:
    tag = f"mod{uuid.uuid4().hex[:6]}"
    board, clean = f"{tag}-voided", f"{tag}-clean"
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(LeaderboardConfigured(board, operator=operator, retain_entries=True))
        prod.configure(LeaderboardConfigured(clean, operator=operator))
        prod.flush()
    pipeline.start_worker()
    pipeline.start_worker("sinks")
    with LeaderboardProducer(pipeline.settings) as prod:
        for eid, entries in MATCHES:
            submit(prod, board, f"{tag}-{eid}", *entries)
            if eid != "m2":
                submit(prod, clean, f"{tag}-clean-{eid}", *entries)
    wait_until(lambda: rows(pipeline, board)[0] == 9 and rows(pipeline, clean)[0] == 6, 90)

    done = cli(
        pipeline, "moderate", "void", board, f"{tag}-m2", "--reason", "cheated", "--by", "ops-1"
    )
    assert done.returncode == 0, done.stderr
    # the voided board is the board that never had m2: scores, ranks and tie order
    wait_until(lambda: rows(pipeline, board)[0] == 12, 60)
    assert rows(pipeline, board)[1] == rows(pipeline, clean)[1]
    assert "d" not in {pid for _, pid, _ in rows(pipeline, board)[1]}

    done = cli(pipeline, "moderate", "remove", board, "b", "--reason", "smurf", "--by", "ops-1")
    assert done.returncode == 0, done.stderr
    done = cli(pipeline, "moderate", "ban", board, "c", "--reason", "bot", "--by", "ops-2")
    assert done.returncode == 0, done.stderr
    with LeaderboardProducer(pipeline.settings) as prod:
        submit(prod, board, f"{tag}-m4", ("c", 500), ("a", 1))  # refused whole: c is banned
        submit(prod, board, f"{tag}-m5", ("a", 1))
    wait_until(lambda: rows(pipeline, board)[0] == 14, 60)
    version, standings = rows(pipeline, board)
    assert [pid for _, pid, _ in standings] == ["a", "c"]
    banned = wait_until(
        lambda: [h for h in dead_letters(pipeline) if h["reason"].startswith("banned")], 60
    )
    assert banned[0]["reason"] == "banned: participant c is banned from this board"

    # bad operator input: one clear line and a non-zero exit
    bad = cli(pipeline, "moderate", "void", clean, "x", "--reason", "r")
    assert bad.returncode != 0 and "does not retain entries" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

    # audited: who and why, by the moderation's own event id
    def moderated() -> list[tuple[Any, ...]] | None:
        found = audit(pipeline, board)
        return found if len(found) == 4 else None

    kinds = wait_until(moderated, 90)
    assert [(k[0], k[1]) for k in kinds] == [
        ("match_voided", "a"),
        ("match_voided", "c"),
        ("match_voided", "d"),
        ("participant_removed", "b"),
    ]
    assert kinds[0][3] == "ops-1: cheated" and kinds[2][4] == 0

    # the reference model fed the same log agrees with live
    cfg = LeaderboardConfigured(board, operator=operator, retain_entries=True)
    s = pipeline.settings
    log = read_to_end(s, s.topic("scores"))
    model = fold_log([cfg], log, get_codec(s), s.partitions, s.period_grace_ms)[board]
    assert (model.version, model.standings("all")) == (version, standings)

    # replay from the log reproduces the moderated board, byte for byte
    report = asyncio.run(replay_board(pipeline.settings, cfg, verify=True))
    assert report.diffs and report.verified, report.diffs
    assert report.version == version


def test_tournament_limits_dead_letter_with_the_reason(pipeline: Pipeline) -> None:
    tag = f"lim{uuid.uuid4().hex[:6]}"
    board = f"{tag}-cup"
    cfg = LeaderboardConfigured(
        board, reset_period=ResetPeriod.DAILY, max_attempts=2, max_participants=2
    )
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfg)
        prod.flush()
    pipeline.start_worker()
    with LeaderboardProducer(pipeline.settings) as prod:
        submit(prod, board, f"{tag}-1", ("a", 1))
        submit(prod, board, f"{tag}-2", ("a", 2), ("b", 5))
        submit(prod, board, f"{tag}-3", ("a", 3))  # a's third attempt
        submit(prod, board, f"{tag}-4", ("c", 9))  # a third participant
        submit(prod, board, f"{tag}-5", ("b", 7))
    refused = wait_until(
        lambda: (
            [h["reason"] for h in dead_letters(pipeline)]
            if len(dead_letters(pipeline)) == 2
            else None
        ),
        90,
    )
    assert refused[0].startswith("max_attempts: participant a has used its 2 attempts")
    assert refused[1].startswith("max_participants: period ")
    assert "c is not admitted" in refused[1]
    report = asyncio.run(replay_board(pipeline.settings, cfg, verify=True))
    assert report.diffs and report.verified, report.diffs


def test_a_daily_reset_at_four_closes_each_instance(pipeline: Pipeline) -> None:
    """A recurring schedule: a daily board reset at 04:00 UTC (a backfill, ranked by the
    claimed times) closes the instance that started at 04:00 with its final standings in
    PostgreSQL (from 04:00 to 04:00) and a PeriodClosed."""
    hour = 3_600_000
    board = f"sched{uuid.uuid4().hex[:6]}"
    cfg = LeaderboardConfigured(
        board,
        reset_period=ResetPeriod.DAILY,
        reset_offset_ms=4 * hour,
        time_source=TimeSource.CLIENT,
    )
    s = pipeline.settings
    with LeaderboardProducer(s) as prod:
        prod.configure(cfg)
        prod.flush()
    pipeline.start_worker()
    pipeline.start_worker("sinks")
    day = 1_795_132_800_000  # 2026-11-20T00:00:00Z
    plan = [
        (day + 4 * hour - 1, "early", 50),  # 03:59:59.999: the instance of 11-19
        (day + 4 * hour, "ann", 10),  # 04:00: the instance of 11-20
        (day + 20 * hour, "bob", 20),
        (day + 28 * hour + s.period_grace_ms + 1, "cid", 5),  # ends the 11-20 instance
    ]
    with LeaderboardProducer(s) as prod:
        for i, (at, pid, score) in enumerate(plan):
            prod.submit(
                MatchResultSubmitted(f"{board}-{i}", "m", board, at, (ScoreEntry(pid, score),))
            )
        prod.flush()

    def closed() -> list[tuple[Any, ...]] | None:
        with psycopg.connect(s.postgres_dsn) as conn:
            found = conn.execute(
                "SELECT period, (extract(epoch from period_start) * 1000)::bigint,"
                " (extract(epoch from period_end) * 1000)::bigint, participant_count"
                " FROM closed_periods WHERE leaderboard_id = %s ORDER BY period",
                [board],
            ).fetchall()
        return found if len(found) == 2 else None

    rows_ = wait_until(closed, 90)
    assert rows_ == [
        ("2026-11-19", day - 20 * hour, day + 4 * hour, 1),
        ("2026-11-20", day + 4 * hour, day + 28 * hour, 2),
    ]
    codec = get_codec(s)
    periods = wait_until(
        lambda: [
            codec.decode_as(m.value(), PeriodClosed).period
            for m in read_to_end(s, s.topic(s.periods_topic))
            if m.key() == board.encode()
        ],
        30,
    )
    assert sorted(periods)[:2] == ["2026-11-19", "2026-11-20"]
