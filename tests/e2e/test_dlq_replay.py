"""``dlq replay`` against the real stack: a record dead-lettered for an unknown board applies
once the board exists, and replaying it again changes nothing (the event id is known)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from processors.cli import cli
from processors.kafka.producer import LeaderboardProducer, read_to_end
from projections.store import RankingStore
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings, get_settings
from tests.integration.conftest import Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def pipeline(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A namespace with a projector worker, seen by the CLI through the environment."""
    p = Pipeline(stack, f"r{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("LEADERBOARD_TOPIC_PREFIX", p.settings.topic_prefix)
    monkeypatch.setenv("LEADERBOARD_PARTITIONS", str(p.settings.partitions))
    get_settings.cache_clear()
    try:
        p.start_worker()
        yield p
    finally:
        p.stop_all()
        get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    """Exit code and output of one CLI command."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return 1, f"{result.output}error: {result.exception}"
    return result.exit_code, result.output


def _match(board: str, pid: str, score: int) -> MatchResultSubmitted:
    return MatchResultSubmitted(
        uuid.uuid4().hex,
        f"m-{uuid.uuid4().hex[:6]}",
        board,
        int(time.time() * 1000),
        (ScoreEntry(pid, score),),
    )


def _version(settings: Settings, board: str) -> int:
    async def read() -> int:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await RankingStore(client).version(board)
        finally:
            await client.aclose()

    return asyncio.run(read())


def _count(settings: Settings, topic: str) -> int:
    return sum(1 for _ in read_to_end(settings, topic))


def _reasons(settings: Settings) -> list[str]:
    out = []
    for msg in read_to_end(settings, settings.dlq("scores")):
        headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
        out.append(headers["reason"])
    return out


def test_replay_applies_after_the_fix_and_twice_applies_once(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    board = f"late-{uuid.uuid4().hex[:6]}"
    scores = settings.topic("scores")
    with LeaderboardProducer(settings) as producer:
        producer.submit(_match(board, "alice", 42))
        producer.flush()
    wait_until(lambda: any("unknown leaderboard" in r for r in _reasons(settings)), 90)

    before = _count(settings, scores)
    code, out = run("dlq", "replay", "--dry-run")
    assert code == 0, out
    assert "1 matching dead letter(s)" in out and "would re-publish 1, skipped 0" in out, out
    assert _count(settings, scores) == before, "--dry-run must publish nothing"
    code, out = run("dlq", "replay", "--reason", "no such reason")
    assert code == 0 and "0 matching dead letter(s)" in out and "re-published 0" in out, out

    # the fix: the board is created; a first score proves the projector knows it
    with LeaderboardProducer(settings) as producer:
        producer.configure(LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST))
        producer.flush()
        producer.submit(_match(board, "bob", 7))
        producer.flush()
    wait_until(lambda: _version(settings, board) >= 1, 90)
    assert _version(settings, board) == 1

    code, out = run("dlq", "replay", "--reason", "unknown leaderboard", "--board", board)
    assert code == 0 and "re-published 1, skipped 0" in out, out
    assert _count(settings, scores) == before + 2  # bob's score and the replayed record
    wait_until(lambda: _version(settings, board) >= 2, 60)

    # again: re-published, but the projector knows its event id and applies nothing
    code, out = run("dlq", "replay", "--board", board)
    assert code == 0 and "re-published 1, skipped 0" in out, out
    wait_until(lambda: any("duplicate event id" in r for r in _reasons(settings)), 60)
    assert _version(settings, board) == 2
    # a third run skips the duplicate's dead letter: it can never apply
    code, out = run("dlq", "replay", "--board", board, "--dry-run")
    assert code == 0 and "2 matching" in out and "would re-publish 1, skipped 1" in out, out
