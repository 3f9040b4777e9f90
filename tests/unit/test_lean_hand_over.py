"""``LeanConsumer._hand_over``: raw records put on their agent's queue without the conductor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from processors.workers.lean import LeanConsumer, RawEvent, RawSchema, ack

TP0 = TP("scores", 0)


def message(offset: int) -> ConsumerMessage:
    return ConsumerMessage(
        topic="scores",
        partition=0,
        offset=offset,
        timestamp=1.5,
        timestamp_type=1,
        headers=[],
        key=b"board",
        value=b"v",
        checksum=None,
        tp=TP0,
    )


def queue(maxsize: int = 100) -> ThrowableQueue[Any]:
    flow = FlowControlEvent()
    flow.resume()
    return ThrowableQueue(flow_control=flow, maxsize=maxsize)


@dataclass(eq=False)
class Channel:
    schema: Any
    queue: ThrowableQueue[Any] = field(default_factory=queue)


@dataclass
class Topics:
    _tp_index: dict[TP, set[Channel]] = field(default_factory=dict)


@dataclass
class App:
    topics: Topics = field(default_factory=Topics)


class Consumer:
    """What ``_hand_over`` and an acknowledgement use of the consumer: the app and ``ack``."""

    _raw: Any = None
    _hand_over = LeanConsumer._hand_over

    def __init__(self, channels: set[Channel]) -> None:
        self.app = App(Topics({TP0: channels}))
        self.acked: list[int] = []

    def ack(self, msg: Any) -> bool:
        self.acked.append(msg.offset)
        return True


def test_a_record_of_a_raw_channel_is_queued_as_the_conductor_would_deliver_it() -> None:
    chan = Channel(RawSchema())
    consumer = Consumer({chan})
    msg = message(7)
    assert consumer._hand_over(msg)
    got = chan.queue.get_nowait()
    assert isinstance(got, RawEvent) and got.message is msg
    assert msg.refcount == 1  # the reference the channel holds until it acknowledges
    assert consumer.acked == []
    ack([got])  # as the workers acknowledge a handled batch: the offset may be committed
    assert consumer.acked == [7]
    assert msg.refcount == 0


def test_records_go_through_the_conductor_unless_one_raw_channel_has_room() -> None:
    decoding = Channel(faust.Schema(value_serializer="json"))
    two = Consumer({Channel(RawSchema()), Channel(RawSchema())})
    for consumer in (Consumer({decoding}), two, Consumer(set())):
        msg = message(1)
        assert not consumer._hand_over(msg)
        assert msg.refcount == 0
    full = Channel(RawSchema(), queue(maxsize=10))
    consumer = Consumer({full})
    for i in range(full.queue.pressure_high_size):
        assert consumer._hand_over(message(i))
    # at the pressure mark the conductor delivers (and tells the consumer to slow down)
    assert not consumer._hand_over(message(99))
    assert full.queue.qsize() == full.queue.pressure_high_size


def test_a_rebalance_that_replaces_the_channels_is_seen() -> None:
    raw = Channel(RawSchema())
    consumer = Consumer({raw})
    assert consumer._hand_over(message(1))
    decoding = Channel(faust.Schema(value_serializer="json"))
    consumer.app.topics._tp_index[TP0] = {decoding}  # the conductor rebuilds its index
    assert not consumer._hand_over(message(2))
    consumer.app.topics._tp_index[TP0] = {raw}
    assert consumer._hand_over(message(3))
    assert [raw.queue.get_nowait().message.offset for _ in range(2)] == [1, 3]
