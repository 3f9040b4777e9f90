"""Fetch settings for a Faust worker that can wait a little for fuller fetches.

Faust builds its aiokafka consumer with ``fetch_min_bytes`` 1: the broker answers a fetch as
soon as one record lands, so a consumer that keeps up makes one fetch (and one round of
aiokafka's per-fetch work) per append to its topics. At a paced 10,000 entries/s the
rank-change topic gets an append per projector batch and partition, so the sinks worker
fetched about as often as the projector published, ~0.4 ms of broker CPU per request
(benchmarks/notes.md). A worker whose output nobody waits for in milliseconds (the audit)
asks for ``min_bytes`` or ``max_wait_ms``, whichever comes first, and gets a few large fetches
a second instead.
"""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from processors.workers.lean import LeanConsumer

__all__ = ["use_batched_fetches"]


def use_batched_fetches(app: faust.App, *, min_bytes: int, max_wait_ms: int) -> None:
    """Make ``app`` build a ``LeanConsumer`` whose fetches wait for ``min_bytes`` of records
    or ``max_wait_ms`` (call before anything touches ``app.consumer``)."""

    class _Thread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # read by ``AIOKafkaConsumer.start`` when it builds its fetcher
            consumer._fetch_min_bytes = min_bytes
            consumer._fetch_max_wait_ms = max_wait_ms
            return consumer

    class _Consumer(LeanConsumer):
        def _new_consumer_thread(self) -> Any:
            return _Thread(self, loop=self.loop, beacon=self.beacon)

    cast(Any, app.transport).Consumer = _Consumer
