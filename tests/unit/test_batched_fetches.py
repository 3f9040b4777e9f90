"""The sinks worker's fetches wait for fuller batches (processors/kafka/fetch.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from processors.workers import sinks
from processors.workers.lean import LeanConsumer
from streams.settings import Settings


def test_sinks_consumer_asks_for_batched_fetches() -> None:
    app: Any = sinks.create_app(Settings())
    consumer = app.consumer
    assert isinstance(consumer, LeanConsumer)  # the lean deliveries stay

    async def build() -> Any:
        return consumer._thread._create_worker_consumer(app.transport)

    built = asyncio.run(build())
    assert built._fetch_min_bytes == sinks.FETCH_MIN_BYTES > 1
    assert built._fetch_max_wait_ms == sinks.FETCH_MAX_WAIT_MS
    # no longer than the batch window the audit waits anyway
    assert sinks.FETCH_MAX_WAIT_MS <= Settings().batch_within * 1000
