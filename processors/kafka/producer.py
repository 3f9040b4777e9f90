"""Producer SDK on confluent-kafka: typed events in, keyed Avro records out, failures surfaced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from opentelemetry.trace import SpanKind

from processors import telemetry
from processors.bootstrap import client_config, get_codec, kafka_consumer, kafka_producer
from streams.codec import Codec
from streams.errors import DecodeError, LeaderboardError, ServiceUnavailable, ValidationError
from streams.events import (
    MAX_SUBMISSIONS,
    Event,
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    Operator,
    ScoresSubmitted,
    ScoreSubmission,
)
from streams.settings import Settings, get_settings
from streams.validation import check_match, parse_match

__all__ = [
    "DeliveryCallback",
    "DeliveryFailed",
    "LeaderboardProducer",
    "ScoreCoalescer",
    "client_config",
    "delivery_future",
    "fresh_uuid",
    "read_boards",
    "read_to_end",
]

logger = logging.getLogger(__name__)
#: How many delivery errors are kept for the report raised by ``flush``.
_KEEP_ERRORS = 20

#: Told the outcome of one record: None once Kafka acknowledged it, else the error's text.
DeliveryCallback = Callable[[str | None], None]


class DeliveryFailed(LeaderboardError):
    """One or more records were not acknowledged by Kafka."""


class _RandomIds:
    """Random (version 4) UUIDs cut from one ``os.urandom`` read per 256 of them.

    ``str(uuid.uuid4())`` costs about 8 µs here (a system call and the ``UUID`` object), a
    noticeable share of a submission's gateway CPU, which needs two (event id, request id).
    """

    _SIZE = 16 * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        # a forked child must not cut the same ids as its parent
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._pool, self._at = b"", 0

    def __call__(self) -> str:
        with self._lock:
            at = self._at
            if at >= len(self._pool):
                self._pool, at = os.urandom(self._SIZE), 0
            self._at = at + 16
            raw = self._pool[at : at + 16]
        n = int.from_bytes(raw)
        n = (n & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
        h = "%032x" % n  # noqa: UP031 - the fastest fixed-width hex here
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: A fresh random UUID in its canonical text form (event ids, request ids).
fresh_uuid = _RandomIds()


#: How long the producer gathers records before it sends (``linger.ms``). librdkafka sends
#: one produce request per partition (confluentinc/librdkafka#1700), and the broker's cost
#: follows its requests: at 10,000 entries/s over six partitions a 5 ms linger made ~400
#: requests a second from one producer, 20 ms ~190, and fewer appends mean fewer fetches
#: answered for every consumer of the topic (benchmarks/notes.md, "Requests per second").
#: ``flush`` sends at once whatever the linger; a caller that needs each record out at once
#: (the gateway behind its coalescer) passes ``config={"linger.ms": 0}``.
LINGER_MS = 20


def _producer_config(settings: Settings, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    config = client_config(settings)
    config |= {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": LINGER_MS,
        "compression.type": "lz4",
        "batch.size": 256 * 1024,
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": 60_000,
        "client.id": "leaderboard-producer",
        # Java-compatible key hashing: every client puts a board on the same partition, and
        # replay finds it with streams.partitioning.partition_for.
        "partitioner": "murmur2_random",
    }
    config.update(overrides or {})
    return config


def _bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class LeaderboardProducer:
    """Publishes events keyed by leaderboard id (one board = one partition, in order).

    Delivery is asynchronous; every failed delivery is collected by the delivery callback and
    ``flush`` (also called by ``close`` and on leaving a ``with`` block) raises DeliveryFailed
    if any record was lost, so nothing fails silently.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        codec: Codec | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Connect lazily to ``settings.kafka_bootstrap``; ``config`` overrides librdkafka keys."""
        self.settings = settings or get_settings()
        self.codec: Codec = codec or get_codec(self.settings)
        self._producer = kafka_producer(_producer_config(self.settings, config))
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self._errors: list[str] = []
        self._closed = False
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()

    def connect(self, topic: str, timeout: float = 10.0) -> None:
        """Reach the broker now (metadata of ``topic``): the idempotent producer then starts at
        once, where a first ``flush`` on a cold producer waits ~0.5 s for its start-up retry."""
        try:
            self._producer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise ServiceUnavailable(
                f"Kafka does not answer at {self.settings.kafka_bootstrap}: {exc}"
            ) from exc

    # --- delivery bookkeeping ------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
                return
            self.failed += 1
            if len(self._errors) < _KEEP_ERRORS:
                self._errors.append(f"{msg.topic()}: {err.str()}")
        logger.error("delivery to %s failed: %s", msg.topic(), err.str())

    def _reporter(self, tell: DeliveryCallback) -> Callable[[KafkaError | None, Message], None]:
        """A delivery callback that tells ``tell`` the outcome of its one record.

        Its failure is the caller's to report, so it is not counted again by ``flush``.
        """

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                with self._lock:
                    self.delivered += 1
                tell(None)
                return
            logger.error("delivery to %s failed: %s", msg.topic(), err.str())
            tell(f"{msg.topic()}: {err.str()}")

        return report

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        partition: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        if self._closed:
            raise LeaderboardError("producer is closed")
        callback = self._on_delivery if on_delivery is None else self._reporter(on_delivery)
        while True:
            try:
                if partition is None:
                    self._producer.produce(
                        topic, value=value, key=key, headers=headers, on_delivery=callback
                    )
                else:
                    self._producer.produce(
                        topic,
                        value=value,
                        key=key,
                        headers=headers,
                        on_delivery=callback,
                        partition=partition,
                    )
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise LeaderboardError(f"cannot produce to {topic}: {exc}") from exc
        self._producer.poll(0)

    # --- public API ------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        key: str | bytes | None,
        event: Event,
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Encode ``event`` and send it to the full topic name ``topic`` under ``key``.

        With ``on_delivery``, that record's outcome goes to it (see ``start_poller``) instead
        of the report ``flush`` raises.
        """
        # the current span's context (W3C traceparent) travels with the record; None when off
        headers = telemetry.kafka_headers() if telemetry.enabled() else None
        self._produce(
            topic, _bytes(key), self.codec.encode(event), headers, on_delivery=on_delivery
        )

    def publish_raw(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Mapping[str, str | bytes] | None = None,
        *,
        partition: int | None = None,
    ) -> None:
        """Send already-encoded bytes (tests, replays, dead letters); ``partition`` overrides
        the key's partition (only tests need that: a record placed by another partitioner)."""
        hdrs: list[tuple[str, str | bytes | None]] = [
            (k, v.encode() if isinstance(v, str) else v) for k, v in (headers or {}).items()
        ]
        self._produce(topic, _bytes(key), value, hdrs or None, partition)

    def submit(
        self, match: MatchResultSubmitted, *, on_delivery: DeliveryCallback | None = None
    ) -> str:
        """Send a match result to the score topic keyed by its board; returns its event id."""
        check_match(match, now_ms=int(time.time() * 1000))
        topic = self.settings.topic(self.settings.scores_topic)
        if not telemetry.enabled():
            self.publish(topic, match.leaderboard_id, match, on_delivery=on_delivery)
            return match.event_id
        attributes = {
            "messaging.destination.name": topic,
            "leaderboard.id": match.leaderboard_id,
            "leaderboard.event_id": match.event_id,
        }
        with telemetry.span("scores send", kind=SpanKind.PRODUCER, attributes=attributes):
            self.publish(topic, match.leaderboard_id, match, on_delivery=on_delivery)
        return match.event_id

    def submit_score(
        self,
        board: str,
        participant: str,
        score: int,
        *,
        at: int | str | datetime | None = None,
        operator: Operator | str | None = None,
        match_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> str:
        """Send one score as a one-entry match result; returns its event id."""
        match = one_score(
            board,
            participant,
            score,
            at=at,
            operator=operator,
            match_id=match_id,
            metadata=metadata,
        )
        return self.submit(match, on_delivery=on_delivery)

    def submit_scores(
        self,
        board: str,
        scores: Sequence[MatchResultSubmitted],
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> list[str]:
        """Send several single scores to ``board`` as ONE coalesced ``ScoresSubmitted`` record.

        Each score is a one-entry match (see ``one_score``) and keeps its own event id, time
        and outcome: the projector applies, refuses and dead-letters each on its own. One
        record costs the pipeline about what one score alone costs, which is the point.
        Returns the event ids in order; ``on_delivery`` hears the one record's outcome.
        """
        record = coalesced(board, scores, now_ms=int(time.time() * 1000))
        self.publish(
            self.settings.topic(self.settings.scores_topic), board, record, on_delivery=on_delivery
        )
        return [s.event_id for s in record.submissions]

    def coalescer(self, *, max_submissions: int = 100, linger_ms: float = 2.0) -> ScoreCoalescer:
        """A ``ScoreCoalescer`` on this producer (started; ``close`` it, or use ``with``)."""
        return ScoreCoalescer(self, max_submissions=max_submissions, linger_ms=linger_ms)

    def moderate(
        self, event: LeaderboardModerated, *, on_delivery: DeliveryCallback | None = None
    ) -> str:
        """Send a moderation to the score topic keyed by its board (so it takes its place in
        the board's order with the scores); returns its event id."""
        self.publish(
            self.settings.topic(self.settings.scores_topic),
            event.leaderboard_id,
            event,
            on_delivery=on_delivery,
        )
        return event.event_id

    def configure(self, cfg: LeaderboardConfigured) -> None:
        """Send a board configuration to the compacted configuration topic (key = board id)."""
        self.publish(self.settings.topic(self.settings.config_topic), cfg.leaderboard_id, cfg)

    def send_dead_letter(
        self,
        source_topic: str,
        partition: int,
        offset: int,
        key: str | bytes | None,
        value_bytes: bytes | None,
        reason: str,
        *,
        index: int | None = None,
    ) -> None:
        """Park an unprocessable record, bytes unchanged, on the dead-letter topic beside it.

        ``source_topic`` may be the full (prefixed) or the logical topic name. ``index`` names
        the submission of a coalesced record the value stands for (header ``source.index``).
        """
        prefix = self.settings.topic_prefix
        logical = source_topic.removeprefix(prefix) if prefix else source_topic
        headers: list[tuple[str, str | bytes | None]] = [
            ("reason", reason.encode()),
            ("source.topic", self.settings.topic(logical).encode()),
            ("source.partition", str(partition).encode()),
            ("source.offset", str(offset).encode()),
        ]
        if index is not None:
            headers.append(("source.index", str(index).encode()))
        self._produce(self.settings.dlq(logical), _bytes(key), value_bytes, headers)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        return int(self._producer.poll(timeout))

    def start_poller(self, interval: float = 0.05) -> None:
        """Serve delivery callbacks from a background thread until ``close``.

        For callers that never ``flush`` per record (the gateway): each record's
        ``on_delivery`` is called from this thread as soon as Kafka acknowledged it.
        """
        if self._poller is not None:
            return

        def run() -> None:
            while not self._stop_polling.is_set():
                self._producer.poll(interval)

        self._poller = threading.Thread(target=run, name="producer-poll", daemon=True)
        self._poller.start()

    def pending(self) -> int:
        """Records not yet acknowledged (queued or in flight)."""
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every record; raise DeliveryFailed if any was lost or still pending."""
        remaining = self._producer.flush(timeout)
        with self._lock:
            errors, self._errors = self._errors, []
            failed, self.failed = self.failed, 0
        if failed:
            raise DeliveryFailed(
                f"{failed} record(s) were not delivered to Kafka at "
                f"{self.settings.kafka_bootstrap}: {'; '.join(errors)}"
            )
        if remaining:
            raise ServiceUnavailable(
                f"{remaining} record(s) still undelivered after {timeout:g}s: is Kafka up at "
                f"{self.settings.kafka_bootstrap}? (leaderboard stack status)"
            )

    def close(self, timeout: float = 30.0) -> None:
        """Flush and refuse further sends."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            self._stop_polling.set()
            if self._poller is not None:
                self._poller.join(timeout=5)

    def __enter__(self) -> LeaderboardProducer:
        """Use as ``with LeaderboardProducer(settings) as p: ...``."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Flush on the way out (a flush failure after another error is only logged)."""
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except LeaderboardError as flush_exc:
            logger.error("flush after error failed: %s", flush_exc)


def one_score(
    board: str,
    participant: str,
    score: int,
    *,
    at: int | str | datetime | None = None,
    operator: Operator | str | None = None,
    match_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> MatchResultSubmitted:
    """One score as a validated one-entry match (new event id; time now unless ``at``)."""
    entry: dict[str, Any] = {"participant_id": participant, "score": score}
    if operator is not None:
        entry["operator"] = str(operator)
    if metadata:
        entry["metadata"] = dict(metadata)
    data: dict[str, Any] = {"leaderboard_id": board, "entries": [entry]}
    if at is not None:
        data["occurred_at"] = at
    if match_id is not None:
        data["match_id"] = match_id
    return parse_match(data)


def coalesced(
    board: str, scores: Sequence[MatchResultSubmitted], *, now_ms: int | None = None
) -> ScoresSubmitted:
    """The ``ScoresSubmitted`` record of one-entry matches to ``board``; ValidationError else."""
    if not 1 <= len(scores) <= MAX_SUBMISSIONS:
        raise ValidationError(
            f"a coalesced record carries 1 to {MAX_SUBMISSIONS} scores, not {len(scores)}"
        )
    subs = []
    for i, match in enumerate(scores):
        if match.leaderboard_id != board or len(match.entries) != 1:
            raise ValidationError(
                f"scores[{i}]: only one-entry matches of board {board!r} coalesce "
                f"(got {len(match.entries)} entries of {match.leaderboard_id!r})"
            )
        check_match(match, now_ms=now_ms)
        e = match.entries[0]
        subs.append(
            ScoreSubmission(
                match.event_id,
                match.match_id,
                match.occurred_at,
                e.participant_id,
                e.score,
                e.operator,
                e.metadata,
            )
        )
    return ScoresSubmitted(board, tuple(subs))


class ScoreCoalescer:
    """Coalesces single scores to one board into ``ScoresSubmitted`` records (SDK side).

    A board's scores are sent as one record once ``max_submissions`` are buffered, or by a
    background thread once the oldest is ``linger_ms`` old, or by ``flush``. Each score keeps
    its own event id and outcome; an ``on_delivery`` callback hears its record's outcome.
    Meant for unsharded boards (the projector dead-letters coalesced records of sharded ones).
    """

    def __init__(
        self, producer: LeaderboardProducer, *, max_submissions: int = 100, linger_ms: float = 2.0
    ) -> None:
        """Start the linger thread; ``max_submissions`` is 1 to MAX_SUBMISSIONS."""
        if not 1 <= max_submissions <= MAX_SUBMISSIONS:
            raise ValidationError(
                f"max_submissions must be 1 to {MAX_SUBMISSIONS} (got {max_submissions})"
            )
        self.producer = producer
        self.max_submissions = max_submissions
        self.linger_s = linger_ms / 1000
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, list[tuple[MatchResultSubmitted, Any]]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._linger, name="score-coalescer", daemon=True)
        self._thread.start()

    def submit_score(
        self,
        board: str,
        participant: str,
        score: int,
        *,
        at: int | str | datetime | None = None,
        operator: Operator | str | None = None,
        match_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> str:
        """Buffer one score for ``board``; returns its event id (validated at once)."""
        match = one_score(
            board,
            participant,
            score,
            at=at,
            operator=operator,
            match_id=match_id,
            metadata=metadata,
        )
        return self.submit(match, on_delivery=on_delivery)

    def submit(
        self, match: MatchResultSubmitted, *, on_delivery: DeliveryCallback | None = None
    ) -> str:
        """Buffer one one-entry match (checked at once); returns its event id."""
        if len(match.entries) != 1:
            raise ValidationError(
                f"only one-entry matches coalesce (got {len(match.entries)} entries)"
            )
        check_match(match, now_ms=int(time.time() * 1000))
        board = match.leaderboard_id
        full = None
        with self._lock:
            items = self._pending.setdefault(board, (time.monotonic(), []))[1]
            items.append((match, on_delivery))
            if len(items) >= self.max_submissions:
                full = self._pending.pop(board)[1]
        if full:
            self._send(board, full)
        return match.event_id

    def _send(self, board: str, items: list[tuple[MatchResultSubmitted, Any]]) -> None:
        tells = [tell for _, tell in items if tell is not None]

        def tell_all(error: str | None) -> None:
            for tell in tells:
                tell(error)

        matches = [m for m, _ in items]
        if len(matches) == 1:  # alone: an ordinary one-entry match
            self.producer.submit(matches[0], on_delivery=tell_all if tells else None)
        else:
            self.producer.submit_scores(board, matches, on_delivery=tell_all if tells else None)

    def _take(self, due_before: float | None) -> list[tuple[str, list[Any]]]:
        with self._lock:
            boards = [
                b for b, (t, _) in self._pending.items() if due_before is None or t <= due_before
            ]
            return [(b, self._pending.pop(b)[1]) for b in boards]

    def _linger(self) -> None:
        while not self._stop.wait(self.linger_s / 2):
            for board, items in self._take(time.monotonic() - self.linger_s):
                try:
                    self._send(board, items)
                except LeaderboardError as exc:  # the producer closed under us
                    logger.error("coalesced scores of %s not sent: %s", board, exc)

    def send_pending(self) -> None:
        """Send every buffered score now (without waiting for Kafka)."""
        for board, items in self._take(None):
            self._send(board, items)

    def flush(self, timeout: float = 30.0) -> None:
        """Send every buffered score and wait for Kafka (the producer's ``flush``)."""
        self.send_pending()
        self.producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the linger thread and flush."""
        self._stop.set()
        self._thread.join()
        self.flush(timeout)

    def __enter__(self) -> ScoreCoalescer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close (send and flush what is buffered)."""
        self.close()


def delivery_future(
    loop: asyncio.AbstractEventLoop,
) -> tuple[asyncio.Future[None], DeliveryCallback]:
    """A future of ``loop`` and the ``on_delivery`` callback (any thread) that settles it.

    The future ends with None once Kafka acknowledged the record, or with DeliveryFailed.
    """
    fut: asyncio.Future[None] = loop.create_future()

    def settle(error: str | None) -> None:
        if fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(DeliveryFailed(f"record not delivered to Kafka: {error}"))

    def tell(error: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    return fut, tell


# --- reading back -----------------------------------------------------------------------


def read_to_end(
    settings: Settings,
    topic: str,
    *,
    timeout: float = 10.0,
    limit: int | None = None,
    last: int | None = None,
) -> Iterator[Message]:
    """Every record of ``topic`` from the beginning to its end offsets at call time (with
    ``last``: only the newest ``last`` of each partition).

    Uses manual assignment and no consumer group commits, so it never disturbs other readers.
    """
    consumer = kafka_consumer(
        settings,
        **{
            "group.id": f"leaderboard-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
        },
    )
    try:
        try:
            meta = consumer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise ServiceUnavailable(
                f"Kafka does not answer at {settings.kafka_bootstrap}: {exc}"
            ) from exc
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise LeaderboardError(f"topic {topic} does not exist: run `leaderboard topics create`")
        ends: dict[int, int] = {}
        starts: dict[int, int] = {}
        for p in tmeta.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout)
            if high > low:
                ends[p] = high
                starts[p] = OFFSET_BEGINNING if last is None else max(low, high - last)
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        seen = 0
        idle_deadline = timeout
        while ends:
            msg = consumer.poll(min(1.0, idle_deadline))
            if msg is None:
                idle_deadline -= 1.0
                if idle_deadline <= 0:
                    raise ServiceUnavailable(
                        f"timed out reading {topic}: {len(ends)} partition(s) not read to the end"
                    )
                continue
            idle_deadline = timeout
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise LeaderboardError(f"reading {topic}: {err.str()}")
            part, off = msg.partition(), msg.offset()
            if part is None or off is None:
                continue
            yield msg
            seen += 1
            if limit is not None and seen >= limit:
                return
            if off + 1 >= ends.get(part, 0):
                ends.pop(part, None)
    finally:
        consumer.close()


#: Answers of a broker whose partition leadership is still settling (a topic just created, a
#: broker just restarted): asked again after a moment.
_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _watermarks(consumer: Any, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """Low and high watermark of ``tp``, waiting out a partition leader still being elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _SETTLING or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def read_boards(settings: Settings, *, timeout: float = 10.0) -> dict[str, LeaderboardConfigured]:
    """The latest configuration of every board, read from the compacted configuration topic."""
    codec = get_codec(settings)
    boards: dict[str, LeaderboardConfigured] = {}
    topic = settings.topic(settings.config_topic)
    for msg in read_to_end(settings, topic, timeout=timeout):
        key = msg.key()
        value = msg.value()
        if value is None:  # tombstone: the board was deleted
            if key is not None:
                boards.pop(key.decode(errors="replace") if isinstance(key, bytes) else key, None)
            continue
        try:
            cfg = codec.decode_as(value, LeaderboardConfigured)
        except DecodeError as exc:
            logger.warning("skipping %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), exc)
            continue
        boards[cfg.leaderboard_id] = cfg
    return boards
