"""The projector after a Redis failover: Redis's applied position, not Kafka's, is the record.

Replication to a Redis replica is asynchronous: the primary may acknowledge an apply, the
projector publish its rank changes and commit its Kafka offsets, and the primary die before the
replica received the apply. The replica the Sentinels promote is then behind the committed
offsets, and the next batch would apply on top of a state that lacks those records (their
entries lost, board versions handed out twice). The same holds for a single node whose
append-only file lost its last second in a host crash.

So after every batch the projector records, per score partition, the last offset it applied
(``applied_key``), written after the batch's apply; the replication stream is ordered, so a
primary that holds the mark holds every apply before it. Before the first batch of a partition,
and again after any Redis error or change of primary, the projector compares that mark with the
batch's first offset: records in between were consumed (and their rank changes published) but
are missing from this Redis, so they are read again from Kafka and re-applied with the very
same projection step, without publishing (their rank changes and dead letters were published
when they were first processed, and the re-apply reproduces the same versions). The apply
script skips any record at or below a board's own watermark, so re-reading a record that is
already there changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import TopicPartition

from processors.bootstrap import kafka_consumer
from processors.replay import log_time
from processors.workers.batching import RawRecord, run_isolating
from processors.workers.projector import Projector
from projections.redis_client import primary_address
from streams.settings import Settings

log = logging.getLogger(__name__)


def applied_key(settings: Settings) -> str:
    """Hash of the projector group's last applied offset per score partition."""
    return f"lb:applied:{settings.app_id}"


def read_range(settings: Settings, partition: int, start: int, end: int) -> list[RawRecord]:
    """The score topic's records ``start`` <= offset < ``end`` of ``partition`` (blocking)."""
    topic = settings.topic(settings.scores_topic)
    consumer = kafka_consumer(
        settings,
        **{
            "group.id": f"leaderboard-failover-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",  # never skip ahead silently
        },
    )
    out: list[RawRecord] = []
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        idle = 0
        while position < end:
            msgs = consumer.consume(min(5000, end - position), timeout=1.0)
            idle = 0 if msgs else idle + 1
            if idle > 30:
                raise TimeoutError(
                    f"re-reading {topic}[{partition}] offsets {start}-{end - 1}: "
                    f"no record after {position} for 30 s"
                )
            for msg in msgs:
                if msg.error():
                    continue
                off = int(msg.offset() or 0)
                if off >= end:
                    position = end
                    break
                position = off + 1
                out.append(RawRecord(partition, off, msg.key(), msg.value(), log_time(msg)))
    finally:
        consumer.close()
    return out


async def _skip(record: RawRecord, reason: str) -> None:
    """A poison record met again while re-applying: it was dead-lettered the first time."""


class FailoverFollower:
    """Keeps the projector's Redis state a prefix-complete copy of what it has consumed."""

    def __init__(self, settings: Settings, client: Any, projector: Projector) -> None:
        self.settings = settings
        self.client = client
        self.key = applied_key(settings)
        # the same projection step, publishing nothing (see the module docstring)
        self.replayer = Projector(
            settings, projector.store, projector.configs, projector.codec, None
        )
        self.checked: set[int] = set()
        self.primary = primary_address(client)
        #: Records re-applied since start (a figure for logs and the fault test).
        self.reapplied = 0

    def lost(self) -> None:
        """A Redis call failed: check every partition again before its next batch."""
        self.checked.clear()

    def needs_check(self, batch: Sequence[RawRecord]) -> bool:
        """True when ``before`` would look at Redis for ``batch`` (a partition not checked
        since the start or the last error, or another primary)."""
        return primary_address(self.client) != self.primary or any(
            rec.partition not in self.checked for rec in batch
        )

    async def before(self, batch: Sequence[RawRecord]) -> None:
        """Re-apply what this Redis lacks before ``batch``'s partitions move on."""
        now = primary_address(self.client)
        if now != self.primary:
            if self.primary is not None:
                log.warning("Redis primary moved from %s to %s", self.primary, now)
            self.primary = now
            self.checked.clear()
        first: dict[int, int] = {}
        for rec in batch:
            if rec.partition not in self.checked:
                first[rec.partition] = min(first.get(rec.partition, rec.offset), rec.offset)
        if not first:
            return
        parts = sorted(first)
        marks = await self.client.hmget(self.key, [str(p) for p in parts])
        for part, mark in zip(parts, marks, strict=True):
            if mark is not None and int(mark) + 1 < first[part]:
                await self._catch_up(part, int(mark) + 1, first[part])
            self.checked.add(part)

    async def _catch_up(self, partition: int, start: int, end: int) -> None:
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(None, read_range, self.settings, partition, start, end)
        log.warning(
            "Redis (primary %s) is behind the consumed offsets on partition %d: re-applying "
            "offsets %d-%d (%d records) from Kafka",
            self.primary,
            partition,
            start,
            end - 1,
            len(records),
        )
        size = self.settings.batch_size
        for i in range(0, len(records), size):
            # a poison record was dead-lettered when it was first consumed: skipped here
            await run_isolating(
                records[i : i + size], self.replayer.process, what="re-applying", poison=_skip
            )
        await self.client.hset(self.key, str(partition), str(end - 1))
        self.reapplied += len(records)
        log.warning("re-applied %d records of partition %d", len(records), partition)

    async def after(self, batch: Sequence[RawRecord]) -> None:
        """Record the batch's last offset per partition (after its apply: see the docstring)."""
        last: dict[str, str] = {}
        for rec in batch:
            last[str(rec.partition)] = str(max(rec.offset, int(last.get(str(rec.partition), -1))))
        await self.client.hset(self.key, mapping=last)
