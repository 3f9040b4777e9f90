"""Poison isolation: a record that fails on its own is parked, the rest of its batch goes on."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from processors.workers.batching import RawRecord, describe, is_poison, run_isolating
from streams.errors import DecodeError, ServiceUnavailable


def records(n: int) -> list[RawRecord]:
    return [RawRecord(0, i, b"k", b"v") for i in range(n)]


async def test_poison_records_are_isolated_and_the_rest_applied_in_order() -> None:
    applied: list[int] = []
    parked: list[tuple[int, str]] = []

    async def handle(batch: Sequence[RawRecord]) -> int:
        if any(r.offset in (3, 11) for r in batch):
            raise ValueError(f"bad value in {[r.offset for r in batch]}"[:20])
        applied.extend(r.offset for r in batch)
        return len(batch)

    async def poison(rec: RawRecord, reason: str) -> None:
        parked.append((rec.offset, reason))

    done: list[int] = []
    await run_isolating(records(16), handle, what="test", poison=poison, done=done.append)
    assert applied == [i for i in range(16) if i not in (3, 11)]
    assert [o for o, _ in parked] == [3, 11]
    assert all(reason.startswith("ValueError: bad value") for _, reason in parked)
    assert sum(done) == 14


async def test_outages_are_retried_not_parked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.workers.batching.MAX_BACKOFF_S", 0.01)
    calls = 0

    async def handle(batch: Sequence[RawRecord]) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ServiceUnavailable("redis is down")
        return len(batch)

    async def poison(rec: RawRecord, reason: str) -> None:
        raise AssertionError("an outage must never park a record")

    done: list[int] = []
    await run_isolating(records(4), handle, what="test", poison=poison, done=done.append)
    assert (calls, done) == (3, [4])


@pytest.mark.parametrize(
    ("exc", "poison"),
    [
        (ValueError("year 10000 is out of range"), True),
        (OverflowError("date value out of range"), True),
        (DecodeError("bad bytes"), True),
        (ServiceUnavailable("down"), False),
        (ConnectionError("reset"), False),
        (RuntimeError("unknown"), False),
    ],
)
def test_what_counts_as_poison(exc: Exception, poison: bool) -> None:
    assert is_poison(exc) is poison
    assert describe(exc).startswith(type(exc).__name__)


async def test_an_outage_stops_being_retried_once_the_worker_stops() -> None:
    """While the worker runs an outage is retried; once it stops, the next failure ends the
    retry with ``Stopping`` (the batch stays unacknowledged) instead of holding the shutdown."""
    from processors.workers import batching

    attempts = 0
    stopping = False

    async def attempt() -> None:
        nonlocal attempts, stopping
        attempts += 1
        if attempts == 3:
            stopping = True
        raise ConnectionRefusedError("redis down")

    token = batching._stopping.set(lambda: stopping)
    try:
        with pytest.raises(batching.Stopping, match="shutting down during an outage"):
            await batching.retry_forever("applying", attempt)
    finally:
        batching._stopping.reset(token)
    assert attempts == 3
