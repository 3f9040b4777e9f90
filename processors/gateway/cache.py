"""Rendered read responses kept per (board, period, page) and (board, profiles) version.

A hot top 100 is asked for far more often than the board changes; rendering 100 rows to JSON
(and reading their profiles) costs the gateway most of such a request. A page read at one board
version is the same bytes until the version moves, so it is rendered once per version: a
request reads the board's version and the profiles version (one round trip, ``page_stamp``;
on the fast path one round trip per event-loop turn for all its requests, ``PageStamps``) and
answers the stored bytes while both match; the requests that miss one page together share
one render (``PageCache.render_once``).

An entry is also dropped ``max_age_s`` after it was rendered, a bound on how long any
page is served from memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from projections.keys import BoardKeys
from projections.profiles import profiles_version_key
from projections.push import newest_period
from projections.redis_client import RedisClient
from streams import rules
from streams.events import LeaderboardConfigured, ResetPeriod

__all__ = [
    "JSON",
    "PageCache",
    "PageKey",
    "PageStamps",
    "Rendered",
    "Stamp",
    "json_response",
    "page_etag",
    "page_stamp",
]

#: The media type of every pre-encoded answer.
JSON = "application/json"

#: (board, period, limit, offset) of a plain page read.
PageKey = tuple[str, str, int, int]


#: (board version, profiles version) of a rendered page: everything the page shows.
Stamp = tuple[int, int]

#: A rendered page and the stamp it was rendered at.
Rendered = tuple[bytes, Stamp]


def page_etag(version: int, period: str, profiles: int) -> str:
    """The validator of a read: everything the body shows is in it. The board version moves
    with every applied entry, the profiles version with every profile write, so one URL at
    one board version, period and profiles version always answers the same body."""
    return f'W/"{version}-{period}-p{profiles}"'


async def page_stamp(client: RedisClient, board: str, profiles: str) -> Stamp:
    """The board's version and the version of the profile hash ``profiles``, in one round
    trip (the profiles version is read with the board's, before any row or profile)."""
    pipe = client.pipeline(transaction=False)
    pipe.hget(BoardKeys(board).state, "ver")
    pipe.get(profiles_version_key(profiles))
    version, prof = await pipe.execute()
    return int(version or 0), int(prof or 0)


def _observed(task: asyncio.Task[Any]) -> None:
    """Mark a shared task's outcome as seen (its readers answer their own errors)."""
    if not task.cancelled():
        task.exception()


#: What a reader of ``PageStamps`` waits for: the board's period and its stamp.
_Waiter = asyncio.Future[tuple[str, Stamp]]


class PageStamps:
    """Reads the current period and the stamp of boards for cached pages, one round trip per
    event-loop turn for every request of that turn.

    Concurrent readers of a hot top 100 each needed their own round trip to Redis (the board's
    period, then its stamp) only to learn that the page had not changed. Here the requests that
    ask within one turn of the event loop share one pipeline, sent in a later turn: every
    answer still comes from a read made after its request arrived, so a page is exactly as
    fresh as with a read per request.
    """

    def __init__(self, client: RedisClient, profiles: str) -> None:
        """``profiles``: the profile hash whose version every page carries."""
        self.client = client
        self.profiles = profiles
        self._asked: dict[str, tuple[LeaderboardConfigured, list[_Waiter]]] = {}
        self._reads: set[asyncio.Task[None]] = set()
        #: round trips made and answers given (for tests and metrics)
        self.round_trips = 0
        self.answers = 0

    def read(self, cfg: LeaderboardConfigured) -> asyncio.Future[tuple[str, Stamp]]:
        """The board's current period and its (board, profiles) stamp, read in a later turn
        together with every other board asked in this one (a future per caller, so that a
        caller that goes away cancels only its own)."""
        self.answers += 1
        loop = asyncio.get_running_loop()
        fut: _Waiter = loop.create_future()
        asked = self._asked.get(cfg.leaderboard_id)
        if asked is not None:
            asked[1].append(fut)
            return fut
        if not self._asked:
            loop.call_soon(self._start)
        self._asked[cfg.leaderboard_id] = (cfg, [fut])
        return fut

    def _start(self) -> None:
        asked, self._asked = self._asked, {}
        task = asyncio.ensure_future(self._fetch(list(asked.values())))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _fetch(self, asked: list[tuple[LeaderboardConfigured, list[_Waiter]]]) -> None:
        self.round_trips += 1
        pipe = self.client.pipeline(transaction=False)
        pipe.get(profiles_version_key(self.profiles))
        for cfg, _ in asked:
            keys = BoardKeys(cfg.leaderboard_id)
            pipe.hget(keys.state, "ver")
            if cfg.reset_period is not ResetPeriod.NONE:
                pipe.hkeys(keys.open_periods)
                pipe.hkeys(keys.ended_periods)
        try:
            replies = await pipe.execute()
        except Exception as exc:  # every reader answers through its own fallback
            for _, futs in asked:
                for fut in futs:
                    if not fut.done():
                        fut.set_exception(exc)
            return
        prof = int(replies[0] or 0)
        at = 1
        for cfg, futs in asked:
            version = int(replies[at] or 0)
            at += 1
            period = rules.ALL_TIME
            if cfg.reset_period is not ResetPeriod.NONE:
                period = newest_period(cfg, [*replies[at], *replies[at + 1]])
                at += 2
            for fut in futs:
                if not fut.done():
                    fut.set_result((period, (version, prof)))


def json_response(
    body: bytes | dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer from bytes already encoded, or a dict encoded once with orjson (the
    same compact UTF-8 JSON as FastAPI's default, without its per-field encoder walk)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status_code=status_code, headers=headers, media_type=JSON)


@dataclass(frozen=True, slots=True)
class _Entry:
    version: Stamp
    born: float
    body: bytes


class PageCache:
    """Rendered pages by key and board version; at most ``size`` entries, oldest out first."""

    def __init__(self, size: int = 256, max_age_s: float = 1.0) -> None:
        """Keep ``size`` pages (0 = no caching), each at most ``max_age_s`` seconds."""
        self.size = size
        self.max_age_s = max_age_s
        self._entries: dict[PageKey, _Entry] = {}
        self._rendering: dict[tuple[PageKey, Stamp], asyncio.Task[Rendered]] = {}
        #: answers served from the cache, and pages rendered (for tests and metrics)
        self.hits = 0
        self.misses = 0
        self.renders = 0

    def get(self, key: PageKey, version: Stamp) -> bytes | None:
        """The page rendered at ``version``, if kept and young enough."""
        found = self._entries.get(key)
        if (
            found is None
            or found.version != version
            or time.monotonic() - found.born > self.max_age_s
        ):
            self.misses += 1
            return None
        self.hits += 1
        return found.body

    async def render_once(
        self, key: PageKey, seen: Stamp, render: Callable[[], Awaitable[Rendered]]
    ) -> Rendered:
        """``render()``'s page, shared by every request that missed ``key`` at the stamp
        ``seen`` while it runs (and kept, see ``put``).

        A page that expires or moves to a new version is missed by every concurrent reader
        at once; without this, each of them read and rendered the same rows. A request that
        joins a render started before it arrived still gets a page as fresh as its own read:
        its stamp read, made after it arrived, showed the version the render started from,
        and the render reads rows at that version or a newer one.
        """
        task = self._rendering.get((key, seen))
        if task is None:
            task = asyncio.ensure_future(self._render(key, seen, render))
            task.add_done_callback(_observed)  # its readers may all have gone away
            self._rendering[(key, seen)] = task
        # shielded: a request that goes away does not cancel the others' render
        return await asyncio.shield(task)

    async def _render(
        self, key: PageKey, seen: Stamp, render: Callable[[], Awaitable[Rendered]]
    ) -> Rendered:
        try:
            body, stamp = await render()
            self.renders += 1
            self.put(key, stamp, body)
            return body, stamp
        finally:
            self._rendering.pop((key, seen), None)

    def put(self, key: PageKey, version: Stamp, body: bytes) -> None:
        """Keep ``body`` as the page ``key`` at ``version`` (a newer version replaces it)."""
        if self.size <= 0:
            return
        found = self._entries.pop(key, None)
        if found is not None and found.version > version:
            self._entries[key] = found  # a slower reader of an older version: keep the newer
            return
        self._entries[key] = _Entry(version, time.monotonic(), body)
        while len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]
