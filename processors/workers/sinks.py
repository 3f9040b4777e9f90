"""The sinks worker: rank changes → PostgreSQL audit, period-end snapshots, board registry,
participant profiles (PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
import psycopg

from processors import heap, logs
from processors.bootstrap import (
    audit_writer,
    faust_app,
    get_codec,
    make_client,
    migrate_database,
    pg_connect,
)
from processors.kafka.fetch import use_batched_fetches
from processors.kafka.producer import LeaderboardProducer
from processors.workers import metrics
from processors.workers.batching import TRANSIENT, Poison, RawRecord, consume_batches
from projections.profiles import profiles_key, write_profiles
from projections.store import RankingStore
from sinks import participants, registry, snapshots
from sinks.audit import AuditWriter
from sinks.audit_decode import AuditDecoder, RankChangedFields
from sinks.history import closed_period
from streams.errors import DecodeError, ServiceUnavailable
from streams.events import (
    LeaderboardConfigured,
    ParticipantProfileUpdated,
    PeriodClosed,
    RankChanged,
)
from streams.settings import Settings

__all__ = ["RawRecord", "SinkProcessor", "create_app", "retry_until_done", "run_sinks_worker"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What the audit decoder may return for a rank-change record that the sinks accept.
_RANK_CHANGE_KINDS: tuple[type[RankChanged | RankChangedFields], ...] = (
    RankChanged,
    RankChangedFields,
)


@dataclass(slots=True)
class SinkStats:
    """What one batch did."""

    records: int = 0
    rows: int = 0
    inserted: int = 0
    dead_lettered: int = 0
    periods_closed: list[tuple[str, str]] = field(default_factory=list)


async def retry_until_done(
    what: str,
    service: str,
    fn: Callable[[], Awaitable[T]],
    *,
    first_delay: float = 0.2,
    max_delay: float = 5.0,
) -> T:
    """Run ``fn`` until it succeeds, sleeping with capped exponential backoff on outages."""
    delay = first_delay
    failures = 0
    while True:
        try:
            result = await fn()
        except TRANSIENT as exc:
            failures += 1
            log.warning(
                "%s: %s unreachable, retrying in %.1f s (attempt %d): %s",
                what,
                service,
                delay,
                failures,
                _first_line(exc),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        if failures:
            log.warning("%s: %s is back after %d failed attempt(s)", what, service, failures)
        return result


class SinkProcessor:
    """The work of the sinks worker, independent of Faust (tests drive it directly)."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: AuditWriter | None = None,
        store: RankingStore | None = None,
        producer: LeaderboardProducer | None = None,
        max_delay: float = 5.0,
    ) -> None:
        self.settings = settings
        self.codec = get_codec(settings)
        self.audit_decoder = AuditDecoder(self.codec)
        self.writer = writer or audit_writer(settings)
        self.store = store or RankingStore(make_client(settings), grace_ms=settings.period_grace_ms)
        self.producer = producer or LeaderboardProducer(settings, codec=self.codec)
        self.max_delay = max_delay
        self.configs: dict[str, LeaderboardConfigured] = {}
        self.rank_topic = settings.topic(settings.rank_changes_topic)
        self.periods_topic = settings.topic(settings.periods_topic)
        self._pg: psycopg.Connection[tuple[Any, ...]] | None = None
        # both agents share the connection; a transaction must not interleave with another call
        self._pg_lock = threading.Lock()

    # ------------------------------------------------------------------ PostgreSQL (sync)
    def _conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._pg is None or self._pg.closed or self._pg.broken:
            self._pg = pg_connect(self.settings, autocommit=True, connect_timeout=5)
        return self._pg

    def _sync(self, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        with self._pg_lock:
            try:
                return fn(self._conn())
            except psycopg.OperationalError:
                if self._pg is not None:
                    self._pg.close()
                self._pg = None
                raise

    async def _db(self, what: str, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        async def attempt() -> T:
            return await asyncio.to_thread(self._sync, fn)

        return await retry_until_done(what, "PostgreSQL", attempt, max_delay=self.max_delay)

    async def load_registry(self) -> int:
        """Fill the in-memory configurations from the registry table; return how many."""
        boards = await self._db("registry", registry.list_boards)
        for cfg in boards:
            self.configs[cfg.leaderboard_id] = cfg
        return len(boards)

    async def close(self) -> None:
        """Release connections (flushes the producer)."""
        await self.writer.close()
        if self._pg is not None:
            self._pg.close()
        await asyncio.to_thread(self.producer.flush)

    # ------------------------------------------------------------------ configuration agent
    async def handle_configs(self, records: Sequence[RawRecord]) -> int:
        """Upsert every decodable configuration record into the registry; return how many."""
        n = 0
        for rec in records:
            ev = self._decode(rec, LeaderboardConfigured, self.settings.config_topic)
            if ev is None:
                continue
            cfg = ev
            await self._db("registry", functools.partial(_upsert, cfg=cfg))
            current = self.configs.get(cfg.leaderboard_id)
            if current is None or current.configured_at <= cfg.configured_at:
                self.configs[cfg.leaderboard_id] = cfg
            n += 1
        await self._flush_producer()
        return n

    # ------------------------------------------------------------------ profiles agent
    async def handle_profiles(self, records: Sequence[RawRecord]) -> int:
        """Project a batch of profile records into Redis (one HSET) and PostgreSQL (one
        batch); the latest record of each participant wins, a tombstone deletes. Returns the
        number of participants written.

        Repeating a batch writes the same values again: a redelivery after a crash leaves the
        same state as a clean replay of the compacted topic.
        """
        latest: dict[str, tuple[ParticipantProfileUpdated, int, int] | None] = {}
        for rec in records:
            if rec.value is None:
                if rec.key:
                    latest[rec.key.decode(errors="replace")] = None  # tombstone
                continue
            ev = self._decode(rec, ParticipantProfileUpdated, self.settings.participants_topic)
            if ev is not None:
                latest[ev.participant_id] = (ev, rec.partition, rec.offset)
        return await self.store_profiles(latest)

    async def store_profiles(
        self, latest: dict[str, tuple[ParticipantProfileUpdated, int, int] | None]
    ) -> int:
        """Write the given latest profiles (None = deleted) to PostgreSQL, then Redis."""
        rows = [row for row in latest.values() if row is not None]
        gone = [pid for pid, row in latest.items() if row is None]
        if not rows and not gone:
            return 0

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            participants.delete_profiles(conn, gone)
            return participants.upsert_profiles(conn, rows)

        await self._db("profiles", write)

        async def cache() -> int:
            return await write_profiles(
                self.store.client,
                (ev for ev, _, _ in rows),
                gone,
                key=profiles_key(self.settings.topic_prefix),
            )

        n = await retry_until_done("profiles", "Redis", cache, max_delay=self.max_delay)
        await self._flush_producer()  # dead letters of undecodable records
        return n

    # ------------------------------------------------------------------ audit agent
    async def handle_rank_changes(self, records: Sequence[RawRecord]) -> SinkStats:
        """Write a batch of rank-change records durably, then close the periods they end."""
        stats = SinkStats(records=len(records))
        batch: list[RankChanged | RankChangedFields] = []
        for rec in records:
            ev = self._decode_rank_change(rec)
            if ev is None:
                stats.dead_lettered += 1
            else:
                batch.append(ev)
        stats.rows = sum(len(ev.changes) for ev in batch)
        if stats.rows:

            async def write() -> int:
                return await self.writer.write(batch)

            stats.inserted = await retry_until_done(
                "audit", "PostgreSQL", write, max_delay=self.max_delay
            )
        for ev in batch:
            for period in ev.periods_ended:
                if await self.close_period(ev.leaderboard_id, period, ev.version_to):
                    stats.periods_closed.append((ev.leaderboard_id, period))
        await self._flush_producer()
        return stats

    async def close_period(self, board: str, period: str, fallback_version: int) -> bool:
        """Snapshot one ended period from Redis, publish PeriodClosed, let the keys expire.

        Safe to repeat: an already closed period is not rewritten (its stored checksum is
        published again, so a crash between the write and the publish loses nothing).
        """
        closed = await self._db("period close", lambda c: closed_period(c, board, period))
        written = False
        if closed is None:
            cfg = await self._config(board)
            sort = cfg.sort_order
            keys = self.store.keys(board)

            async def read() -> tuple[list[tuple[int, str, int]], int]:
                entries = await self.store.standings(board, period, sort)
                raw = await self.store.client.hget(keys.ended_periods, period)
                version = int(raw) if raw is not None else fallback_version
                return [(e.rank, e.participant_id, e.score) for e in entries], version

            rows, version = await retry_until_done(
                "period close", "Redis", read, max_delay=self.max_delay
            )
            if not rows:
                log.error(
                    "period %s of %s ended but Redis holds no standings for it (expired?); "
                    "not closing it: rebuild the board with `leaderboard replay`",
                    period,
                    board,
                )
                return False
            checksum = self._checksum(rows)
            written = await self._db(
                "period close",
                lambda c: snapshots.write_period(c, cfg, period, rows, checksum, version),
            )
            closed = await self._db("period close", lambda c: closed_period(c, board, period))
            if closed is None:  # pragma: no cover - written in the line above
                raise ServiceUnavailable(f"closed period {board}/{period} vanished after writing")
        event = PeriodClosed(
            leaderboard_id=board,
            period=period,
            participant_count=closed.participant_count,
            checksum=closed.checksum,
            version=closed.version,
        )
        self.producer.publish(self.periods_topic, board, event)
        await self._flush_producer()
        await self._expire(board, period)
        log.info(
            "period %s of %s closed: %d participants, checksum %s",
            period,
            board,
            closed.participant_count,
            closed.checksum[:12],
        )
        return written

    async def _expire(self, board: str, period: str) -> None:
        keys = self.store.keys(board)
        ttl = self.settings.closed_period_retention_s

        async def expire() -> None:
            pipe = self.store.client.pipeline(transaction=False)
            pipe.expire(keys.zset(period), ttl)
            for key in keys.index_keys(period):
                pipe.expire(key, ttl)
            pipe.expire(keys.attempts(period), ttl)  # (no-ops where the board has none)
            pipe.expire(keys.history(period), ttl)
            await pipe.execute()

        await retry_until_done("period expiry", "Redis", expire, max_delay=self.max_delay)

    @staticmethod
    def _checksum(rows: list[tuple[int, str, int]]) -> str:
        from streams.rules import standings_checksum

        return standings_checksum(rows)

    async def _config(self, board: str) -> LeaderboardConfigured:
        """The board's configuration; waits for the registry if it is not known yet."""
        delay = 0.2
        while True:
            cfg = self.configs.get(board)
            if cfg is not None:
                return cfg
            found = await self._db("registry", lambda c: registry.get_board(c, board))
            if found is not None:
                self.configs[board] = found
                return found
            log.warning(
                "board %s is not in the registry yet; waiting %.1f s for its configuration",
                board,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    # ------------------------------------------------------------------ helpers
    def _decode(self, rec: RawRecord, kind: type[T], logical_topic: str) -> T | None:
        """The event of ``rec`` if it is a ``kind``; otherwise dead-letter it and return None."""
        return self._decode_with(self.codec.decode, rec, (kind,), kind.__name__, logical_topic)

    def _decode_rank_change(self, rec: RawRecord) -> RankChanged | RankChangedFields | None:
        """``_decode`` of a rank-change record through the audit's decoder (the same records
        accepted, the same reasons for the others; sinks/audit_decode.py)."""
        return self._decode_with(
            self.audit_decoder.decode,
            rec,
            _RANK_CHANGE_KINDS,
            RankChanged.__name__,
            self.settings.rank_changes_topic,
        )

    def _decode_with(
        self,
        decode: Callable[[bytes], object],
        rec: RawRecord,
        kinds: tuple[type[T], ...],
        want: str,
        logical_topic: str,
    ) -> T | None:
        """``decode`` the value of ``rec``; an undecodable record, or one of none of ``kinds``,
        is dead-lettered with its reason (``want`` names the expected type) and gives None."""
        try:
            if rec.value is None:
                raise DecodeError("record has no value")
            ev = decode(rec.value)
        except DecodeError as exc:
            self._dead_letter(rec, logical_topic, f"undecodable: {exc}")
            return None
        if isinstance(ev, kinds):
            return ev
        reason = f"unexpected event type {type(ev).__name__} (want {want})"
        self._dead_letter(rec, logical_topic, reason)
        return None

    def _dead_letter(self, rec: RawRecord, logical_topic: str, reason: str) -> None:
        log.error(
            "%s[%d]@%d: %s; sending it to the dead-letter topic",
            logical_topic,
            rec.partition,
            rec.offset,
            reason,
        )
        metrics.DEAD_LETTERS.labels("sinks", metrics.reason_kind(reason)).inc()
        self.producer.send_dead_letter(
            logical_topic, rec.partition, rec.offset, rec.key, rec.value, reason
        )

    def poison(self, logical_topic: str) -> Poison:
        """The dead-letter action for records of ``logical_topic`` that fail on their own."""

        async def park(rec: RawRecord, reason: str) -> None:
            metrics.DEAD_LETTERS.labels("sinks", metrics.reason_kind(reason)).inc()
            self.producer.send_dead_letter(
                logical_topic, rec.partition, rec.offset, rec.key, rec.value, reason
            )
            await self._flush_producer()

        return park

    async def _flush_producer(self) -> None:
        async def flush() -> None:
            await asyncio.to_thread(self.producer.flush, 30.0)

        await retry_until_done("publish", "Kafka", flush, max_delay=self.max_delay)


#: A fetch of the sinks worker is answered once this many bytes of records are there, or
#: after ``FETCH_MAX_WAIT_MS``: rank changes take ~42 bytes per entry on the log, so at a paced
#: 10,000 entries/s the wait decides (~20 KB in 50 ms) and under a backlog the bytes do.
FETCH_MIN_BYTES = 64 * 1024
#: The longest a sinks fetch waits for ``FETCH_MIN_BYTES``; no more than the batch window
#: (``batch_within``, 50 ms) that the audit waits anyway.
FETCH_MAX_WAIT_MS = 50


def create_app(settings: Settings) -> faust.App:
    """The sinks' Faust app: audit + period close on rank changes, registry on configs,
    profiles (PostgreSQL and Redis) on the participants topic.

    Every agent runs at concurrency 1 (faust-streaming #606); ``consume_batches`` acknowledges a
    batch only after the loop body returned, i.e. after its rows are durable in PostgreSQL.
    """
    app = faust_app(
        settings,
        settings.app_id + "-sinks",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.batch_size,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
    )
    # deliveries without a task each (lean.py), and a few full fetches a second rather than
    # one per rank-change append: the audit waits its batch window anyway (kafka/fetch.py)
    use_batched_fetches(app, min_bytes=FETCH_MIN_BYTES, max_wait_ms=FETCH_MAX_WAIT_MS)
    rank_changes = app.topic(
        settings.topic(settings.rank_changes_topic), value_serializer="raw", key_serializer="raw"
    )
    configs = app.topic(
        settings.topic(settings.config_topic), value_serializer="raw", key_serializer="raw"
    )
    profiles = app.topic(
        settings.topic(settings.participants_topic), value_serializer="raw", key_serializer="raw"
    )
    state: dict[str, SinkProcessor] = {}
    lag = metrics.LagMeter(app, "sinks", [rank_changes.get_topic_name()])
    lag.every(5.0)
    ready = asyncio.Lock()

    async def processor() -> SinkProcessor:
        async with ready:
            if "p" not in state:
                proc = SinkProcessor(settings)
                n = await proc.load_registry()
                log.info("sinks ready: %d boards in the registry", n)
                state["p"] = proc
                log.info("start-up heap frozen: %d objects", heap.freeze())
        return state["p"]

    @app.agent(rank_changes, concurrency=1)
    async def audit(stream: Any) -> None:
        proc = await processor()

        def logged(stats: SinkStats) -> None:
            log.debug(
                "audit: %d records, %d rows (%d new)", stats.records, stats.rows, stats.inserted
            )
            metrics.count_audit(stats.rows, stats.inserted, len(stats.periods_closed))

        await consume_batches(
            stream,
            settings.batch_size,
            settings.batch_within,
            metrics.observed("sinks", rank_changes.get_topic_name(), proc.handle_rank_changes, lag),
            what="writing the audit",
            poison=proc.poison(settings.rank_changes_topic),
            done=logged,
        )

    @app.agent(configs, concurrency=1)
    async def boards(stream: Any) -> None:
        proc = await processor()
        await consume_batches(
            stream,
            100,
            settings.batch_within,
            proc.handle_configs,
            what="registry upsert",
            poison=proc.poison(settings.config_topic),
        )

    @app.agent(profiles, concurrency=1)
    async def participant_profiles(stream: Any) -> None:
        proc = await processor()
        await consume_batches(
            stream,
            settings.batch_size,
            settings.batch_within,
            proc.handle_profiles,
            what="profile upsert",
            poison=proc.poison(settings.participants_topic),
        )

    return app


def run_sinks_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the sinks worker in the foreground until interrupted (migrates the schema first)."""
    metrics.serve(settings, "sinks")
    applied = migrate_database(settings)
    if applied:
        log.info("applied migrations %s", ", ".join(applied))
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logs.worker_config(settings, loglevel),
    )
    worker.spinner = None  # the start-up spinner floods logs that are not terminals
    worker.execute_from_commandline()


def _upsert(conn: psycopg.Connection[tuple[Any, ...]], cfg: LeaderboardConfigured) -> bool:
    return registry.upsert_board(conn, cfg)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
