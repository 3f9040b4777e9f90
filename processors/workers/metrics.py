"""Prometheus metrics of the stream workers: what an on-call engineer watches besides the logs.

Each worker process serves ``/metrics`` on ``LEADERBOARD_WORKER_METRICS_PORT`` (on
``LEADERBOARD_WORKER_METRICS_HOST``, 127.0.0.1 unless set; port 0, the default, serves nothing,
so several workers on one host never fight over a port) and
announces it under the stack dir (``processors.scrape_targets``) for the local Prometheus and
the gateway's ``/ops`` page.

Everything is counted per batch, never per record: counters move by a batch's totals, the
histograms take one observation per batch, and consumer lag is read from what the consumer
already knows (the high watermark of its last fetch response minus the position after the
last processed batch), so no metric costs a broker round trip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from processors import scrape_targets
from processors.workers.batching import RawRecord
from streams.settings import Settings

__all__ = [
    "BATCH_RECORDS",
    "BATCH_SECONDS",
    "COPY_ROWS",
    "DEAD_LETTERS",
    "ENTRIES",
    "LAG",
    "OUTBOX",
    "PERIODS_CLOSED",
    "PUBLISH_SECONDS",
    "RECORDS",
    "TOPK_REBUILDS",
    "LagMeter",
    "Timer",
    "count_audit",
    "observed",
    "reason_kind",
    "serve",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RECORDS = Counter("leaderboard_worker_records", "Records processed", ["role"])
ENTRIES = Counter("leaderboard_worker_entries_applied", "Score entries applied to Redis", ["role"])
DEAD_LETTERS = Counter(
    "leaderboard_worker_dead_letters", "Records parked on a dead-letter topic", ["role", "reason"]
)
BATCH_SECONDS = Histogram(
    "leaderboard_worker_batch_seconds",
    "Time to process one batch (apply, publish, acknowledge)",
    ["role"],
    buckets=_SECONDS,
)
BATCH_RECORDS = Histogram(
    "leaderboard_worker_batch_records",
    "Records per processed batch",
    ["role"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
PUBLISH_SECONDS = Histogram(
    "leaderboard_worker_publish_seconds",
    "Time from handing a batch's results to the producer until Kafka acknowledged them all",
    ["role"],
    buckets=_SECONDS,
)
LAG = Gauge(
    "leaderboard_worker_consumer_lag",
    "Records of an assigned partition not processed yet (high watermark minus position)",
    ["role", "topic", "partition"],
)
OUTBOX = Gauge(
    "leaderboard_worker_outbox_entries",
    "Applied results held in the Redis outbox until Kafka acknowledges their publication",
    ["role"],
)
PERIODS_CLOSED = Counter(
    "leaderboard_worker_periods_closed", "Periods closed (ended in Redis, snapshotted)", ["role"]
)
COPY_ROWS = Counter(
    "leaderboard_worker_copy_rows",
    "Audit rows sent to PostgreSQL with COPY (result=copied) and new among them (inserted)",
    ["role", "result"],
)
TOPK_REBUILDS = Counter(
    "leaderboard_worker_topk_rebuilds", "Cached top-K lists rebuilt (sharded boards)", ["role"]
)

#: Dead-letter reasons by kind (a bounded label set), first match wins.
_KINDS = (
    ("banned: ", "banned"),
    ("max_attempts: ", "max_attempts"),
    ("max_participants: ", "max_participants"),
    ("not applied on this board", "moderation"),
    ("has no record in period", "moderation"),
    ("does not retain entries", "moderation"),
    ("moderation needs a plain board", "moderation"),
    ("duplicate event id", "duplicate"),
    ("late event", "late"),
    ("deduplication horizon", "dedup_horizon"),
    ("ahead of the log", "future_time"),
    ("accepted range", "time_range"),
    ("record key", "placement"),
    ("hashes to partition", "placement"),
    ("participant_id", "participant_id"),
    ("exact range", "score_range"),
    ("unknown leaderboard", "unknown_board"),
    ("tournament window", "window"),
    ("is closed", "closed_board"),
    ("schema", "decode"),
    ("Avro", "decode"),
    ("undecodable", "decode"),
    ("tombstone", "decode"),
)


def reason_kind(reason: str) -> str:
    """The label of a dead-letter reason: one of a small fixed set, ``other`` for the rest."""
    for fragment, kind in _KINDS:
        if fragment in reason:
            return kind
    return "other"


def _initialize(role: str) -> None:
    """Create the role's series at zero, so that a scrape lists them before the first batch."""
    RECORDS.labels(role)
    ENTRIES.labels(role)
    BATCH_SECONDS.labels(role)
    BATCH_RECORDS.labels(role)
    PUBLISH_SECONDS.labels(role)
    OUTBOX.labels(role)
    PERIODS_CLOSED.labels(role)
    for kind in sorted({k for _, k in _KINDS} | {"other"}):
        DEAD_LETTERS.labels(role, kind)
    if role == "sinks":
        COPY_ROWS.labels(role, "copied")
        COPY_ROWS.labels(role, "inserted")
    if role == "topk":
        TOPK_REBUILDS.labels(role)


def serve(settings: Settings, role: str) -> None:
    """Serve /metrics for this worker when a port is configured (and log where)."""
    port = settings.worker_metrics_port
    if not port:
        return
    _initialize(role)
    try:
        start_http_server(port, addr=settings.worker_metrics_host)
    except OSError as exc:  # metrics must never stop a worker: say so and go on
        log.warning("%s metrics not served: port %d: %s", role, port, exc)
        return
    try:
        scrape_targets.register(settings, role, port)
    except OSError as exc:
        log.warning("%s metrics: could not announce the target: %s", role, exc)
    log.info("%s metrics on http://%s:%d/metrics", role, settings.worker_metrics_host, port)


class Timer:
    """Measures one batch into BATCH_SECONDS."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.started = time.perf_counter()

    def done(self) -> None:
        """Record the time since the timer was made."""
        BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - self.started)


class LagMeter:
    """Consumer lag per assigned partition of ``topics``, from the consumer's own bookkeeping.

    The high watermark comes with every fetch response (aiokafka keeps it per partition); the
    position is the offset after the last record this worker processed, or, for a partition
    it has not processed anything of yet, the offset after the last one Faust committed.
    """

    def __init__(self, app: Any, role: str, topics: Sequence[str]) -> None:
        self.app = app
        self.role = role
        self.topics = frozenset(topics)
        self.positions: dict[tuple[str, int], int] = {}
        self.shown: set[tuple[str, str]] = set()

    def every(self, interval: float) -> None:
        """Also refresh on a Faust timer, so that lag shows while no batch completes."""

        async def refresh_lag() -> None:
            self.refresh()

        self.app.timer(interval)(refresh_lag)

    def processed(self, topic: str, batch: Sequence[RawRecord]) -> None:
        """Note the positions after ``batch`` (in log order per partition) and refresh."""
        last = {rec.partition: rec.offset for rec in batch}
        for partition, offset in last.items():
            self.positions[(topic, partition)] = offset + 1
        self.refresh()

    def refresh(self) -> None:
        """Set the lag gauge of every assigned partition; drop those no longer assigned."""
        try:
            consumer = self.app.consumer
            assigned = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        except Exception:  # not started or rebalancing: keep the last values
            return
        committed = getattr(consumer, "_committed_offset", {})
        now: set[tuple[str, str]] = set()
        for tp in assigned:
            high = _highwater(consumer, tp)
            pos = self.positions.get((tp.topic, tp.partition))
            if pos is None:
                done = committed.get(tp)
                pos = done + 1 if done is not None else None
            if high is None or pos is None:
                continue
            labels = (tp.topic, str(tp.partition))
            LAG.labels(self.role, *labels).set(max(0, high - pos))
            now.add(labels)
        for labels in self.shown - now:
            LAG.remove(self.role, *labels)
        self.shown = now


def _highwater(consumer: Any, tp: Any) -> int | None:
    """The consumer's last known high watermark of ``tp``; None if unknown or not assigned."""
    try:
        high = consumer.highwater(tp)
    except Exception as exc:  # the assignment changed under us
        log.debug("no high watermark for %s: %s", tp, exc)
        return None
    return int(high) if high is not None else None


def count_audit(rows: int, inserted: int, periods_closed: int) -> None:
    """Count one audit batch of the sinks worker: rows sent by COPY, new rows, periods closed."""
    COPY_ROWS.labels("sinks", "copied").inc(rows)
    COPY_ROWS.labels("sinks", "inserted").inc(inserted)
    PERIODS_CLOSED.labels("sinks").inc(periods_closed)


def observed(
    role: str,
    topic: str,
    handle: Callable[[Sequence[RawRecord]], Awaitable[T]],
    lag: LagMeter | None,
) -> Callable[[Sequence[RawRecord]], Awaitable[T]]:
    """``handle`` measured: batch size, batch time, records, and the lag once it returned."""

    async def measured(batch: Sequence[RawRecord]) -> T:
        timer = Timer(role)
        result = await handle(batch)
        timer.done()
        BATCH_RECORDS.labels(role).observe(len(batch))
        RECORDS.labels(role).inc(len(batch))
        if lag is not None:
            lag.processed(topic, batch)
        return result

    return measured
