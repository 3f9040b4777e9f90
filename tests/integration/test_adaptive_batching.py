"""Batch sizing in the live projector: a lone record is applied at once, a backlog in large
batches (``processors.workers.lean.take_batches``)."""

from __future__ import annotations

import time
import uuid

import pytest

from processors.bootstrap import sync_redis
from processors.kafka.producer import LeaderboardProducer, read_to_end
from projections.keys import BoardKeys
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration

BACKLOG = 3_000


def one(board: str, i: int) -> MatchResultSubmitted:
    eid = uuid.uuid4().hex
    return MatchResultSubmitted(eid, eid, board, int(time.time() * 1000), (ScoreEntry(f"p{i}", i),))


def test_lone_records_are_applied_at_once_and_a_backlog_in_large_batches(
    pipeline: Pipeline,
) -> None:
    board = f"ab-{uuid.uuid4().hex[:6]}"
    r = sync_redis(url=pipeline.settings.redis_url)

    def version() -> int:
        return int(r.hget(BoardKeys(board).state, "ver") or 0)

    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(
            LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST, ResetPeriod.NONE)
        )
        for i in range(BACKLOG):
            prod.submit(one(board, i))
    # A 30 s window: only a batch that is taken when the stream goes quiet can be fast here.
    pipeline.start_worker(LEADERBOARD_BATCH_WITHIN="30")
    wait_until(lambda: version() == BACKLOG, timeout=120)
    records = sum(
        1
        for m in read_to_end(pipeline.settings, pipeline.settings.topic("rank-changes"))
        if m.key() == board.encode()
    )
    assert records <= BACKLOG // 20, f"{records} rank-change records: batches did not grow"

    with LeaderboardProducer(pipeline.settings) as prod:
        for k in range(1, 4):
            t0 = time.monotonic()
            prod.submit(one(board, BACKLOG + k))
            prod.flush()
            wait_until(lambda k=k: version() == BACKLOG + k, timeout=60, every=0.01)
            assert time.monotonic() - t0 < 5, "a lone record waited for the batch window"
    r.close()
