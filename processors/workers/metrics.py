"""Prometheus metrics of the stream workers: what an on-call engineer watches besides the logs.

Each worker process serves ``/metrics`` on ``LEADERBOARD_WORKER_METRICS_PORT`` (127.0.0.1; 0,
the default, serves nothing, so several workers on one host never fight over a port). Consumer
lag per partition comes from Kafka itself: ``leaderboard stack kafka consumer-groups
--describe --all-groups``.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram, start_http_server

from streams.settings import Settings

__all__ = ["BATCH_SECONDS", "DEAD_LETTERS", "ENTRIES", "RECORDS", "reason_kind", "serve"]

log = logging.getLogger(__name__)

RECORDS = Counter("leaderboard_worker_records", "Records processed", ["role"])
ENTRIES = Counter("leaderboard_worker_entries_applied", "Score entries applied to Redis", ["role"])
DEAD_LETTERS = Counter(
    "leaderboard_worker_dead_letters", "Records parked on a dead-letter topic", ["role", "reason"]
)
BATCH_SECONDS = Histogram(
    "leaderboard_worker_batch_seconds",
    "Time to process one batch (apply, publish, acknowledge)",
    ["role"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

#: Dead-letter reasons by kind (a bounded label set), first match wins.
_KINDS = (
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


def serve(settings: Settings, role: str) -> None:
    """Serve /metrics for this worker when a port is configured (and log where)."""
    port = settings.worker_metrics_port
    if not port:
        return
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:  # metrics must never stop a worker: say so and go on
        log.warning("%s metrics not served: port %d: %s", role, port, exc)
        return
    log.info("%s metrics on http://127.0.0.1:%d/metrics", role, port)


class Timer:
    """Measures one batch into BATCH_SECONDS."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.started = time.perf_counter()

    def done(self) -> None:
        """Record the time since the timer was made."""
        BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - self.started)
