"""A leaner path from Kafka's fetched batches to the workers' batches, beside Faust's own.

Faust keeps the consumer group, the fetcher, the conductor and the offset commits; two of its
per-record steps are replaced, each of which cost more than a whole record's decode:

- the fetcher's drain loop ran every record's delivery inside ``Service.wait_first`` (four
  tasks and an ``asyncio.wait`` per record, so that a rebalance can interrupt a delivery that
  blocks). ``LeanConsumer`` delivers a record with a plain ``await`` when the delivery cannot
  block (flow active, the producer buffer below its limit, every receiving queue with room)
  and keeps ``wait_first`` for the rest; the loop is otherwise Faust 0.15's.
- the conductor's delivery (``Conductor.on_message``: flow-control and producer waits, a
  decode, a Faust ``Event`` and a queue put with pressure callbacks, several coroutines per
  record). A record of a topic read with ``RawSchema`` by exactly one channel is put on that
  channel's queue directly as a ``RawEvent`` (the record and the consumer that acknowledges
  it, with the reference count the conductor would have taken) when nothing can block and
  the queue is below its pressure mark; otherwise the conductor delivers it as before.
- the agent's stream ran its iteration, sensors and processors per event. ``take_batches``
  reads the agent's channel queue itself, in bulk, with the checks of Faust's stream
  (events of an older consumer generation, or read while flow control is suspended, are
  skipped; the rest are tracked as unacknowledged, so a rebalance and a shutdown wait for them)
  and ``ack`` acknowledges a processed batch without the stream's sensors.

Measured on the dev machine (benchmarks/notes.md): the projector's CPU per 10-entry record
fell by about a third.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from time import monotonic
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

log = logging.getLogger(__name__)

#: The youngest a batch's oldest record may be when the batch is taken (unless it is full),
#: while records keep coming. After a quiet spell at least this long the first record is
#: taken at once (``take_batches(quiet=...)``): an idle projector applies a lone score without
#: waiting, a busy one lets batches grow.
LINGER_S = 0.005


class RawEvent:
    """A record handed to an agent's queue without the conductor: what ``take_batches`` and
    ``ack`` use of a Faust ``Event`` (its ``message`` and ``ack``), nothing else."""

    __slots__ = ("_consumer", "message")

    def __init__(self, message: Any, consumer: Any) -> None:
        self.message = message
        self._consumer = consumer

    def ack(self) -> bool:
        """Acknowledge the record (as ``Event.ack``): its offset may be committed."""
        return bool(self.message.ack(self._consumer))


class LeanConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer whose drain loop awaits a delivery directly when it cannot
    block (see the module's docstring)."""

    #: Faust's producer buffer's queue (a deque) and limit, looked up once: ``buffer.size``
    #: reads two settings through Faust's settings registry, per record.
    _buffer: tuple[Any, int] | None = None

    def _can_deliver_now(self, message: Any) -> bool:
        """True if the conductor's delivery of ``message`` completes without waiting."""
        app = self.app
        if not app.flow_control.is_active():
            return False
        found = self._buffer
        if found is None:
            buffer: Any = app.producer.buffer
            queue: Any = buffer.queue if app.conf.producer_threaded else buffer.pending
            if queue is None:  # a threaded buffer not started yet: ask it each time
                return self._can_deliver_slowly(message)
            found = self._buffer = (queue._queue, buffer.max_messages)
        if len(found[0]) > found[1]:
            return False
        channels = cast(Any, app.topics)._tp_index.get(message.tp)
        if not channels:
            return False
        for chan in channels:
            if chan.queue.full():
                return False
        return True

    #: per partition: (its channel set when looked at, the raw channel's queue or None)
    _raw: dict[Any, tuple[Any, Any]] | None = None

    def _hand_over(self, message: Any) -> bool:
        """Put ``message`` on its raw channel's queue, as the conductor would deliver it; False
        (nothing done) unless ``message``'s partition feeds exactly one ``RawSchema`` channel
        whose queue is below its pressure mark. Call only when ``_can_deliver_now``."""
        channels = cast(Any, self.app.topics)._tp_index.get(message.tp)
        raw = self._raw
        if raw is None:
            raw = self._raw = {}
        found = raw.get(message.tp)
        if found is None or found[0] is not channels:  # the index is rebuilt on rebalances
            queue = None
            if channels and len(channels) == 1:
                (chan,) = channels
                if isinstance(getattr(chan, "schema", None), RawSchema):
                    queue = chan.queue
            found = raw[message.tp] = (channels, queue)
        queue = found[1]
        if queue is None or queue.qsize() >= queue.pressure_high_size:
            return False  # the conductor's path (it also signals the pressure)
        message.incref(1)
        queue.force_put_nowait(RawEvent(message, self))
        return True

    def _can_deliver_slowly(self, message: Any) -> bool:
        """``_can_deliver_now`` through the buffer's public size (before its queue exists)."""
        buffer = self.app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        channels = cast(Any, self.app.topics)._tp_index.get(message.tp)
        return bool(channels) and not any(chan.queue.full() for chan in channels)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the loop
        # Faust 0.15.3's Consumer._drain_messages, with the delivery awaited directly when it
        # cannot block; any change there must be carried over here.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        can_deliver_now = self._can_deliver_now
        hand_over = self._hand_over
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if can_deliver_now(message):
                                if not hand_over(message):
                                    await callback(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class RawSchema(faust.Schema[bytes, bytes]):
    """Keys and values handed to the agent as the bytes read, without Faust's serializer
    registry (three lookups and a codec call per record for the ``raw`` codec, whose result
    is the same bytes): about a tenth of the projector's CPU on single-entry records."""

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(self, app: Any, **options: Any) -> Any:
        """Faust's per-record decode for this schema: the event of the raw record."""
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode


def use_lean_consumer(app: faust.App) -> None:
    """Make ``app`` build a ``LeanConsumer`` (call before anything touches ``app.consumer``)."""
    cast(Any, app.transport).Consumer = LeanConsumer


async def take_batches(
    stream: Any, max_: int, within: float, linger: float = LINGER_S, quiet: float | None = None
) -> AsyncIterator[list[Any]]:
    """Batches of the events of ``stream``'s channel, unacknowledged, sized by the load.

    A batch is taken once its oldest event is ``linger`` old, or at once when it is full
    (``max_``) or when the previous batch took that long to handle (its events waited in the
    queue meanwhile): a lone record waits ``linger`` at most; under load a batch is what
    arrived while the previous one was handled. With ``quiet``, a record that arrives after
    the queue stayed empty that long is taken at once (after one turn of the event loop, in
    which the fetcher hands over the rest of the fetch it is delivering): an idle worker does
    not linger. ``within`` bounds how long an idle
    loop waits before it checks for shutdown. Events read while flow control is suspended (a
    rebalance) or fetched in an older consumer generation are skipped, as Faust's stream
    skips them. The batches end when the agent stops.
    """
    app = stream.app
    queue = stream.channel.queue
    flow = app.flow_control
    unacked = app.consumer._unacked_messages
    loop = asyncio.get_running_loop()
    monitor = getattr(app, "monitor", None)
    # when each partition last fed the stream (``Monitor.on_stream_event_in`` sets it per event
    # in Faust's stream): without it Faust would report a stalled stream after its time-out
    inbound = monitor.stream_inbound_time if monitor is not None else None
    batch: list[Any] = []
    first_at = 0.0  # when the oldest event of ``batch`` arrived (at the latest)
    carry: float | None = None  # events queued now arrived after this time (a batch's yield)
    getter: asyncio.Future[Any] | None = None  # only while an idle loop waits for an event

    def admit(event: Any) -> None:
        nonlocal first_at
        message = event.message
        if not flow.is_active() or message.generation_id != app.consumer_generation_id:
            return
        if not message.tracked:
            message.tracked = True
            unacked.add(message)
        if not batch:
            first_at = carry if carry is not None else loop.time()
        batch.append(event)

    def stopping() -> bool:
        return bool(stream.should_stop or app.should_stop)

    try:
        while not stopping():
            while len(batch) < max_ and not queue.empty():
                admit(queue.get_nowait())
            carry = None
            if not batch:
                # a getter must not outlive this wait: left pending, it could take an event
                # while later ones are drained above, and hand it over out of order
                getter = asyncio.ensure_future(queue.get())
                empty_since = loop.time()
                try:
                    await asyncio.wait((getter,), timeout=within)
                finally:
                    if not getter.done():
                        getter.cancel()  # Queue.get leaves its event queued when cancelled
                        await asyncio.wait((getter,))
                got, getter = getter, None
                if not got.cancelled():
                    admit(got.result())
                    if batch and quiet is not None and first_at - empty_since >= quiet:
                        # idle: no linger, but one turn of the loop, in which the fetcher
                        # hands over the rest of the fetch it is delivering
                        first_at -= linger
                        await asyncio.sleep(0)
                continue
            young = first_at + linger - loop.time()
            if young > 0 and len(batch) < max_:
                await asyncio.sleep(young)
                continue
            taken, batch = batch, []
            yielded_at = loop.time()
            if inbound is not None:  # Faust's check that streams keep up reads this
                now = monotonic()
                for tp in {event.message.tp for event in taken}:
                    inbound[tp] = now
            yield taken
            carry = yielded_at  # what is queued now arrived while ``taken`` was handled
    except StopAsyncIteration:
        # the agent stops (Faust's actor throws this into its channel): what was taken but
        # not handled stays uncommitted, so it is redelivered; nobody need wait for it
        unacked.difference_update(event.message for event in batch)
    finally:
        if getter is not None:
            getter.cancel()


def ack(events: Sequence[Any]) -> None:
    """Acknowledge processed events: their offsets may be committed."""
    for event in events:
        event.ack()
