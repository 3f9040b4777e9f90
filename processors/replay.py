"""Rebuild boards from the log (or the audit history) into shadow keys, verify, and swap."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field
from queue import Empty
from typing import Any, cast

from confluent_kafka import TopicPartition

from processors.bootstrap import (
    RedisClient,
    get_codec,
    kafka_consumer,
    make_client,
    pg_connect_async,
)
from processors.replay_source import (
    AUDIT_OPERATORS,
    AuditGroup,
    AuditProcess,
    DecodeProcess,
    KafkaSource,
    Packed,
    Row,
    audit_query,
    pack,
    unpack_match,
)
from processors.replay_source import log_time as log_time  # its home before replay_source
from processors.workers.projector import Projector, RawRecord, ScoreRecord
from projections import bulk
from projections.memory import MemoryStore, Reader
from projections.sharded import ShardedStore, layout_of, refuse_cluster_swap
from projections.store import Entry, RankingStore, SourceRecord
from sinks.audit import OPERATORS
from streams import rules
from streams.errors import DecodeError, LeaderboardError, UnknownLeaderboard
from streams.events import (
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    ScoreEntry,
    ScoresSubmitted,
    ScoreSubmission,
    ScoreTopicEvent,
)
from streams.model import FoldEntry
from streams.partitioning import partition_for
from streams.rules import standings_checksum
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Prefix of the shadow keys a rebuild writes before the swap.
SHADOW_PREFIX = "lbr"
#: Records handed to one apply call.
CHUNK = 5000
#: A fold from Kafka reads and decodes in a second process (``DecodeProcess``) from this many
#: records to read: below it, the process's start costs more than decoding alongside saves.
DECODE_PROCESS_MIN_RECORDS = 20_000

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
    #: Entries folded in the model and bulk-loaded (the rest went through the apply script).
    folded: int = 0
    #: Seconds per phase: read (Kafka + decode), fold, load, check, lua (the apply script).
    phases: dict[str, float] = field(default_factory=dict)

    def add_time(self, phase: str, seconds: float) -> None:
        """Count ``seconds`` to ``phase``."""
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    @property
    def rate(self) -> float:
        """Entries applied per second."""
        return self.entries / self.seconds if self.seconds else 0.0

    @property
    def verified(self) -> bool:
        """True if every compared period matched."""
        return all(d.equal for d in self.diffs)


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


#: The metadata of every entry read from the audit (which keeps none); read-only, shared so
#: that a replay does not allocate one empty dict per entry.
_NO_METADATA: dict[str, str] = {}


async def _postgres_records(
    settings: Settings, board: str, from_timestamp: int | None, fold: bool = False
) -> AsyncGenerator[list[tuple[RawRecord, ScoreRecord]], None]:
    """The board's applied entries from the audit history, regrouped into log records.

    A server-side cursor in binary format streams the board's rows in source order (the order
    of the unique source index, so no sort); ids are resolved on the server and times arrive as
    milliseconds, so each row costs little more than its ScoreEntry. (psycopg decodes binary
    cursor rows in C; a binary ``COPY … TO STDOUT`` read with ``rows()`` was 2-4 times slower
    per CPU second here.)
    """
    query = audit_query(board, from_timestamp)
    key = board.encode()
    async with await pg_connect_async(settings) as conn:
        async with conn.cursor(name=f"replay_{uuid.uuid4().hex[:8]}", binary=True) as cur:
            await cur.execute(query)
            batch: list[tuple[RawRecord, ScoreRecord]] = []
            group: list[tuple[Any, ...]] = []
            while rows := await cur.fetchmany(20_000):
                for row in rows:
                    if group and (group[0][1] != row[1] or group[0][0] != row[0]):
                        batch.append(_record(board, key, group, fold))
                        group = []
                    group.append(row)
                if len(batch) >= CHUNK:
                    yield batch
                    batch = []
            if group:
                batch.append(_record(board, key, group, fold))
            if batch:
                yield batch


def _record(
    board: str, key: bytes, rows: list[tuple[Any, ...]], fold: bool = False
) -> tuple[RawRecord, ScoreRecord]:
    """One log record from its audit rows (partition, offset, entry index, event id, match id
    or None when equal, ms, participant, score, operator code): a match (one event id, entries
    from index 0) or the applied submissions of a coalesced record (several event ids, or a
    first index > 0). For a ``fold`` a match's entries are ``model.FoldEntry`` tuples."""
    part, off, first, eid, mid, at = rows[0][:6]
    ops = [AUDIT_OPERATORS[r[8]] for r in rows]
    if None in ops:  # a moderation's row: its command is in the log, not in the audit
        code = rows[ops.index(None)][8]
        raise LeaderboardError(
            f"leaderboard {board!r} was moderated ({OPERATORS[code]} at offset {off}): the "
            "audit keeps its outcome, not the command; replay it with --source kafka"
        )
    raw = RawRecord(part, off, key, None)
    if first == 0 and all(r[3] == eid for r in rows):
        entries: tuple[ScoreEntry, ...]
        if fold:  # all the fold reads of an entry, built at C speed (as unpack_match does)
            made = [(r[6], r[7], op, None) for r, op in zip(rows, ops, strict=True)]
            entries = cast(tuple[ScoreEntry, ...], tuple(map(FoldEntry._make, made)))
        else:
            entries = tuple(
                ScoreEntry(r[6], r[7], op, _NO_METADATA) for r, op in zip(rows, ops, strict=True)
            )
        return raw, MatchResultSubmitted(eid, mid if mid is not None else eid, board, at, entries)
    subs = tuple(
        ScoreSubmission(r[3], r[4] if r[4] is not None else r[3], r[5], r[6], r[7], op, index=r[2])
        for r, op in zip(rows, ops, strict=True)
    )
    return raw, ScoresSubmitted(board, subs)


async def _audit_chunks(
    settings: Settings, board: str, from_timestamp: int | None
) -> AsyncGenerator[list[tuple[RawRecord, ScoreRecord]], None]:
    """``_postgres_records`` for a fold, read and grouped by an ``AuditProcess`` while this
    process unpacks the previous chunk and folds it (the next chunk received in a thread)."""
    key = board.encode()
    proc = AuditProcess(settings, board, from_timestamp)
    received = asyncio.ensure_future(asyncio.to_thread(proc.receive))
    try:
        while (chunk := await received) is not None:
            received = asyncio.ensure_future(asyncio.to_thread(proc.receive))
            yield _unpack_audit(board, key, chunk)
    finally:
        if not received.done():  # given up early: stopping the process ends the receive
            proc.stop()
        with suppress(Exception):
            await received
        await asyncio.to_thread(proc.close)


def _unpack_audit(
    board: str, key: bytes, chunk: Sequence[Packed | AuditGroup]
) -> list[tuple[RawRecord, ScoreRecord]]:
    """An ``AuditProcess`` chunk as records: packed matches as events of ``FoldEntry``
    tuples (``unpack_match``), other records' rows through ``_record``."""
    out: list[tuple[RawRecord, ScoreRecord]] = []
    for row in chunk:
        if type(row) is tuple:
            out.append((RawRecord(row[0], row[1], key, None), unpack_match(board, row)))
        else:
            out.append(_record(board, key, cast(AuditGroup, row), True))
    return out


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
    live: Reader, shadow: Reader, cfg: LeaderboardConfigured, period: str | None
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
    fast: bool = True,
    decode_process: bool | None = None,
) -> ReplayReport:
    """Rebuild ``cfg``'s board into shadow keys; verify and/or swap.

    ``fast`` folds the records whose per-entry results nobody needs (all of them, or for a
    swap those the live group has committed) in the reference model and bulk-loads the final
    state, checked against the fold; the rest (a swap's catch-up tail) goes through the live apply
    script, whose results the live worker publishes. ``fast=False`` applies every record
    with the apply script, and so does a board the fold cannot load (sharded, retained
    entries or limits, or a moderation met in its log: the fast attempt is then dropped).
    A fold from Kafka reads and decodes in a second process (``decode_process``; by default
    from ``DECODE_PROCESS_MIN_RECORDS`` records to fold), so that decode and fold overlap.
    """
    args: dict[str, Any] = dict(
        source=source,
        period=period,
        from_timestamp=from_timestamp,
        verify=verify,
        swap=swap,
        dry_run=dry_run,
        progress=progress,
        client=client,
        decode_process=decode_process,
    )
    if fast and _foldable(cfg):
        try:
            return await _replay_board(settings, cfg, fast=True, **args)
        except _Unfoldable:
            log.info(
                "%s: its log holds moderations: rebuilt with the apply script", cfg.leaderboard_id
            )
    return await _replay_board(settings, cfg, fast=False, **args)


async def _replay_board(
    settings: Settings,
    cfg: LeaderboardConfigured,
    *,
    source: str,
    period: str | None,
    from_timestamp: int | None,
    verify: bool,
    swap: bool,
    dry_run: bool,
    progress: Progress | None,
    client: RedisClient | None,
    fast: bool,
    decode_process: bool | None,
) -> ReplayReport:
    """``replay_board`` with the path decided."""
    board = cfg.leaderboard_id
    sharded = layout_of(cfg) is not None
    own_client = client is None
    redis_client = client or make_client(settings)
    if sharded and swap:
        refuse_cluster_swap(redis_client, board)  # before the rebuild, not after it
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
        # a sharded board's shards; its global ranks are not read: nobody publishes the
        # rebuild's outcomes (the live worker publishes a swap's tail from the outboxes)
        ShardedStore(shadow, ranks=False) if sharded else shadow,
        lambda b: cfg if b == board else None,
        get_codec(settings),
        None,
        boards=lambda: (cfg,),
    )
    # a sharded board is read (and cleared) across its shards; it is rebuilt with the apply
    # scripts (the projector routes it through the sharded store), the fold covers plain boards
    folder = _Fold(settings, cfg, shadow) if fast and not sharded else None
    live_view: RankingStore | ShardedStore = ShardedStore(live) if sharded else live
    shadow_view: RankingStore | ShardedStore = ShardedStore(shadow) if sharded else shadow
    report = ReplayReport(board, source)
    started = time.monotonic()
    await shadow_view.clear(board)
    try:
        if source == "kafka":
            await _replay_kafka(
                settings,
                board,
                projector,
                ShardedStore(live),  # swaps and watermarks of every shard of a sharded board
                ShardedStore(shadow),
                report,
                from_timestamp,
                swap,
                progress,
                folder,
                decode_process,
            )
        elif source == "postgres":
            total = await _count_postgres(settings, board) if progress else None
            with _no_cyclic_gc(folder is not None):
                if folder is not None and decode_process is not False:
                    records = _audit_chunks(settings, board, from_timestamp)
                else:
                    records = _postgres_records(settings, board, from_timestamp, folder is not None)
                async with aclosing(records):  # its process stopped if the fold fails
                    async for chunk in records:
                        if folder is not None:
                            await folder.apply(chunk, report)
                        else:
                            stats = await projector.apply_decoded(chunk)
                            report.entries += stats.entries_applied
                        report.records += len(chunk)
                        if progress:
                            progress(len(chunk), total)
                if folder is not None:
                    await folder.load(report)
            if swap:
                raise LeaderboardError(
                    "--swap needs --source kafka: the audit history lags the log, so only the "
                    "log can catch up with the live board"
                )
        else:
            raise LeaderboardError(f"unknown source {source!r}: use kafka or postgres")
        report.seconds = time.monotonic() - started
        # after a swap the rebuilt keys are the live ones
        report.version = await (live_view if report.swapped else shadow_view).version(board)
        if verify:
            report.diffs = await compare(live_view, shadow_view, cfg, period)
    finally:
        if not report.swapped:
            await shadow_view.clear(board)
        if own_client:
            await redis_client.aclose()
    return report


async def _replay_kafka(
    settings: Settings,
    board: str,
    projector: Projector,
    live: ShardedStore,
    shadow: ShardedStore,
    report: ReplayReport,
    from_timestamp: int | None,
    swap: bool,
    progress: Progress | None,
    folder: _Fold | None = None,
    decode_process: bool | None = None,
) -> None:
    # forked before this replay's Kafka clients exist (see DecodeProcess), used if the fold
    # has enough records to read
    proc = None
    if folder is not None and decode_process is not False:
        proc = DecodeProcess(settings, board, from_timestamp)
    src = await asyncio.to_thread(KafkaSource, settings, board, from_timestamp)
    probe = await asyncio.to_thread(CommittedProbe, settings) if swap else None
    try:
        end = await asyncio.to_thread(src.end_offset)
        total = max(0, end - src.position)
        ack_from = None
        if probe is not None:
            ack_from = {src.partition: await asyncio.to_thread(probe.offset, src.partition)}
        if folder is not None:
            # records whose results the live group published already (all, without a swap)
            fold_end = end if ack_from is None else min(end, ack_from[src.partition])
            if proc is not None and (
                decode_process or fold_end - src.position >= DECODE_PROCESS_MIN_RECORDS
            ):
                proc.start(fold_end)
            elif proc is not None:  # too few records: read here, the process ends unused
                await asyncio.to_thread(proc.close)
                proc = None
            chunks = _fold_chunks(src, fold_end, projector, proc)
            with _no_cyclic_gc():
                async with aclosing(chunks):
                    while True:
                        t0 = time.monotonic()
                        got = await anext(chunks, None)
                        if got is None:
                            break
                        position, decoded = got
                        report.add_time("read", time.monotonic() - t0)
                        await folder.apply(decoded, report)
                        report.records += len(decoded)
                        if progress:
                            progress(position, total)
                await folder.load(report)
        while True:
            while True:
                t0 = time.monotonic()
                raws = await asyncio.to_thread(src.read_until, end)
                if not raws:
                    break
                decoded = _decode(projector, raws)
                t1 = time.monotonic()
                stats = await projector.apply_decoded(decoded, ack_from=ack_from)
                report.add_time("read", t1 - t0)
                report.add_time("lua", time.monotonic() - t1)
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
        if proc is not None:
            await asyncio.to_thread(proc.close)
        await asyncio.to_thread(src.close)
        if probe is not None:
            await asyncio.to_thread(probe.close)


@contextmanager
def _no_cyclic_gc(pause: bool = True) -> Iterator[None]:
    """Pause the cyclic garbage collector (if ``pause``) for a fold and its load.

    The fold makes millions of long-lived objects and no cycles, and the load as many
    short-lived tuples: with the collector on, each run of allocations makes it rescan every
    object the fold holds, again and again (about a third of the fold's time)."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _fold_chunks(
    src: KafkaSource, end: int, projector: Projector, proc: DecodeProcess | None
) -> AsyncGenerator[tuple[int, list[tuple[RawRecord, ScoreTopicEvent]]], None]:
    """``(position, decoded records)`` chunks of the board's records up to ``end``, for a fold.

    Read here (the next chunk fetched in a thread while this one folds, decoded here), or
    read and decoded by the started ``proc`` while this process unpacks and folds; the
    source's position is then moved past what the process read, for the tail that follows.
    """
    if proc is None:
        ahead = asyncio.ensure_future(asyncio.to_thread(src.read_until, end))
        try:
            while rows := await ahead:
                ahead = asyncio.ensure_future(asyncio.to_thread(src.read_until, end))
                yield (
                    src.position,
                    _unpack(projector, src.board, pack(src.settings, src.board, rows)),
                )
        finally:
            with suppress(Exception):  # no read left running on the consumer being closed
                await ahead
        return
    board = src.board
    received = asyncio.ensure_future(asyncio.to_thread(proc.receive))
    try:
        while True:
            position, packed = await received
            if packed is None:
                src.position = max(src.position, position)
                return
            received = asyncio.ensure_future(asyncio.to_thread(proc.receive))
            yield position, _unpack(projector, board, packed)
    finally:
        if not received.done():  # given up early: stop the process, which ends the receive
            await asyncio.to_thread(proc.close)
        with suppress(Exception):
            await received


def _decode(projector: Projector, rows: Sequence[Row]) -> list[tuple[RawRecord, ScoreTopicEvent]]:
    """Decode records as the projector does; undecodable ones were dead-lettered live."""
    decoded = []
    decode = projector.decode_score
    for row in rows:
        try:
            ev = decode(row[3] or b"")
        except DecodeError:
            continue
        decoded.append((RawRecord(*row), ev))
    return decoded


def _unpack(
    projector: Projector, board: str, rows: Sequence[Packed | Row]
) -> list[tuple[RawRecord, ScoreTopicEvent]]:
    """A ``DecodeProcess`` chunk as decoded records: its packed matches of the board as
    events (``unpack_match``), the other records decoded here (marks, coalesced records)."""
    decoded: list[tuple[RawRecord, ScoreTopicEvent]] = []
    decode = projector.decode_score
    for row in rows:
        if len(row) == 8:
            raw = RawRecord(row[0], row[1], row[2], None, row[3])
            decoded.append((raw, unpack_match(board, row)))
            continue
        try:
            ev = decode(row[3] or b"")
        except DecodeError:
            continue
        decoded.append((RawRecord(*row), ev))
    return decoded


class _Unfoldable(Exception):
    """The fold met a record whose state the bulk load does not write (a moderation)."""


def _foldable(cfg: LeaderboardConfigured) -> bool:
    """Whether ``cfg``'s board can take the fast path: plain, and without the state kept for
    moderation and tournament limits (retained entries, attempts), which only the apply
    script writes."""
    return (
        layout_of(cfg) is None
        and not cfg.retain_entries
        and cfg.max_attempts is None
        and cfg.max_participants is None
    )


class _Fold:
    """The fast path of one board: the projector's checks over a folding model, then a bulk
    load of the final state into the shadow keys, checked against the fold (rows read back)."""

    def __init__(self, settings: Settings, cfg: LeaderboardConfigured, shadow: RankingStore):
        self.board = cfg.leaderboard_id
        self.cfg = cfg
        self.settings = settings
        self.shadow = shadow
        self.store, self.projector = self._fresh()

    def _fresh(self) -> tuple[MemoryStore, Projector]:
        """An empty folding model, and the projector over it."""
        settings, cfg = self.settings, self.cfg
        store = MemoryStore(
            overtaken_limit=0,
            grace_ms=settings.period_grace_ms,
            dedup=(settings.dedup_window_ms, settings.dedup_max_ids),
            fold=True,
        )
        # the same projector steps (ranking time, placement, marks, entry checks) as live
        projector = Projector(
            settings,
            store,
            lambda b: cfg if b == self.board else None,
            get_codec(settings),
            None,
            boards=lambda: (cfg,),
        )
        return store, projector

    async def apply(
        self, decoded: Sequence[tuple[RawRecord, ScoreTopicEvent]], report: ReplayReport
    ) -> None:
        """Fold decoded records into the model (a moderation: ``_Unfoldable``).

        The board's own matches (nearly every record) go straight to the store with their
        ranking time, as the projector would send them, without its per-batch grouping,
        publishing and telemetry; marks and coalesced records take the projector's steps.
        Records keep their log order either way.
        """
        t0 = time.monotonic()
        before = await self.store.version(self.board)
        run: list[SourceRecord] = []
        other: list[tuple[RawRecord, ScoreTopicEvent]] = []
        for raw, ev in decoded:
            if type(ev) is MatchResultSubmitted and ev.leaderboard_id == self.board:
                if other:
                    await self.projector.apply_decoded(other)
                    other = []
                if run and run[-1].partition != raw.partition:  # one watermark per call
                    self._apply_run(run)
                    run = []
                reason = rules.reject_reason(self.cfg, ev, raw.log_time)
                if reason is None:  # else dead-lettered live: no state, no watermark
                    at = rules.ranking_time(self.cfg, ev, raw.log_time)
                    run.append(SourceRecord(raw.partition, raw.offset, ev, at))
                continue
            if isinstance(ev, LeaderboardModerated):
                raise _Unfoldable(self.board)
            if run:
                self._apply_run(run)
                run = []
            other.append((raw, ev))
        if run:
            self._apply_run(run)
        if other:
            await self.projector.apply_decoded(other)
        applied = await self.store.version(self.board) - before
        report.entries += applied
        report.folded += applied
        report.add_time("fold", time.monotonic() - t0)

    def _apply_run(self, run: list[SourceRecord]) -> None:
        """Apply consecutive matches of the board to the model, as ``MemoryStore.apply``
        does (entry checks, then ``ModelBoard.apply_valid``; the watermark moves) without
        keeping results nobody reads. A printable ASCII id of 1 to 128 characters, not
        blank, with a score in the exact range is valid at once (``rules.participant_reason``
        decides the same); any other entry gets its verdict from ``rules.entry_reject_reason``,
        so a refused match reads as it does live."""
        model, watermarks = self.store.state(self.cfg)
        apply_valid = model.apply_valid
        reject = rules.entry_reject_reason
        top = rules.MAX_EXACT
        for rec in run:
            part = rec.partition
            if rec.offset <= watermarks.get(part, -1):
                continue
            ev = rec.event
            valid: list[tuple[int, ScoreEntry]] = []
            bad: list[str] = []
            for idx, entry in enumerate(ev.entries):
                pid = entry.participant_id
                if (
                    -top <= entry.score <= top
                    and len(pid) <= 128
                    and pid.isascii()
                    and pid.isprintable()
                    and pid
                    and not pid.isspace()
                ):
                    valid.append((idx, entry))
                    continue
                reason = reject(entry.score, pid)
                if reason is None:
                    valid.append((idx, entry))
                else:
                    bad.append(f"entries[{idx}]: {reason}")
            apply_valid(part, rec.offset, ev, valid, "; ".join(bad), at=rec.at)
            watermarks[part] = rec.offset

    async def load(self, report: ReplayReport) -> None:
        """Bulk-load the folded state into the shadow keys and check it against the fold."""
        found = self.store.folded(self.board)
        if found is None:
            return
        model, watermarks = found
        keys = self.shadow.keys(self.board)
        t0 = time.monotonic()
        loaded = await bulk.load(self.shadow.client, keys, model, watermarks)
        t1 = time.monotonic()
        report.add_time("load", t1 - t0)
        await bulk.verify(self.shadow.client, keys, model, loaded)
        report.add_time("check", time.monotonic() - t1)
        # the folded state is let go with its store: MemoryStore.clear would first name every
        # Redis key the board would hold (a hash per participant and event id: a tenth of a
        # 100,000-entry rebuild's CPU) only to count them
        self.store, self.projector = self._fresh()


#: Redis hash of a ``rebuild --all`` run: board -> live watermark its rebuild swapped in.
REBUILT = "lbr:rebuild:done"
#: Progress of ``rebuild_all``: (board, records read, records to read or None).
BoardProgress = Callable[[str, int, int | None], None]

_queue: Any = None


def _init_worker(queue: Any) -> None:
    """Worker process of ``rebuild_all``: where progress goes."""
    global _queue
    _queue = queue


def _rebuild_one(settings: Settings, cfg: LeaderboardConfigured, fast: bool) -> ReplayReport:
    """One board of ``rebuild_all``, in a worker process (its own Kafka and Redis clients)."""
    board = cfg.leaderboard_id

    def tick(done: int, total: int | None) -> None:
        if _queue is not None:
            _queue.put((board, done, total))

    # no decode process: the workers already hold the cores (one fold each)
    return asyncio.run(
        replay_board(settings, cfg, swap=True, fast=fast, progress=tick, decode_process=False)
    )


async def rebuild_all(
    settings: Settings,
    boards: dict[str, LeaderboardConfigured],
    *,
    parallel: int = 2,
    resume: bool = False,
    fast: bool = True,
    report: Callable[[ReplayReport], None] | None = None,
    progress: BoardProgress | None = None,
) -> list[ReplayReport]:
    """Rebuild and swap every board, then let the live projector apply again (epoch marker).

    ``parallel`` > 1 rebuilds that many boards at once, each in its own process (the fold is
    CPU-bound Python, so boards scale with cores, not with tasks). Each finished board is
    recorded in Redis (``REBUILT``, with the watermark it swapped in), so ``resume`` skips the
    boards whose live state still holds that rebuild (live watermark at or past it).
    """
    from processors.workers.epoch import mark_rebuilt

    client: Any = make_client(settings)
    live = ShardedStore(RankingStore(client))  # a sharded board's watermark: all its shards'
    try:
        if not resume:
            await client.delete(REBUILT)
        done = {_text(k): int(v) for k, v in (await client.hgetall(REBUILT)).items()}
        todo: list[LeaderboardConfigured] = []
        for name, cfg in sorted(boards.items()):
            if layout_of(cfg) is not None:
                refuse_cluster_swap(client, name)  # before any board is rebuilt
            part = partition_for(name, settings.partitions)
            if name in done and await live.watermark(name, part) >= done[name]:
                log.info("%s: rebuilt at offset %d already, skipped (--resume)", name, done[name])
                continue
            todo.append(cfg)
        reports: list[ReplayReport] = []

        async def finished(rep: ReplayReport) -> None:
            part = partition_for(rep.board, settings.partitions)
            await client.hset(REBUILT, rep.board, await live.watermark(rep.board, part))
            reports.append(rep)
            if report is not None:
                report(rep)

        if parallel <= 1 or len(todo) <= 1:
            for cfg in todo:
                board = cfg.leaderboard_id

                def tick(n: int, total: int | None, board: str = board) -> None:
                    if progress is not None:
                        progress(board, n, total)

                rep = await replay_board(
                    settings, cfg, swap=True, fast=fast, progress=tick, client=client
                )
                await finished(rep)
        else:
            await _rebuild_in_processes(settings, todo, parallel, fast, finished, progress)
        await mark_rebuilt(settings, client)
        await client.delete(REBUILT)
        return reports
    finally:
        await client.aclose()


async def _rebuild_in_processes(
    settings: Settings,
    todo: Sequence[LeaderboardConfigured],
    parallel: int,
    fast: bool,
    finished: Callable[[ReplayReport], Awaitable[None]],
    progress: BoardProgress | None,
) -> None:
    """Rebuild ``todo`` in ``parallel`` worker processes (boards in name order); their
    progress comes back through one queue, each report as its board finishes."""
    ctx = multiprocessing.get_context(worker_start_method())
    queue = ctx.Queue()
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                board, n, total = queue.get(timeout=0.2)
            except Empty:
                continue
            if progress is not None:
                loop.call_soon_threadsafe(progress, board, n, total)

    reader = threading.Thread(target=drain, name="rebuild-progress", daemon=True)
    workers = min(parallel, len(todo))
    try:
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)
        ) as pool:
            # the first submit starts every worker (forked: before the progress thread runs)
            pending = {
                loop.run_in_executor(pool, _rebuild_one, settings, cfg, fast) for cfg in todo
            }
            reader.start()
            while pending:
                got, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in got:
                    await finished(fut.result())
    finally:
        stop.set()
        if reader.is_alive():
            await asyncio.to_thread(reader.join)
        queue.close()


def worker_start_method() -> str:
    """How ``rebuild --all --parallel`` starts its workers: forked when this process runs no
    native threads (no Kafka client is open), so that each worker starts with the project
    already imported (a spawned one imports it again: ~1.2 s of CPU); else spawned, since a
    Kafka client's threads must not be forked."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc: count nothing as safe
        return "spawn"
    return "fork" if threads <= threading.active_count() else "spawn"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
