"""Every worker's view of the compacted configuration topic (the equivalent of a global table)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from processors.bootstrap import get_codec, kafka_consumer
from streams.errors import DecodeError
from streams.events import LeaderboardConfigured
from streams.settings import Settings

log = logging.getLogger(__name__)


class ConfigView:
    """Latest ``LeaderboardConfigured`` per board, read from the configuration topic.

    A background thread reads every partition of the topic from the beginning, outside any
    consumer group, so each worker (and each replay) sees every board. ``sync`` waits until
    the view has read up to the topic's end, so a board created before its first score was
    produced is always known when that score is processed.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(settings.config_topic)
        self.codec = get_codec(settings)
        self.boards: dict[str, LeaderboardConfigured] = {}
        self._positions: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None

    def _new_consumer(self) -> Any:
        return kafka_consumer(
            self.settings,
            **{
                "group.id": f"config-view-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                # a record answers the fetch at once; the wait bounds only an idle fetch
                # (each expiry costs the broker about 1 ms of CPU: benchmarks/notes.md)
                "fetch.wait.max.ms": 500,
            },
        )

    def start(self) -> None:
        """Assign every partition from the beginning and start reading in the background."""
        consumer = self._new_consumer()
        meta = consumer.list_topics(self.topic, timeout=10)
        parts = meta.topics[self.topic].partitions if self.topic in meta.topics else {}
        if not parts:
            consumer.close()
            raise RuntimeError(
                f"topic {self.topic} does not exist: run `leaderboard topics create`"
            )
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name="config-view", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, timeout=0.2):
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("configuration topic: %s", msg.error())
                        continue
                    self._apply(msg.partition(), msg.offset(), msg.value())
        finally:
            consumer.close()

    def _apply(self, partition: int, offset: int, value: bytes | None) -> None:
        cfg: LeaderboardConfigured | None = None
        if value is not None:
            try:
                cfg = self.codec.decode_as(value, LeaderboardConfigured)
            except DecodeError as exc:
                log.warning("configuration record %d/%d skipped: %s", partition, offset, exc)
        with self._lock:
            if cfg is not None:
                self.boards[cfg.leaderboard_id] = cfg
            self._positions[partition] = offset + 1

    def get(self, board: str) -> LeaderboardConfigured | None:
        """The board's latest configuration, or None if unknown (so far)."""
        with self._lock:
            return self.boards.get(board)

    def snapshot(self) -> dict[str, LeaderboardConfigured]:
        """A copy of every known board's configuration."""
        with self._lock:
            return dict(self.boards)

    def _caught_up(self, targets: dict[int, int]) -> bool:
        with self._lock:
            return all(self._positions.get(p, 0) >= hi for p, hi in targets.items())

    def end_offsets(self) -> dict[int, int]:
        """Current end offset of each partition of the configuration topic."""
        probe = self._new_consumer()
        try:
            meta = probe.list_topics(self.topic, timeout=10)
            out = {}
            for p in meta.topics[self.topic].partitions:
                _, hi = probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                out[p] = hi
            return out
        finally:
            probe.close()

    def sync_blocking(self, timeout: float = 10.0) -> bool:
        """Wait until every record present now has been read; False on time-out."""
        targets = self.end_offsets()
        deadline = time.monotonic() + timeout
        while not self._caught_up(targets):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    async def sync(self, wait_s: float = 10.0) -> bool:
        """``sync_blocking`` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.sync_blocking, wait_s)
