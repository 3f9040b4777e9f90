"""Guard against projecting onto a Redis that lost its state (emptied, or restarted without data).

The live projector may only apply onto state that a clean pass of the log produced. Redis keeps
a marker key per projector group; it exists from the group's first start onward and survives as
long as Redis keeps its data. If it vanishes while the group has committed offsets, Redis lost
the projection: applying new records onto the empty state would restart board versions at 1 and
publish wrong rank changes. The projector then waits (without acknowledging anything) until
``leaderboard rebuild --all`` has restored every board and set the marker again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processors.bootstrap import kafka_consumer
from streams import rules
from streams.errors import ServiceUnavailable
from streams.settings import Settings

log = logging.getLogger(__name__)


def epoch_key(settings: Settings) -> str:
    """The marker key of the projector group ``settings.app_id`` for this state layout."""
    return f"lb:epoch:{rules.STATE_LAYOUT}:{settings.app_id}"


#: How long to wait for a new broker's group coordinator before giving up.
COORDINATOR_WAIT_S = 60.0


def group_has_committed(settings: Settings, *, wait_s: float = COORDINATOR_WAIT_S) -> bool:
    """True if the projector group has committed an offset on any score partition.

    A broker that has just started answers NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE until
    its group coordinator is loaded: that is waited out (up to ``wait_s``), not reported.
    """
    topic = settings.topic(settings.scores_topic)
    consumer = kafka_consumer(settings, **{"group.id": settings.app_id})
    deadline = time.monotonic() + wait_s
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = list(meta.topics[topic].partitions) if topic in meta.topics else []
        while True:
            try:
                got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
                return any(tp.offset >= 0 for tp in got)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if not _coordinator_loading(err) or time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"Kafka at {settings.kafka_bootstrap} cannot tell the committed offsets "
                        f"of group {settings.app_id}: {exc}"
                    ) from exc
                log.info("waiting for the Kafka group coordinator: %s", err)
                time.sleep(0.5)
    finally:
        consumer.close()


def _coordinator_loading(err: object) -> bool:
    """True for the errors of a group coordinator that is not ready yet (retriable)."""
    return isinstance(err, KafkaError) and err.code() in (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._WAIT_COORD,
        KafkaError._TIMED_OUT,
    )


class EpochGuard:
    """Checked before every live batch: one GET; waits while Redis lacks the group's marker."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client
        self.key = epoch_key(settings)

    async def ensure(self) -> None:
        """Return when applying is safe; create the marker on a fresh deployment."""
        warned = 0.0
        while not await self.client.exists(self.key):
            committed = await asyncio.to_thread(group_has_committed, self.settings)
            if not committed:
                await self.client.set(self.key, str(int(time.time())), nx=True)
                log.info("fresh projector group %s: marker %s set", self.settings.app_id, self.key)
                return
            if time.monotonic() - warned > 30:
                log.error(
                    "Redis lost the projection state (marker %s is missing while group %s has "
                    "committed offsets): run `leaderboard rebuild --all`; the projector waits "
                    "and acknowledges nothing until then",
                    self.key,
                    self.settings.app_id,
                )
                warned = time.monotonic()
            await asyncio.sleep(1.0)


async def mark_rebuilt(settings: Settings, client: Any) -> None:
    """Set the marker after a complete rebuild: the live projector may apply again."""
    await client.set(epoch_key(settings), str(int(time.time())))
