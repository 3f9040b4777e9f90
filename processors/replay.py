"""Rebuild boards from the log (or the audit history) into shadow keys, verify, and swap."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Message, TopicPartition
from psycopg import sql

from processors.bootstrap import (
    RedisClient,
    get_codec,
    kafka_consumer,
    make_client,
    pg_connect_async,
)
from processors.workers.projector import Projector, RawRecord
from projections.sharded import layout_of
from projections.store import Entry, RankingStore
from sinks.audit import OPERATORS
from streams.errors import DecodeError, LeaderboardError, UnknownLeaderboard
from streams.events import (
    CLOCK_KEY,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ScoreEntry,
)
from streams.partitioning import partition_for
from streams.rules import standings_checksum
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Prefix of the shadow keys a rebuild writes before the swap.
SHADOW_PREFIX = "lbr"
#: Records handed to one apply call.
CHUNK = 5000

Progress = Callable[[int, int | None], None]


@dataclass(slots=True)
class PeriodDiff:
    """How one period of the rebuilt board compares with the live one."""

    period: str
    live_checksum: str
    live_count: int
    rebuilt_checksum: str
    rebuilt_count: int
    first_differences: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """True if both standings are identical."""
        return self.live_checksum == self.rebuilt_checksum


@dataclass(slots=True)
class ReplayReport:
    """Summary of one board's replay."""

    board: str
    source: str
    records: int = 0
    entries: int = 0
    seconds: float = 0.0
    swapped: bool = False
    diffs: list[PeriodDiff] = field(default_factory=list)
    version: int = 0

    @property
    def rate(self) -> float:
        """Entries applied per second."""
        return self.entries / self.seconds if self.seconds else 0.0

    @property
    def verified(self) -> bool:
        """True if every compared period matched."""
        return all(d.equal for d in self.diffs)


def _consumer(settings: Settings) -> Any:
    return kafka_consumer(
        settings,
        **{
            "group.id": f"leaderboard-replay-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        },
    )


class CommittedProbe:
    """Reads the live projector group's committed offsets (one consumer, reused)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(settings.scores_topic)
        self.consumer = kafka_consumer(settings, **{"group.id": settings.app_id})

    def offset(self, partition: int) -> int:
        """Next offset the live projector group will read on ``partition`` (0 if none)."""
        got = self.consumer.committed([TopicPartition(self.topic, partition)], timeout=10)
        return max(0, got[0].offset) if got and got[0].offset >= 0 else 0

    def close(self) -> None:
        """Release the consumer."""
        self.consumer.close()


def log_time(msg: Message) -> int | None:
    """The broker's append time of ``msg`` in ms (as the live worker sees it), else None."""
    kind, ms = msg.timestamp()
    return int(ms) if kind == TIMESTAMP_LOG_APPEND_TIME else None


class KafkaSource:
    """Reads one board's records from its partition of the score topic."""

    def __init__(self, settings: Settings, board: str, from_timestamp: int | None = None) -> None:
        self.settings = settings
        self.board = board
        self.key = board.encode()
        self.topic = settings.topic(settings.scores_topic)
        self.consumer = _consumer(settings)
        meta = self.consumer.list_topics(self.topic, timeout=10)
        if self.topic not in meta.topics or not meta.topics[self.topic].partitions:
            raise LeaderboardError(
                f"topic {self.topic} does not exist: run `leaderboard topics create`"
            )
        self.partition = partition_for(board, len(meta.topics[self.topic].partitions))
        start = OFFSET_BEGINNING
        if from_timestamp is not None:
            found = self.consumer.offsets_for_times(
                [TopicPartition(self.topic, self.partition, from_timestamp)], timeout=10
            )
            start = found[0].offset if found[0].offset >= 0 else self.end_offset()
        self.consumer.assign([TopicPartition(self.topic, self.partition, start)])
        low, _ = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, self.partition), timeout=10
        )
        self.position = max(low, start) if start >= 0 else low

    def end_offset(self) -> int:
        """Current end (high watermark) of the board's partition."""
        _, high = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, self.partition), timeout=10, cached=False
        )
        return int(high)

    def read_until(self, end: int) -> list[RawRecord]:
        """Next records (of every board) up to offset ``end`` (exclusive); [] when reached."""
        if self.position >= end:
            return []
        out: list[RawRecord] = []
        while not out:
            # ask for no more than what is left: consume() then returns as soon as it has them
            want = max(1, min(CHUNK, end - self.position))
            for msg in self.consumer.consume(want, timeout=1.0):
                if msg.error():
                    continue
                off = msg.offset()
                if off >= end:
                    self.position = end
                    break
                self.position = off + 1
                if msg.key() in (self.key, CLOCK_KEY):  # the board's records and the marks
                    out.append(
                        RawRecord(msg.partition(), off, msg.key(), msg.value(), log_time(msg))
                    )
            if self.position >= end:
                break
        return out

    def close(self) -> None:
        """Release the consumer."""
        self.consumer.close()


#: Operators of ScoreEntry by their stored code (sinks.audit.OPERATORS order).
_OPERATORS = tuple(Operator(name) for name in OPERATORS)
#: The metadata of every entry read from the audit (which keeps none); read-only, shared so
#: that a replay does not allocate one empty dict per entry.
_NO_METADATA: dict[str, str] = {}


async def _postgres_records(
    settings: Settings, board: str, from_timestamp: int | None
) -> AsyncIterator[list[tuple[RawRecord, MatchResultSubmitted]]]:
    """The board's applied entries from the audit history, regrouped into log records.

    A server-side cursor in binary format streams the board's rows in source order (the order
    of the unique source index, so no sort); ids are resolved on the server and times arrive as
    milliseconds, so each row costs little more than its ScoreEntry. (psycopg decodes binary
    cursor rows in C; a binary ``COPY … TO STDOUT`` read with ``rows()`` was 2-4 times slower
    per CPU second here.)
    """
    cond = sql.SQL("a.board_id = (SELECT id FROM audit_boards WHERE name = {})").format(
        sql.Literal(board)
    )
    if from_timestamp is not None:
        since = datetime.fromtimestamp(from_timestamp / 1000, tz=UTC)
        cond += sql.SQL(" AND a.occurred_at >= {}").format(sql.Literal(since))
    query = sql.SQL(
        "SELECT a.source_partition, a.source_offset,"
        " coalesce(a.event_uuid::text, a.event_text), a.match_id,"
        " round(date_part('epoch', a.occurred_at) * 1000)::int8,"
        " a.participant_id, a.submitted_score, a.operator"
        " FROM audit_entries a WHERE {}"
        " ORDER BY a.source_partition, a.source_offset, a.entry_index"
    ).format(cond)
    key = board.encode()
    ops, none = _OPERATORS, _NO_METADATA
    async with await pg_connect_async(settings) as conn:
        async with conn.cursor(name=f"replay_{uuid.uuid4().hex[:8]}", binary=True) as cur:
            await cur.execute(query)
            batch: list[tuple[RawRecord, MatchResultSubmitted]] = []
            head: tuple[int, int, str, str, int] | None = None
            entries: list[ScoreEntry] = []
            while rows := await cur.fetchmany(20_000):
                for part, off, eid, mid, at, pid, score, op in rows:
                    if head is None or head[1] != off or head[0] != part:
                        if head is not None:
                            batch.append(_record(board, key, head, entries))
                            entries = []
                        head = (part, off, eid, mid if mid is not None else eid, at)
                    entries.append(ScoreEntry(pid, score, ops[op], none))
                if len(batch) >= CHUNK:
                    yield batch
                    batch = []
            if head is not None:
                batch.append(_record(board, key, head, entries))
            if batch:
                yield batch


def _record(
    board: str, key: bytes, head: tuple[int, int, str, str, int], entries: list[ScoreEntry]
) -> tuple[RawRecord, MatchResultSubmitted]:
    part, off, eid, mid, at = head
    event = MatchResultSubmitted(eid, mid, board, at, tuple(entries))
    return RawRecord(part, off, key, None), event


async def _count_postgres(settings: Settings, board: str) -> int:
    async with await pg_connect_async(settings) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT source_partition, source_offset"
            " FROM audit_entries WHERE board_id = (SELECT id FROM audit_boards WHERE name = %s))"
            " AS records",
            [board],
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def compare(
    live: RankingStore, shadow: RankingStore, cfg: LeaderboardConfigured, period: str | None
) -> list[PeriodDiff]:
    """Checksums, counts and the first differing ranks of every (or one) period."""
    board = cfg.leaderboard_id
    periods = (
        [period]
        if period
        else sorted(set(await live.periods(board)) | set(await shadow.periods(board)))
    )
    diffs = []
    for p in periods:
        a = await live.standings(board, p, cfg.sort_order)
        b = await shadow.standings(board, p, cfg.sort_order)
        d = PeriodDiff(
            p,
            standings_checksum((e.rank, e.participant_id, e.score) for e in a),
            len(a),
            standings_checksum((e.rank, e.participant_id, e.score) for e in b),
            len(b),
        )
        if not d.equal:
            for i in range(max(len(a), len(b))):
                x = a[i] if i < len(a) else None
                y = b[i] if i < len(b) else None
                if x != y:
                    d.first_differences.append(f"rank {i + 1}: live {_row(x)} rebuilt {_row(y)}")
                    if len(d.first_differences) >= 5:
                        break
        diffs.append(d)
    return diffs


async def replay_board(
    settings: Settings,
    cfg: LeaderboardConfigured,
    *,
    source: str = "kafka",
    period: str | None = None,
    from_timestamp: int | None = None,
    verify: bool = False,
    swap: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    client: RedisClient | None = None,
) -> ReplayReport:
    """Rebuild ``cfg``'s board into shadow keys with the live apply code; verify and/or swap."""
    board = cfg.leaderboard_id
    if layout_of(cfg) is not None:
        raise LeaderboardError(
            f"{board} is a sharded board: replay, verify and swap handle unsharded boards only "
            "for now (rebuild it into a new unsharded board id with the same log, or see "
            "docs/scaling.md)"
        )
    own_client = client is None
    redis_client = client or make_client(settings)
    dedup = (settings.dedup_window_ms, settings.dedup_max_ids)
    live = RankingStore(redis_client, grace_ms=settings.period_grace_ms, dedup=dedup)
    shadow = RankingStore(
        redis_client,
        prefix=f"{SHADOW_PREFIX}{uuid.uuid4().hex[:6]}" if dry_run else SHADOW_PREFIX,
        # a swap leaves results for the live worker to publish: they need every notice
        overtaken_limit=settings.overtaken_limit if swap else 0,
        grace_ms=settings.period_grace_ms,
        dedup=dedup,
    )
    projector = Projector(
        settings,
        shadow,
        lambda b: cfg if b == board else None,
        get_codec(settings),
        None,
        boards=lambda: (cfg,),
    )
    report = ReplayReport(board, source)
    started = time.monotonic()
    await shadow.clear(board)
    try:
        if source == "kafka":
            await _replay_kafka(
                settings, board, projector, live, shadow, report, from_timestamp, swap, progress
            )
        elif source == "postgres":
            total = await _count_postgres(settings, board) if progress else None
            async for chunk in _postgres_records(settings, board, from_timestamp):
                stats = await projector.apply_decoded(chunk)
                report.records += len(chunk)
                report.entries += stats.entries_applied
                if progress:
                    progress(len(chunk), total)
            if swap:
                raise LeaderboardError(
                    "--swap needs --source kafka: the audit history lags the log, so only the "
                    "log can catch up with the live board"
                )
        else:
            raise LeaderboardError(f"unknown source {source!r}: use kafka or postgres")
        report.seconds = time.monotonic() - started
        report.version = await shadow.version(board)
        if verify:
            report.diffs = await compare(live, shadow, cfg, period)
    finally:
        if not report.swapped:
            await shadow.clear(board)
        if own_client:
            await redis_client.aclose()
    return report


async def _replay_kafka(
    settings: Settings,
    board: str,
    projector: Projector,
    live: RankingStore,
    shadow: RankingStore,
    report: ReplayReport,
    from_timestamp: int | None,
    swap: bool,
    progress: Progress | None,
) -> None:
    src = await asyncio.to_thread(KafkaSource, settings, board, from_timestamp)
    probe = await asyncio.to_thread(CommittedProbe, settings) if swap else None
    try:
        end = await asyncio.to_thread(src.end_offset)
        total = max(0, end - src.position)
        ack_from = None
        if probe is not None:
            ack_from = {src.partition: await asyncio.to_thread(probe.offset, src.partition)}
        while True:
            while True:
                raws = await asyncio.to_thread(src.read_until, end)
                if not raws:
                    break
                decoded = []
                for raw in raws:
                    try:
                        ev = projector.codec.decode_as(raw.value or b"", MatchResultSubmitted)
                    except DecodeError:
                        continue  # live dead-lettered it
                    decoded.append((raw, ev))
                stats = await projector.apply_decoded(decoded, ack_from=ack_from)
                report.records += len(raws)
                report.entries += stats.entries_applied
                if progress:
                    progress(src.position, total)
            if probe is None:
                return
            # Swap as soon as the shadow has applied everything the live board has; if the live
            # projector moved on meanwhile, catch up exactly to its watermark and try again
            # (each round reads only the few records live applied in between).
            if await live.swap_from(shadow, board, src.partition):
                report.swapped = True
                return
            live_wm = await live.watermark(board, src.partition)
            end = max(src.position, live_wm + 1)
            ack_from = {src.partition: await asyncio.to_thread(probe.offset, src.partition)}
    finally:
        await asyncio.to_thread(src.close)
        if probe is not None:
            await asyncio.to_thread(probe.close)


async def rebuild_all(
    settings: Settings,
    boards: dict[str, LeaderboardConfigured],
    *,
    parallel: int = 2,
    resume: bool = False,
    report: Callable[[ReplayReport], None] | None = None,
) -> list[ReplayReport]:
    """Rebuild and swap every board, then let the live projector apply again (epoch marker).

    Progress is kept in Redis (``lbr:rebuild:done``), so ``resume`` skips finished boards.
    """
    from processors.workers.epoch import mark_rebuilt

    client: Any = make_client(settings)
    marker = "lbr:rebuild:done"
    try:
        if not resume:
            await client.delete(marker)
        done = {b.decode() if isinstance(b, bytes) else b for b in await client.smembers(marker)}
        todo = [cfg for name, cfg in sorted(boards.items()) if name not in done]
        sem = asyncio.Semaphore(parallel)
        reports: list[ReplayReport] = []
        skipped: list[str] = []

        async def one(cfg: LeaderboardConfigured) -> None:
            async with sem:
                if layout_of(cfg) is not None:
                    log.error("%s is sharded: not rebuilt (unsupported)", cfg.leaderboard_id)
                    skipped.append(cfg.leaderboard_id)
                    return
                rep = await replay_board(settings, cfg, swap=True, client=client)
                await client.sadd(marker, cfg.leaderboard_id)
                reports.append(rep)
                if report is not None:
                    report(rep)

        await asyncio.gather(*(one(c) for c in todo))
        await mark_rebuilt(settings, client)
        await client.delete(marker)
        if skipped:
            raise LeaderboardError(
                f"rebuilt {len(reports)} board(s); not rebuilt (sharded, unsupported): "
                + ", ".join(sorted(skipped))
            )
        return reports
    finally:
        await client.aclose()


def _row(entry: Entry | None) -> str:
    return f"{entry.participant_id}={entry.score}" if entry else "(none)"


def require_board(boards: dict[str, LeaderboardConfigured], board: str) -> LeaderboardConfigured:
    """The board's configuration or a one-line error naming it."""
    cfg = boards.get(board)
    if cfg is None:
        raise UnknownLeaderboard(f"unknown leaderboard {board!r}: see `leaderboard boards list`")
    return cfg


def summarize(reports: Sequence[ReplayReport]) -> str:
    """One line per board for the CLI."""
    lines = []
    for r in reports:
        line = (
            f"{r.board}: {r.records:,} records, {r.entries:,} entries from {r.source} in "
            f"{r.seconds:.1f}s ({r.rate:,.0f} entries/s), version {r.version}"
        )
        if r.swapped:
            line += ", swapped into live"
        lines.append(line)
        for d in r.diffs:
            state = "match" if d.equal else "DIFFER"
            lines.append(
                f"  {d.period}: {state} live {d.live_count} {d.live_checksum[:16]} / rebuilt "
                f"{d.rebuilt_count} {d.rebuilt_checksum[:16]}"
            )
            lines += [f"    {x}" for x in d.first_differences]
    return "\n".join(lines)
