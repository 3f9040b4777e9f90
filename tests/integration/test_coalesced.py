"""Coalesced score records (``ScoresSubmitted``) through the real projector, sinks and replay:
each submission is applied, deduplicated, refused and dead-lettered on its own, at its own
position (offset, index), and the board replays identically from the log and the audit."""

from __future__ import annotations

import asyncio
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
    ScoresSubmitted,
    ScoreSubmission,
    SortOrder,
)
from tests.integration.conftest import Pipeline, wait_until
from tests.integration.test_crash_replay import audit_count

pytestmark = pytest.mark.integration


def _sub(pid: str, score: int, *, event_id: str | None = None, at: int | None = None):
    return ScoreSubmission(
        event_id or uuid.uuid4().hex,
        "m",
        at if at is not None else int(time.time() * 1000),
        pid,
        score,
    )


async def _rows(p: Pipeline, board: str) -> tuple[int, list[tuple[int, str, int]]]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        store = RankingStore(client)
        rows = await store.standings(board, "all", SortOrder.DESC)
        return await store.version(board), [(e.rank, e.participant_id, e.score) for e in rows]
    finally:
        await client.aclose()


def _dead_letters(p: Pipeline, board: str) -> list[tuple[dict[str, str], bytes]]:
    out = []
    for msg in read_to_end(p.settings, p.settings.dlq("scores")):
        if msg.key() == board.encode():
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            out.append((headers, msg.value()))
    return out


def _changes(p: Pipeline, board: str) -> list[tuple[int, str, int, str]]:
    codec = get_codec(p.settings)
    found = []
    for msg in read_to_end(p.settings, p.settings.topic("rank-changes")):
        rc = codec.decode_as(msg.value(), RankChanged)
        if rc.leaderboard_id == board:
            found += [
                (c.source_offset, c.participant_id, c.entry_index, c.event_id) for c in rc.changes
            ]
    return found


def test_each_submission_of_a_coalesced_record_stands_on_its_own(pipeline: Pipeline) -> None:
    board = f"co-{uuid.uuid4().hex[:8]}"
    cfg = LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST)
    codec = get_codec(pipeline.settings)
    scores = pipeline.settings.topic("scores")
    first = (_sub("pa", 10), _sub("pd", 20), _sub("pc", 30), _sub("pa", 60), _sub("pb", 20))
    # a duplicate of first[0]'s event id, a score outside the exact range (refused by the apply
    # script), a claimed time 10 minutes ahead of the broker's (refused before it)
    second = (
        _sub("pe", 2**53),
        _sub("pf", 5),
        _sub("pz", 999, event_id=first[0].event_id),
        _sub("py", 1, at=int(time.time() * 1000) + 600_000),
        _sub("pg", 7),
    )
    a_bytes = codec.encode(ScoresSubmitted(board, first))
    sharded = LeaderboardConfigured(f"{board}-sh", metadata={"shards": "hash:2"})
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfg)
        prod.configure(sharded)
        sub = ScoresSubmitted(sharded.leaderboard_id, (_sub("pa", 1), _sub("pb", 2)))
        prod.publish(scores, sharded.leaderboard_id, sub)
        prod.publish_raw(scores, board, a_bytes)
        prod.publish_raw(scores, board, a_bytes)  # a producer's resend: every id a duplicate
        prod.publish(scores, board, ScoresSubmitted(board, second))
    pipeline.start_worker()
    pipeline.start_worker("sinks")

    want = [(1, "pa", 60), (2, "pc", 30), (3, "pd", 20), (4, "pb", 20), (5, "pg", 7), (6, "pf", 5)]
    wait_until(lambda: asyncio.run(_rows(pipeline, board)) == (7, want), timeout=90)
    # pd and pb tie at 20 in one record: the earlier submission (index 1 < 4) ranks higher,
    # although pb would win the tie by participant id

    wait_until(lambda: len(_dead_letters(pipeline, board)) == 8, timeout=60)
    letters = _dead_letters(pipeline, board)
    by_offset: dict[str, dict[int, str]] = defaultdict(dict)
    for headers, value in letters:
        index = int(headers["source.index"])
        by_offset[headers["source.offset"]][index] = headers["reason"]
        # the value is the refused submission alone, as a one-entry match
        match = codec.decode_as(value, MatchResultSubmitted)
        assert len(match.entries) == 1 and match.leaderboard_id == board
    resend, refused = (by_offset[o] for o in sorted(by_offset, key=int))
    assert sorted(resend) == [0, 1, 2, 3, 4]
    assert all(r.startswith("duplicate event id") for r in resend.values()), resend
    assert sorted(refused) == [0, 2, 3]
    assert "exact range" in refused[0]
    assert refused[2] == f"duplicate event id {first[0].event_id}"
    assert "ahead of the log's time" in refused[3]

    # a sharded board takes no coalesced record: dead-lettered whole, with its reason
    wait_until(lambda: len(_dead_letters(pipeline, sharded.leaderboard_id)) == 1, timeout=60)
    ((headers, _),) = _dead_letters(pipeline, sharded.leaderboard_id)
    assert headers["reason"] == "coalesced submissions are not applied to sharded boards"
    assert "source.index" not in headers

    # rank changes: every applied submission under its own event id and index
    wait_until(lambda: len(_changes(pipeline, board)) == 7, timeout=60)
    changes = _changes(pipeline, board)
    offsets = sorted({c[0] for c in changes})
    assert len(offsets) == 2
    assert [(c[1], c[2], c[3]) for c in changes if c[0] == offsets[0]] == [
        (s.participant_id, i, s.event_id) for i, s in enumerate(first)
    ]
    assert [(c[1], c[2], c[3]) for c in changes if c[0] == offsets[1]] == [
        ("pf", 1, second[1].event_id),
        ("pg", 4, second[4].event_id),
    ]

    # the audit has each applied submission once; both replays rebuild the board identically
    wait_until(lambda: asyncio.run(audit_count(pipeline, board)) == 7, timeout=60)
    report = asyncio.run(replay_board(pipeline.settings, cfg, verify=True))
    assert report.verified and report.version == 7, report.diffs
    report = asyncio.run(replay_board(pipeline.settings, cfg, source="postgres", verify=True))
    assert report.verified and report.version == 7, report.diffs


def test_sdk_coalescer_and_kills_leave_state_equal_to_a_clean_replay(pipeline: Pipeline) -> None:
    """The SDK's coalescer feeds one board while the projector is killed repeatedly: the live
    board equals a replay of its log, and the audit holds every applied submission once."""
    board = f"ck-{uuid.uuid4().hex[:8]}"
    cfg = LeaderboardConfigured(board, SortOrder.DESC, Operator.INCR)
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfg)
    worker = pipeline.start_worker()
    pipeline.start_worker("sinks")
    n = 6000
    delivered: list[str | None] = []

    def produce() -> None:
        with (
            LeaderboardProducer(pipeline.settings) as prod,
            prod.coalescer(max_submissions=50, linger_ms=2) as co,
        ):
            for i in range(n):
                co.submit_score(board, f"p{i % 300}", i % 7, on_delivery=delivered.append)
                if i % 500 == 0:
                    time.sleep(0.2)

    thread = threading.Thread(target=produce)
    thread.start()
    kills = 0
    while thread.is_alive() and kills < 3:
        time.sleep(1.0)
        pipeline.kill(worker)
        kills += 1
        worker = pipeline.start_worker()
    thread.join()
    assert kills >= 1
    assert len(delivered) == n and set(delivered) == {None}

    codec = get_codec(pipeline.settings)
    kinds: dict[str, int] = defaultdict(int)
    for msg in read_to_end(pipeline.settings, pipeline.settings.topic("scores")):
        if msg.key() == board.encode():
            kinds[type(codec.decode(msg.value())).__name__] += 1
    assert kinds["ScoresSubmitted"] >= n // 50 - 20, kinds  # coalesced, 50 to a record mostly

    wait_until(lambda: asyncio.run(_rows(pipeline, board))[0] == n, timeout=180)
    wait_until(lambda: asyncio.run(audit_count(pipeline, board)) == n, timeout=120)
    report = asyncio.run(replay_board(pipeline.settings, cfg, verify=True))
    assert report.verified and report.version == n, report.diffs
    pipeline.kill(worker, signal.SIGTERM)
