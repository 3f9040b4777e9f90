"""The push window's leading edge: a change after a quiet window leaves at once; changes
within the window after a push wait for it and leave together, one delta per window."""

from __future__ import annotations

import asyncio

from processors.gateway.feed import RankFeed, Subscriber
from streams.events import RankChange, RankChanged


def moved(version: int, new_rank: int) -> RankChanged:
    """A record of one change: the tracked participant ``me`` moves to ``new_rank``."""
    c = RankChange(
        version, "all", "me", None, new_rank, None, 100 + version, 100, "best", f"e{version}",
        f"m{version}", 0, 0, 0, version,
    )  # fmt: skip
    return RankChanged("b", version, version, (c,))


def feed_on(loop: asyncio.AbstractEventLoop, window_s: float) -> RankFeed:
    """A feed with only what ``_apply`` and ``_emit`` use (no consumer, no Redis)."""
    feed = RankFeed.__new__(RankFeed)
    feed._loop, feed.window_s, feed.boards = loop, window_s, {}
    return feed


def test_first_change_after_a_quiet_window_is_pushed_without_waiting() -> None:
    async def run() -> list[list[int]]:
        feed = feed_on(asyncio.get_running_loop(), 0.05)
        sub = Subscriber("b", "track", participant_id="me", syncing=False)
        feed._apply(sub, [moved(1, 3)])
        handle = sub.flush_handle
        # scheduled to run next, after the records of the same hand-over: not a timer
        assert handle is not None and not isinstance(handle, asyncio.TimerHandle)
        await asyncio.sleep(0)
        assert sub.queue.qsize() == 1 and sub.flush_handle is None
        # within the window of that push: the next changes wait for the window, together
        feed._apply(sub, [moved(2, 2)])
        assert isinstance(sub.flush_handle, asyncio.TimerHandle)
        feed._apply(sub, [moved(3, 1)])
        await asyncio.sleep(0)
        assert sub.queue.qsize() == 1
        await asyncio.sleep(0.2)
        out = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        return [[c["version"] for c in msg["changes"]] for msg in out]

    assert asyncio.run(run()) == [[1], [2, 3]]
