"""``consume_batches`` with ``ahead``: batch N+1 applied while batch N's outcome is published,
with the order of effects (apply, publish, acknowledge) of one batch after the other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from processors.workers.batching import RawRecord, consume_batches
from streams.errors import ServiceUnavailable
from tests.unit.test_lean_take import FakeStream


@dataclass(eq=False)
class Message:
    offset: int
    partition: int = 0
    key: bytes = b"k"
    value: bytes = b"v"
    timestamp: float = 0.0
    timestamp_type: int = 0
    headers: tuple[()] = ()
    generation_id: int = 1
    tracked: bool = False
    acked: bool = False


@dataclass(eq=False)
class Event:
    message: Message

    def ack(self) -> bool:
        self.message.acked = True
        return True


@dataclass
class Result:
    offsets: list[int]
    finish: Callable[[], Awaitable[None]] | None = None


@dataclass
class Worker:
    """A fake projector: logs every step as (step, first offset of its batch)."""

    stream: FakeStream
    log: list[tuple[str, int]] = field(default_factory=list)
    fail_finish_of: set[int] = field(default_factory=set)

    def acked(self, first: int) -> bool:
        return all(m.acked for m in self.messages if first <= m.offset < first + 5)

    messages: list[Message] = field(default_factory=list)

    async def handle(self, batch: Sequence[RawRecord]) -> Result:
        first = batch[0].offset
        self.log.append(("handle", first))
        await asyncio.sleep(0)
        return Result([r.offset for r in batch])

    async def ahead(self, batch: Sequence[RawRecord]) -> Result:
        first = batch[0].offset
        self.log.append(("apply", first))
        await asyncio.sleep(0.01)
        self.log.append(("applied", first))

        async def finish() -> None:
            self.log.append(("publish", first))
            await asyncio.sleep(0.05)  # Kafka's ack: long enough for the next apply to start
            if first in self.fail_finish_of:
                self.fail_finish_of.discard(first)
                raise ServiceUnavailable("kafka is down")
            self.log.append(("published", first))

        return Result([r.offset for r in batch], finish)


async def run(worker: Worker, n: int) -> list[list[int]]:
    """Feed ``n`` events in batches of 5 (one burst per 20 ms), then stop the agent."""
    done: list[list[int]] = []
    queue = worker.stream.channel.queue

    async def poison(rec: RawRecord, reason: str) -> None:
        raise AssertionError(f"nothing is poison here: {reason}")

    task = asyncio.ensure_future(
        consume_batches(
            worker.stream,
            5,
            30.0,
            worker.handle,
            what="test",
            poison=poison,
            done=lambda r: done.append(r.offsets),
            adaptive=True,
            ahead=worker.ahead,
        )
    )
    for first in range(0, n, 5):
        for i in range(first, first + 5):
            worker.messages.append(Message(i))
            queue.put_nowait(Event(worker.messages[-1]))
        await asyncio.sleep(0.02)
    for _ in range(500):  # until every event was acknowledged (at most 5 s)
        if all(m.acked for m in worker.messages):
            break
        await asyncio.sleep(0.01)
    await queue.throw(StopAsyncIteration())
    await asyncio.wait_for(task, 5)
    return done


def at(log: list[tuple[str, int]], step: str, first: int) -> int:
    return log.index((step, first))


async def test_the_next_batch_is_applied_while_the_previous_one_is_published_in_order() -> None:
    worker = Worker(FakeStream())
    done = await asyncio.wait_for(run(worker, 20), 10)
    log = worker.log
    assert done == [list(range(f, f + 5)) for f in range(0, 20, 5)]
    assert all(m.acked for m in worker.messages)
    for first in (5, 10, 15):
        prev = first - 5
        assert at(log, "apply", first) > at(log, "applied", prev)  # applies never overlap
        assert at(log, "publish", first) > at(log, "published", prev)  # publishes in order
    # the overlap itself: a batch's apply ran while its predecessor waited for Kafka
    assert any(at(log, "apply", f) < at(log, "published", f - 5) for f in (5, 10, 15))


async def test_a_failed_publish_handles_that_batch_and_the_next_again_in_order() -> None:
    worker = Worker(FakeStream(), fail_finish_of={5})
    done = await asyncio.wait_for(run(worker, 20), 10)
    log = worker.log
    assert done == [list(range(f, f + 5)) for f in range(0, 20, 5)]
    # batch 5's publish failed: it is handled again whole, then batch 10 (applied ahead of
    # it) too, before anything of batch 10 is published
    assert at(log, "handle", 5) < at(log, "handle", 10)
    assert ("publish", 10) not in log
    assert at(log, "handle", 10) < at(log, "apply", 15)
    assert all(m.acked for m in worker.messages)
