"""The rank feed reads only the head of records nobody on the process needs
(processors/gateway/recordhead.py): their bytes go to the history, decoded on a resume, and a
waiting submission or a watched board still gets every change."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from processors.gateway.feed import RankFeed, Subscriber, _Raw
from processors.gateway.recordhead import RecordHead
from streams.codec import SingleObjectCodec
from streams.events import LeaderboardConfigured, RankChange, RankChanged
from streams.settings import Settings

CODEC = SingleObjectCodec()


def record(board: str, first: int, last: int) -> RankChanged:
    """Changes ``first``..``last`` of ``board``: participant p<v> enters at rank 1."""
    changes = tuple(
        RankChange(v, "all", f"p{v}", None, 1, None, v, v, "best", f"e{v}", f"m{v}", 0, 0, 0, v)
        for v in range(first, last + 1)
    )
    return RankChanged(board, first, last, changes)


def incoming(feed: RankFeed, rec: RankChanged) -> tuple[None, _Raw, None]:
    """What the reader thread hands over for a record nobody needed when it was read."""
    data = CODEC.encode(rec)
    head = feed.head(data)
    assert head is not None
    return None, _Raw(*head, data), None


def new_feed() -> RankFeed:
    cfg = LeaderboardConfigured("b")
    feed = RankFeed(Settings(), cast(Any, None), lambda name: cfg if name == "b" else None)
    feed._loop = asyncio.get_running_loop()
    return feed


def test_head_of_the_current_schema_and_nothing_else() -> None:
    head = RecordHead(CODEC)
    data = CODEC.encode(record("héllo-board", 7, 9))
    assert head(data) == ("héllo-board", 7, 9)
    big = CODEC.encode(record("b", 2**40, 2**40 + 1))
    assert head(big) == ("b", 2**40, 2**40 + 1)
    assert head(data[:12]) is None  # truncated
    assert head(b"\x00\x00\x00\x00\x01" + data[10:]) is None  # another wire format
    other = CODEC.encode(LeaderboardConfigured("b"))
    assert head(other) is None  # another schema's fingerprint
    assert RecordHead(object())(data) is None  # not the single-object codec


def test_unwatched_board_keeps_bytes_and_a_resume_gets_every_change() -> None:
    async def run() -> None:
        feed = new_feed()
        feed._on_records([incoming(feed, record("b", 1, 2)), incoming(feed, record("b", 3, 3))])
        board = feed.boards["b"]
        assert feed.undecoded == 2 and board.last_version == 3
        assert all(isinstance(item, _Raw) for item in board.history)
        assert feed._history(board, 1) == [record("b", 1, 2), record("b", 3, 3)]
        assert feed._history(board, 2) == [record("b", 3, 3)]
        # a resume from version 1 is sent changes 2 and 3, decoded from the kept bytes
        sub = Subscriber("b", "top", n=3)
        feed.subscribe(sub, since_version=1)
        for view in board.views.values():  # the shared view's pump would read Redis
            assert view.task is not None
            view.task.cancel()
        await asyncio.sleep(0)
        msg = sub.queue.get_nowait()
        assert [c["version"] for c in msg["changes"]] == [2, 3]
        # the board is watched now: its next record is decoded and pushed
        feed._on_records([incoming(feed, record("b", 4, 4))])
        assert feed.undecoded == 2
        assert isinstance(board.history[-1], RankChanged)
        await asyncio.sleep(0.2)
        msg = sub.queue.get_nowait()
        assert [c["version"] for c in msg["changes"]] == [4]

    asyncio.run(run())


def test_a_waiting_submission_gets_its_change_from_an_undecoded_record() -> None:
    async def run() -> None:
        feed = new_feed()
        fut = feed.wait_for("e6")
        feed._on_records([incoming(feed, record("b", 5, 7))])
        change = await asyncio.wait_for(fut, 1)
        assert (change.event_id, change.version) == ("e6", 6)
        # decoded for the waiter, but the unwatched board's history keeps the bytes
        assert isinstance(feed.boards["b"].history[-1], _Raw)

    asyncio.run(run())


@pytest.mark.parametrize("first", [2, 3])
def test_an_overlapping_record_is_trimmed_to_its_new_versions(first: int) -> None:
    async def run() -> None:
        feed = new_feed()
        feed._on_records([incoming(feed, record("b", 1, 3)), incoming(feed, record("b", first, 5))])
        board = feed.boards["b"]
        assert board.last_version == 5
        assert [c.version for r in feed._history(board, 0) for c in r.changes] == [1, 2, 3, 4, 5]

    asyncio.run(run())
