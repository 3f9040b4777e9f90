"""WebSocket fan-out of the rank feed against the real stack: the projector applies real
submissions from Kafka into Redis, the gateway's feed reads the real rank-change topic and
reads its snapshots from Redis. Subscribers' sockets are replaced by recording senders."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from processors.bootstrap import make_client, redis_at, sync_redis
from processors.gateway.feed import RankFeed, Subscriber
from processors.kafka.producer import LeaderboardProducer
from projections.keys import BoardKeys
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.integration


class Viewer:
    """A subscriber whose socket records the text it is sent (optionally held back)."""

    def __init__(
        self, feed: RankFeed, board: str, n: int, queue_size: int = 256, track: str | None = None
    ) -> None:
        mode = "top" if track is None else "track"
        self.sub = Subscriber(board, mode, n=n, participant_id=track, queue_size=queue_size)
        self.texts: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        feed.subscribe(self.sub)
        self.task = asyncio.create_task(feed.serve(self.sub, self.send))

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.texts.append(text)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.texts]

    def has(self, kind: str, pid: str | None = None) -> bool:
        for m in self.messages():
            if m["type"] != kind:
                continue
            rows = m.get("changes") or m.get("entries") or []
            if pid is None or any(r["participant_id"] == pid for r in rows):
                return True
        return False

    def delta_with(self, pid: str) -> str:
        """The text of the delta that carried ``pid``'s change."""
        return next(
            t
            for t in self.texts
            if (m := json.loads(t))["type"] == "delta"
            and any(c["participant_id"] == pid for c in m["changes"])
        )


async def until(check: Callable[[], bool], within_s: float = 60.0) -> None:
    """Wait (without blocking the loop) until ``check()`` holds; fail on time-out."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within_s}s")
        await asyncio.sleep(0.05)


async def start(
    pipeline: Pipeline, redis: Any = None
) -> tuple[str, LeaderboardProducer, RankFeed, Callable[[str, int], Awaitable[None]]]:
    """A board with one score applied, its projector, a started feed and a submit helper."""
    board = f"{pipeline.tag}-fan"
    cfg = LeaderboardConfigured(
        board,
        SortOrder.DESC,
        Operator.BEST,
        ResetPeriod.NONE,
        configured_at=int(time.time() * 1000),
    )
    prod = LeaderboardProducer(pipeline.settings)
    prod.configure(cfg)

    async def submit(pid: str, score: int) -> None:
        eid = f"{pid}-{score}"
        at = int(time.time() * 1000)
        prod.submit(MatchResultSubmitted(eid, eid, board, at, (ScoreEntry(pid, score),)))
        await asyncio.to_thread(prod.flush, 10)

    await submit("warm", 1)
    pipeline.start_worker("projector")
    r = sync_redis(pipeline.settings)
    try:
        await until(lambda: r.hget(BoardKeys(board).state, "ver") is not None, 90)
    finally:
        r.close()
    client = redis if redis is not None else make_client(pipeline.settings)
    feed = RankFeed(pipeline.settings, client, {board: cfg}.get, window_s=0.05)
    feed.start()
    return board, prod, feed, submit


async def test_every_member_of_a_view_gets_the_same_text(pipeline: Pipeline) -> None:
    """Three top-5 viewers in step share one view: a delta is encoded once (the very same
    string object) and sent to each of them."""
    board, prod, feed, submit = await start(pipeline)
    try:
        viewers = [Viewer(feed, board, 5) for _ in range(3)]
        await until(lambda: all(v.has("snapshot") for v in viewers))
        await submit("ann", 100)  # after this delta the viewers are in step with the view
        await until(lambda: all(v.has("delta", "ann") for v in viewers))
        await submit("bob", 200)
        await until(lambda: all(v.has("delta", "bob") for v in viewers))
        texts = [v.delta_with("bob") for v in viewers]
        assert texts[0] == texts[1] == texts[2]
        assert texts[0] is texts[1] is texts[2], "each subscriber's delta was encoded apart"
        view = feed.boards[board].views[5]
        assert {v.sub for v in viewers} <= view.members
        assert not any(v.task.done() for v in viewers)
    finally:
        feed.stop()
        prod.close()


async def test_a_slow_viewer_resyncs_alone_and_the_fast_ones_miss_nothing(
    pipeline: Pipeline,
) -> None:
    """A viewer that stops reading overflows its queue: it leaves the view and gets a snapshot
    once it reads again; the others get every delta, in order, and nobody is closed."""
    board, prod, feed, submit = await start(pipeline)
    try:
        fast = [Viewer(feed, board, 5) for _ in range(2)]
        slow = Viewer(feed, board, 5, queue_size=2)
        everyone = [*fast, slow]
        await until(lambda: all(v.has("snapshot") for v in everyone))
        await submit("p0", 1000)
        await until(lambda: all(v.has("delta", "p0") for v in everyone))
        slow.gate.clear()  # stops reading: its sends block, its queue fills
        for i in range(1, 7):
            await submit(f"p{i}", 1000 + i)
            await until(lambda i=i: all(v.has("delta", f"p{i}") for v in fast))
        assert slow.sub.overflows >= 1
        assert slow.sub.view is None
        for v in fast:
            versions = [m["version"] for m in v.messages() if m["type"] == "delta"]
            assert versions == sorted(versions)
            assert v.sub.view is feed.boards[board].views[5]
        seen_before = len(slow.texts)
        slow.gate.set()  # reads again: the blocked send, then a snapshot of the current top 5
        await until(lambda: any(m["type"] == "snapshot" for m in slow.messages()[seen_before:]))
        snap = [m for m in slow.messages() if m["type"] == "snapshot"][-1]
        assert [e["participant_id"] for e in snap["entries"]] == ["p6", "p5", "p4", "p3", "p2"]
        await submit("p7", 2000)
        await until(lambda: all(v.has("delta", "p7") for v in everyone))
        assert not any(v.task.done() for v in everyone)
    finally:
        feed.stop()
        prod.close()


async def test_a_busy_redis_pool_never_closes_a_viewer(pipeline: Pipeline) -> None:
    """Snapshots that find every Redis connection busy are retried: with a pool of ONE
    connection, several viewers (each reading its own snapshot: track mode) subscribing at
    once all get their snapshot and stay open."""
    url = pipeline.settings.redis_url
    board, prod, feed, submit = await start(pipeline, redis=redis_at(url, max_connections=1))
    try:
        viewers = [Viewer(feed, board, 0, track="warm") for _ in range(4)]
        await until(lambda: all(v.has("snapshot") or v.task.done() for v in viewers))
        errors = [v.task.exception() for v in viewers if v.task.done()]
        assert errors == []
        await submit("ann", 100)  # passes warm: each tracker learns its new rank (a delta,
        # or a snapshot when a delta's read hit the busy pool too)

        def told_rank_2(v: Viewer) -> bool:
            for m in v.messages():
                rows = m.get("changes") or m.get("entries") or []
                if any(r.get("new_rank", r.get("rank")) == 2 for r in rows):
                    return True
            return False

        await until(lambda: all(told_rank_2(v) for v in viewers))
        assert not any(v.task.done() for v in viewers)
    finally:
        feed.stop()
        prod.close()


def _evals(r: Any) -> int:
    """EVAL commands Redis has run so far (the snapshot reads are read-only scripts)."""
    return int(r.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


async def test_a_crowd_joining_a_view_whose_cache_expired_reads_the_top_once(
    pipeline: Pipeline,
) -> None:
    """Newcomers that cannot take the view's cached snapshot (too many deltas since) share
    one top-n read between them instead of one each, catch up from the board's history,
    and join the view: their rows rebuilt from snapshot and deltas equal Redis's top."""
    board, prod, feed, submit = await start(pipeline)
    feed.SINCE_MAX = 0  # the view's cached snapshot is dropped after its first delta
    r = sync_redis(pipeline.settings)
    try:
        for i in range(6):
            await submit(f"s{i}", 100 + i)
        first = Viewer(feed, board, 5)
        await until(lambda: first.has("snapshot"))
        await submit("ann", 500)
        await until(lambda: first.has("delta", "ann"))
        assert feed.boards[board].views[5].snapshot is None
        before = _evals(r)
        crowd = [Viewer(feed, board, 5) for _ in range(30)]
        await until(lambda: all(v.has("snapshot") for v in crowd))
        reads = _evals(r) - before
        assert reads < 10, f"{reads} top reads for 30 newcomers"
        await submit("bob", 400)
        everyone = [first, *crowd]
        await until(lambda: all(v.has("delta", "bob") for v in everyone))
        want = ["ann", "bob", "s5", "s4", "s3"]
        for v in everyone:
            rows: list[str] = []
            for m in v.messages():
                if m["type"] == "snapshot":
                    rows = [e["participant_id"] for e in m["entries"]]
                    continue
                for c in m["changes"]:
                    if c["participant_id"] in rows:
                        rows.remove(c["participant_id"])
                    if c["new_rank"] <= 5 and c["new_rank"] <= len(rows) + 1:
                        rows.insert(c["new_rank"] - 1, c["participant_id"])
                    del rows[5:]
                rows += [e["participant_id"] for e in m.get("fill", [])]
            assert rows == want
        await submit("cat", 300)
        await until(lambda: all(v.has("delta", "cat") for v in everyone))
        assert {v.sub for v in everyone} <= feed.boards[board].views[5].members
        assert not any(v.task.done() for v in everyone)
    finally:
        r.close()
        feed.stop()
        prod.close()
