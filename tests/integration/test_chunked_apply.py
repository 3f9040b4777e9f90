"""A backlog of coalesced single scores on the real stack: batches far bigger than one apply call
are applied in several calls, every submission once, with contiguous versions and an empty
outbox, and the board equals a replay of its log."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from processors.bootstrap import get_codec, sync_redis
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import replay_board
from processors.workers.projector import APPLY_CHUNK_ENTRIES
from projections.keys import BoardKeys
from streams.events import LeaderboardConfigured, Operator, RankChanged, SortOrder
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration

#: Three apply calls at least, even if the whole backlog arrives as one batch.
BACKLOG = 3 * APPLY_CHUNK_ENTRIES


def test_a_coalesced_backlog_is_applied_in_calls_with_contiguous_versions(
    pipeline: Pipeline,
) -> None:
    board = f"ch-{uuid.uuid4().hex[:8]}"
    cfg = LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST)
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfg)
        with prod.coalescer(max_submissions=100) as co:
            for i in range(BACKLOG):
                co.submit_score(board, f"p{i % 2500}", (i * 7919) % 100_000)
        prod.flush(60)
    r = sync_redis(url=pipeline.settings.redis_url)
    keys = BoardKeys(board)
    calls_before = _evalsha_calls(r)
    pipeline.start_worker()

    wait_until(lambda: int(r.hget(keys.state, "ver") or 0) == BACKLOG, timeout=180)
    # each call's outbox entries go once its rank changes are acknowledged by Kafka
    wait_until(lambda: r.hlen(keys.outbox) == 0, timeout=30)
    assert _evalsha_calls(r) - calls_before >= 3

    codec = get_codec(pipeline.settings)
    versions: list[int] = []
    for msg in read_to_end(pipeline.settings, pipeline.settings.topic("rank-changes")):
        rc = codec.decode_as(msg.value(), RankChanged)
        if rc.leaderboard_id == board:
            assert [c.version for c in rc.changes] == list(
                range(rc.version_from, rc.version_to + 1)
            )
            versions += [c.version for c in rc.changes]
    assert versions == list(range(1, BACKLOG + 1))
    report = asyncio.run(replay_board(pipeline.settings, cfg, verify=True))
    assert report.verified and report.version == BACKLOG, report.diffs
    r.close()


def _evalsha_calls(r: object) -> int:
    stats = r.info("commandstats")  # type: ignore[attr-defined]
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
