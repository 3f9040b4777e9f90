"""``lean.take_batches``: batches read from a channel queue in bulk, with Faust's stream checks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from mode.utils.queues import FlowControlEvent, ThrowableQueue

from processors.workers.lean import ack, take_batches


@dataclass(eq=False)
class FakeMessage:
    offset: int
    generation_id: int = 1
    tracked: bool = False
    acked: bool = False


@dataclass(eq=False)
class FakeEvent:
    message: FakeMessage

    def ack(self) -> bool:
        self.message.acked = True
        return True


@dataclass
class FakeFlow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class FakeConsumer:
    _unacked_messages: set[FakeMessage] = field(default_factory=set)


@dataclass
class FakeApp:
    flow_control: FakeFlow = field(default_factory=FakeFlow)
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    consumer_generation_id: int = 1
    should_stop: bool = False


def channel_queue() -> ThrowableQueue[Any]:
    """The queue type of a Faust channel (flow control resumed, as in a running worker)."""
    flow = FlowControlEvent()
    flow.resume()
    return ThrowableQueue(flow_control=flow)


@dataclass
class FakeChannel:
    queue: ThrowableQueue[Any] = field(default_factory=channel_queue)


@dataclass
class FakeStream:
    app: FakeApp = field(default_factory=FakeApp)
    channel: FakeChannel = field(default_factory=FakeChannel)
    should_stop: bool = False


def event(offset: int, generation: int = 1) -> FakeEvent:
    return FakeEvent(FakeMessage(offset, generation))


async def test_a_lone_event_is_taken_after_the_linger_not_the_window() -> None:
    stream = FakeStream()
    take = take_batches(stream, 100, within=30.0, linger=0.005)
    stream.channel.queue.put_nowait(event(0))
    t0 = time.monotonic()
    batch = await asyncio.wait_for(anext(take), 5)
    assert [e.message.offset for e in batch] == [0]
    assert time.monotonic() - t0 < 1.0
    assert batch[0].message in stream.app.consumer._unacked_messages  # tracked until acked
    await take.aclose()


async def test_a_backlog_is_taken_in_full_batches_in_order() -> None:
    stream = FakeStream()
    for i in range(250):
        stream.channel.queue.put_nowait(event(i))
    take = take_batches(stream, 100, within=30.0, linger=10.0)
    sizes = []
    seen: list[int] = []
    for _ in range(2):
        batch = await asyncio.wait_for(anext(take), 5)  # full: no linger
        sizes.append(len(batch))
        seen += [e.message.offset for e in batch]
        ack(batch)
        assert all(e.message.acked for e in batch)
    assert sizes == [100, 100]
    assert seen == list(range(200))
    await take.aclose()


async def test_events_of_an_older_generation_or_during_a_rebalance_are_skipped() -> None:
    stream = FakeStream()
    stream.app.consumer_generation_id = 2
    stream.channel.queue.put_nowait(event(0, generation=1))
    stream.channel.queue.put_nowait(event(1, generation=2))
    take = take_batches(stream, 100, within=30.0, linger=0.001)
    batch = await asyncio.wait_for(anext(take), 5)
    assert [e.message.offset for e in batch] == [1]
    stream.app.flow_control.active = False
    stream.channel.queue.put_nowait(event(2, generation=2))
    nxt = asyncio.ensure_future(anext(take))
    await asyncio.sleep(0.05)
    assert not nxt.done()  # read while flow control was suspended: skipped
    stream.app.flow_control.active = True
    stream.channel.queue.put_nowait(event(3, generation=2))
    batch = await asyncio.wait_for(nxt, 5)
    assert [e.message.offset for e in batch] == [3]
    await take.aclose()


async def test_the_batches_end_when_the_agent_stops_and_untaken_events_are_untracked() -> None:
    stream = FakeStream()
    queue = stream.channel.queue
    take = take_batches(stream, 100, within=30.0, linger=0.2)
    queue.put_nowait(event(0))
    nxt = asyncio.ensure_future(anext(take))
    await asyncio.sleep(0.05)  # event 0 is in the batch, lingering
    assert len(stream.app.consumer._unacked_messages) == 1
    await queue.throw(StopAsyncIteration())  # what Faust's actor does when it stops
    try:
        await asyncio.wait_for(nxt, 5)
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError("the batches did not end")
    # never handled, so never committed: redelivered, and a stopping consumer need not wait
    assert not stream.app.consumer._unacked_messages


async def test_an_idle_take_ends_when_the_agent_stops() -> None:
    stream = FakeStream()
    take = take_batches(stream, 100, within=30.0)
    nxt = asyncio.ensure_future(anext(take))
    await asyncio.sleep(0.05)
    await stream.channel.queue.throw(StopAsyncIteration())
    try:
        await asyncio.wait_for(nxt, 5)
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError("the batches did not end")


async def test_events_are_taken_in_queue_order_whatever_the_timing() -> None:
    """No event may overtake another: the projector skips a record at or below its board's
    watermark as already applied, so an event taken late would be lost."""
    stream = FakeStream()
    queue = stream.channel.queue
    take = take_batches(stream, 7, within=0.0005, linger=0.001)
    got: list[int] = []

    async def consume() -> None:
        async for batch in take:
            got.extend(e.message.offset for e in batch)
            ack(batch)
            if got and got[-1] == 1999:
                return

    task = asyncio.ensure_future(consume())
    offset = 0
    for step in range(600):  # bursts and pauses of varying length, around the time-outs
        for _ in range(step % 5):
            if offset < 2000:
                queue.put_nowait(event(offset))
                offset += 1
        await asyncio.sleep(0.0002 * (step % 4))
    while offset < 2000:
        queue.put_nowait(event(offset))
        offset += 1
    await asyncio.wait_for(task, 30)
    assert got == list(range(2000))


async def test_after_a_quiet_spell_a_lone_event_is_taken_without_the_linger() -> None:
    """An idle projector applies a lone score at once (``quiet``); the linger (10 s here)
    applies only while events keep coming."""
    stream = FakeStream()
    take = take_batches(stream, 100, within=30.0, linger=10.0, quiet=0.01)
    nxt = asyncio.ensure_future(anext(take))
    await asyncio.sleep(0.05)  # quiet longer than 0.01 s
    stream.channel.queue.put_nowait(event(0))
    batch = await asyncio.wait_for(nxt, 5)
    assert [e.message.offset for e in batch] == [0]
    ack(batch)
    # a burst that waits in the queue is taken whole
    for i in range(1, 101):
        stream.channel.queue.put_nowait(event(i))
    batch = await asyncio.wait_for(anext(take), 5)
    assert [e.message.offset for e in batch] == list(range(1, 101))
    await take.aclose()
