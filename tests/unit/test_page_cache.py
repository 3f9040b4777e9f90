"""The gateway's page cache: one rendering per board and profiles version, bounded in age
and size."""

from __future__ import annotations

import asyncio
import time

from processors.gateway.cache import PageCache, page_etag

KEY = ("b", "all", 100, 0)


def test_a_page_is_served_only_at_the_version_it_was_rendered_at() -> None:
    cache = PageCache()
    assert cache.get(KEY, (7, 0)) is None
    cache.put(KEY, (7, 0), b"seven")
    assert cache.get(KEY, (7, 0)) == b"seven"
    assert cache.get(KEY, (8, 0)) is None  # the board moved: render again
    assert cache.get(("b", "all", 100, 100), (7, 0)) is None  # another page
    assert (cache.hits, cache.misses) == (1, 3)


def test_an_older_rendering_never_replaces_a_newer_one() -> None:
    cache = PageCache()
    cache.put(KEY, (9, 0), b"nine")
    cache.put(KEY, (8, 0), b"eight")  # a slower reader that started before version 9
    assert cache.get(KEY, (9, 0)) == b"nine"
    cache.put(KEY, (10, 0), b"ten")
    assert cache.get(KEY, (10, 0)) == b"ten"


def test_a_profile_write_is_a_new_stamp() -> None:
    cache = PageCache()
    cache.put(KEY, (7, 3), b"names at 3")
    assert cache.get(KEY, (7, 4)) is None  # a display name changed: render again
    cache.put(KEY, (7, 4), b"names at 4")
    cache.put(KEY, (7, 3), b"names at 3")  # a slower reader: the newer rendering stays
    assert cache.get(KEY, (7, 4)) == b"names at 4"


def test_pages_expire() -> None:
    cache = PageCache(max_age_s=0.05)
    cache.put(KEY, (1, 0), b"one")
    assert cache.get(KEY, (1, 0)) == b"one"
    time.sleep(0.06)
    assert cache.get(KEY, (1, 0)) is None


def test_the_cache_keeps_at_most_its_size() -> None:
    cache = PageCache(size=2)
    for offset in range(3):
        cache.put(("b", "all", 100, offset), (1, 0), b"%d" % offset)
    assert cache.get(("b", "all", 100, 0), (1, 0)) is None  # the oldest went out
    assert cache.get(("b", "all", 100, 2), (1, 0)) == b"2"
    off = PageCache(size=0)
    off.put(KEY, (1, 0), b"one")
    assert off.get(KEY, (1, 0)) is None


def test_the_etag_names_version_period_and_profiles() -> None:
    assert page_etag(42, "2026-11", 5) == 'W/"42-2026-11-p5"'


async def test_concurrent_misses_of_one_page_share_one_render() -> None:
    cache = PageCache()
    calls = 0
    gate = asyncio.Event()

    async def render() -> tuple[bytes, tuple[int, int]]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return b"page-%d" % calls, (8, 1)

    key = ("b", "all", 100, 0)
    readers = [asyncio.ensure_future(cache.render_once(key, (7, 1), render)) for _ in range(10)]
    await asyncio.sleep(0)
    readers[0].cancel()  # a client that went away cancels only its own wait
    gate.set()
    got = await asyncio.gather(*readers[1:])
    assert calls == 1 and cache.renders == 1
    assert got == [(b"page-1", (8, 1))] * 9
    assert cache.get(key, (8, 1)) == b"page-1"  # kept at the version it was rendered at
    # a later miss (another stamp) renders again
    assert await cache.render_once(key, (8, 1), render) == (b"page-2", (8, 1))
    assert calls == 2


async def test_a_failed_render_fails_its_readers_and_is_not_kept() -> None:
    cache = PageCache()
    calls = 0

    async def render() -> tuple[bytes, tuple[int, int]]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("redis down")
        return b"ok", (1, 0)

    key = ("b", "all", 10, 0)
    got = await asyncio.gather(
        *[cache.render_once(key, (1, 0), render) for _ in range(3)], return_exceptions=True
    )
    assert all(isinstance(g, RuntimeError) for g in got)
    assert await cache.render_once(key, (1, 0), render) == (b"ok", (1, 0))
    assert calls == 2
