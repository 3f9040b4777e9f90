"""At-least-once batch consumption for Faust agents: ack only what was processed.

``Stream.take_events`` acknowledges a batch in a ``finally`` block, so a batch whose processing
raised (or was cancelled at shutdown) is acknowledged anyway and its offsets get committed:
those records would never be seen again. Here batches come from ``noack_take`` and are
acknowledged only after the handler returned; a failing batch is retried in place (with backoff)
instead of crashing the agent, and one interrupted by shutdown stays unacknowledged, so Kafka
redelivers it to the next worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as read from the log: position, key and undecoded value."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def raw_records(events: Sequence[Any]) -> list[RawRecord]:
    """The raw records of a batch of Faust events."""
    return [
        RawRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
        for e in events
    ]


#: Longest pause between two attempts at a failing batch.
MAX_BACKOFF_S = 5.0


async def retry_forever(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` until it succeeds, logging each failure with exponential backoff."""
    delay = 0.1
    failures = 0
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            log.error(
                "%s failed (attempt %d): %s; retrying in %.1fs",
                what,
                failures,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                delay,
                exc_info=failures == 1,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


async def consume_batches(
    stream: Any,
    size: int,
    within: float,
    convert: Callable[[Sequence[Any]], R],
    handle: Callable[[R], Awaitable[T]],
    *,
    what: str,
    done: Callable[[T], None] | None = None,
) -> None:
    """Feed ``stream`` to ``handle`` in batches; acknowledge each batch once it succeeded."""
    async for events in stream.noack_take(size, within=within):
        batch = convert(events)

        def attempt(b: R = batch) -> Awaitable[T]:
            return handle(b)

        result = await retry_forever(f"{what} ({len(events)} records)", attempt)
        for event in events:
            await stream.ack(event)
        if done is not None:
            done(result)
