"""At-least-once batch consumption for Faust agents: ack only what was processed.

``Stream.take_events`` acknowledges a batch in a ``finally`` block, so a batch whose processing
raised (or was cancelled at shutdown) is acknowledged anyway and its offsets get committed:
those records would never be seen again. Here batches come from ``lean.take_batches`` and
are acknowledged only after the handler returned; a failing batch is retried in place (with backoff)
instead of crashing the agent, and one interrupted by shutdown stays unacknowledged, so Kafka
redelivers it to the next worker. Only outages are retried: a record whose processing fails the
same way every time (a value, decode or rule error) is isolated and dead-lettered, so one record
can never stall a worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processors.workers.lean import LINGER_S, ack, take_batches
from streams.errors import DecodeError, ServiceUnavailable, ValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as read from the log: position, key, undecoded value and the broker's time.

    ``log_time`` is the broker's append time (topics with ``LogAppendTime``), a time no client
    controls and that replay reads back identically; None where the log has no such time.
    """

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    log_time: int | None = None
    #: the record's headers as read (a reference, never parsed unless tracing is on)
    headers: Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None = None


def raw_records(events: Sequence[Any]) -> list[RawRecord]:
    """The raw records of a batch of Faust events."""
    return [
        RawRecord(
            e.message.partition,
            e.message.offset,
            e.message.key,
            e.message.value,
            _log_time(e.message.timestamp, e.message.timestamp_type),
            e.message.headers,
        )
        for e in events
    ]


#: aiokafka's timestamp type of a broker-assigned time (0 is the producer's CreateTime).
_LOG_APPEND_TIME = 1


def _log_time(timestamp_s: float | None, timestamp_type: int | None) -> int | None:
    """Milliseconds of a broker append time (Faust gives seconds); None for client times."""
    if timestamp_type != _LOG_APPEND_TIME or not timestamp_s:
        return None
    return round(timestamp_s * 1000)


#: Failures that mean "a service is down for now": retried, never skipped.
TRANSIENT: tuple[type[BaseException], ...] = (
    ServiceUnavailable,
    psycopg.OperationalError,
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)

#: Failures that the same record would raise again on every retry: a poison record.
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ValueError,  # includes UnicodeError
    ArithmeticError,  # OverflowError, ZeroDivisionError
    TypeError,
    LookupError,  # KeyError, IndexError
    ValidationError,
    DecodeError,
    psycopg.DataError,
    psycopg.IntegrityError,
)

#: Redis error replies that describe the server's state, not the command: retried.
_REDIS_TRANSIENT_REPLIES = (
    "OOM",
    "LOADING",
    "READONLY",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOSCRIPT",
    "NOREPLICAS",
    "MOVED",
    "ASK",
)


def is_poison(exc: BaseException) -> bool:
    """True if ``exc`` would recur on the same input: the record is dead-lettered, not retried.

    Outages (``TRANSIENT``) and anything unknown are retried; value, decode and rule errors,
    PostgreSQL data errors and Redis script errors are not.
    """
    if isinstance(exc, TRANSIENT):
        return False
    if isinstance(exc, RedisResponseError):
        return not str(exc).startswith(_REDIS_TRANSIENT_REPLIES)
    return isinstance(exc, DETERMINISTIC)


def describe(exc: BaseException) -> str:
    """One line naming the error, for logs and dead-letter reasons."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


#: Longest pause between two attempts at a failing batch.
MAX_BACKOFF_S = 5.0

#: True once the consuming worker shuts down (set by ``consume_batches`` for its task).
_stopping: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar(
    "stopping", default=lambda: False
)


class Stopping(Exception):
    """The worker shuts down while a batch still fails with an outage: it stays unacknowledged."""


async def retry_forever(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    give_up: Callable[[BaseException], bool] = lambda exc: False,
) -> T:
    """Run ``attempt`` until it succeeds, logging each failure with exponential backoff.

    An exception for which ``give_up`` is true is raised at once instead of retried.
    """
    delay = 0.1
    failures = 0
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if give_up(exc):
                raise
            if _stopping.get()():  # an outage must not hold a SIGTERM for minutes
                raise Stopping(f"{what}: shutting down during an outage ({describe(exc)})") from exc
            failures += 1
            log.error(
                "%s failed (attempt %d): %s; retrying in %.1fs",
                what,
                failures,
                describe(exc),
                delay,
                exc_info=failures == 1,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


#: Called with a record that fails on its own with a poison error, and the reason.
Poison = Callable[[RawRecord, str], Awaitable[None]]


async def run_isolating(
    batch: Sequence[RawRecord],
    handle: Callable[[Sequence[RawRecord]], Awaitable[T]],
    *,
    what: str,
    poison: Poison,
    done: Callable[[T], None] | None = None,
) -> None:
    """Handle ``batch``; on a poison error, halve it until the failing record stands alone.

    Outages are retried in place. A record that fails alone is handed to ``poison`` (which
    dead-letters it) and the rest of the batch goes on, in log order. Handlers are idempotent
    (watermarks, unique audit keys), so re-running the part of a batch before the poison
    record changes nothing.
    """

    def attempt() -> Awaitable[T]:
        return handle(batch)

    try:
        result = await retry_forever(f"{what} ({len(batch)} records)", attempt, give_up=is_poison)
    except Exception as exc:
        if not is_poison(exc):
            raise
        if len(batch) == 1:
            rec = batch[0]
            log.error(
                "%s: record %d@%d is poison: %s", what, rec.partition, rec.offset, describe(exc)
            )
            await poison(rec, describe(exc))
            return
        mid = len(batch) // 2
        await run_isolating(batch[:mid], handle, what=what, poison=poison, done=done)
        await run_isolating(batch[mid:], handle, what=what, poison=poison, done=done)
        return
    if done is not None:
        done(result)


async def consume_batches(
    stream: Any,
    size: int,
    within: float,
    handle: Callable[[Sequence[RawRecord]], Awaitable[T]],
    *,
    what: str,
    poison: Poison,
    done: Callable[[T], None] | None = None,
    adaptive: bool = False,
    ahead: Callable[[Sequence[RawRecord]], Awaitable[T]] | None = None,
) -> None:
    """Feed ``stream`` to ``handle`` in batches; acknowledge each batch once it succeeded.

    On shutdown a batch in progress finishes; one that still fails with an outage is left
    unacknowledged (its offsets are not committed, so it is redelivered) and the worker exits.
    Batches come from ``lean.take_batches`` (the channel's queue read in bulk): ``adaptive``
    takes one once its oldest record is ``LINGER_S`` old, or at once after a quiet spell
    (an idle worker applies a lone score at once; batches grow with the load), otherwise once
    it is ``within`` old or full.

    ``ahead`` (the same work as ``handle``, but whose result may leave its last step in
    ``finish``) overlaps batches: see ``_consume_overlapped``.
    """
    _stopping.set(lambda: bool(stream.app.should_stop))
    if adaptive:
        take = take_batches(stream, size, within, LINGER_S, quiet=LINGER_S)
    else:
        take = take_batches(stream, size, within, within)
    if ahead is not None:
        await _consume_overlapped(take, stream, handle, ahead, what=what, poison=poison, done=done)
        return
    async for events in take:
        try:
            await run_isolating(raw_records(events), handle, what=what, poison=poison, done=done)
        except Stopping as exc:
            log.warning("%s; %d record(s) left for redelivery", exc, len(events))
            # the stopping consumer waits for in-flight records: it need not wait for these
            stream.app.consumer._unacked_messages.difference_update(e.message for e in events)
            return
        ack(events)


@dataclass(slots=True)
class _Finishing:
    """A batch whose ``finish`` runs in ``task`` (True: it succeeded; False: it failed and
    the batch was handled again whole); acknowledged by ``task`` either way."""

    events: list[Any]
    task: asyncio.Future[bool]


async def _consume_overlapped(
    take: AsyncIterator[list[Any]],
    stream: Any,
    handle: Callable[[Sequence[RawRecord]], Awaitable[T]],
    ahead: Callable[[Sequence[RawRecord]], Awaitable[T]],
    *,
    what: str,
    poison: Poison,
    done: Callable[[T], None] | None,
) -> None:
    """``consume_batches`` with batch N's last step (publish, Kafka's ack, outbox clear) run
    while batch N+1 is decoded and applied.

    The order of effects stays that of one batch after the other: N+1's apply calls go to
    Redis only after N's have their replies (``ahead`` returns once its calls are sent, the
    last one possibly still running: see ``Projector._send_chunks``), N+1's outcome is
    published only after N's was acknowledged by Kafka (its ``finish`` starts after N's
    ended), and events are acknowledged (offsets committed) in order, each batch right after
    its ``finish``.
    Whatever fails leaves the overlap: a batch whose ``finish`` raised is handled again whole
    by ``handle`` (with the retries and the poison isolation of ``run_isolating``), and so is
    the batch applied meanwhile, or one whose ``ahead`` raised (the apply is idempotent, and
    a record's results wait in the outbox until published, so a second handling publishes
    them).
    """
    unacked = stream.app.consumer._unacked_messages
    pending: _Finishing | None = None
    held: list[Any] = []  # the events taken and not acknowledged (pending's included)

    async def finishing(
        events: list[Any],
        records: list[RawRecord],
        result: T,
        finish: Callable[[], Awaitable[None]],
    ) -> bool:
        try:
            await finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: publishing failed (%s); handling the batch again", what, describe(exc))
            await run_isolating(records, handle, what=what, poison=poison, done=done)
            ack(events)
            return False
        ack(events)
        if done is not None:
            done(result)
        return True

    try:
        async for events in take:
            held = events if pending is None else pending.events + events
            records = raw_records(events)
            result: T | None = None
            try:
                result = await ahead(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handled again below, in order, with retries
                log.debug("%s: overlapped handling failed: %s", what, describe(exc))
            if pending is not None:
                item, pending = pending, None
                if not await item.task:
                    result = None  # applied before its predecessor was published: again
            finish = getattr(result, "finish", None) if result is not None else None
            if result is not None and finish is not None:
                task = asyncio.ensure_future(finishing(events, records, result, finish))
                pending = _Finishing(events, task)
                continue
            if result is None:
                await run_isolating(records, handle, what=what, poison=poison, done=done)
            elif done is not None:
                done(result)
            ack(events)
            held = []
        if pending is not None:
            held = pending.events
            item, pending = pending, None
            await item.task
            held = []
    except Stopping as exc:
        log.warning("%s; %d record(s) left for redelivery", exc, len(held))
        # the stopping consumer waits for in-flight records: it need not wait for these
        unacked.difference_update(e.message for e in held)
    finally:
        if pending is not None:  # interrupted: its records stay unacknowledged (redelivered)
            pending.task.cancel()
            await asyncio.gather(pending.task, return_exceptions=True)
            unacked.difference_update(e.message for e in pending.events)
