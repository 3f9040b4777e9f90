"""The projection step shared by the live worker and replay: decode, validate, apply, publish."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from opentelemetry.trace import SpanKind

from processors import telemetry
from processors.workers.batching import (
    RawRecord as RawRecord,  # re-exported: replay and tests use it
)
from processors.workers.metrics import DEAD_LETTERS, OUTBOX, PUBLISH_SECONDS, reason_kind
from projections.results import RecordResult
from projections.sharded import ShardedStore, layout_of
from projections.store import (
    BoardOutcome,
    PreparedApply,
    RankingStore,
    SourceRecord,
    moderation_carrier,
)
from streams import avro_out, rules
from streams.codec import Codec
from streams.errors import DecodeError, ServiceUnavailable
from streams.events import (
    CLOCK_BOARD,
    CLOCK_KEY,
    MAX_SUBMISSIONS,
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    ParticipantsNotified,
    RankChanged,
    ScoresSubmitted,
    ScoreTopicEvent,
    is_clock_mark,
)
from streams.partitioning import partition_for
from streams.ports import ConfigLookup, Publisher, RankingWriter
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Most changes (or notices) in one output record: ~150 bytes each keeps records near 300 KB,
#: far below Kafka's 1 MB default message size, whatever the batch size.
RECORD_CHUNK = 2000

#: A score record as decoded: one match, or several coalesced independent submissions.
ScoreRecord = ScoreTopicEvent


@dataclass(slots=True)
class BatchStats:
    """Counters of one processed batch."""

    records: int = 0
    entries_applied: int = 0
    dead_lettered: int = 0
    rank_changed_records: int = 0
    notifications: int = 0
    periods_ended: list[tuple[str, str]] = field(default_factory=list)
    #: With ``process(defer=True)``: what is left to do (publish the applied outcome, wait
    #: for Kafka's ack, clear the outbox); None when the batch was handled whole.
    finish: Callable[[], Awaitable[None]] | None = None


class Projector:
    """Applies batches of raw score records to Redis and publishes what changed.

    The same object serves the live Faust agent and the replay command (with a store on
    shadow keys and ``publish=False``), so there is one implementation of the rules.
    """

    def __init__(
        self,
        settings: Settings,
        store: RankingWriter[SourceRecord, BoardOutcome],
        configs: ConfigLookup | Callable[[str], LeaderboardConfigured | None],
        codec: Codec,
        producer: Publisher | None,
        *,
        boards: Callable[[], Iterable[LeaderboardConfigured]] | None = None,
    ) -> None:
        """``boards`` lists the boards a clock mark may move (default: every known one)."""
        self.settings = settings
        self._boards = boards
        self.store = store
        self.configs = configs
        self.codec = codec
        self.producer = producer
        self.scores_topic = settings.topic(settings.scores_topic)
        self.rank_topic = settings.topic(settings.rank_changes_topic)
        self.notify_topic = settings.topic(settings.notifications_topic)
        self._sharded: ShardedStore | None = None
        self._partitions: dict[str, int] = {}
        #: the output records' headers when written directly (see ``_direct_headers``)
        self._direct: tuple[bytes, bytes] | None = _UNKNOWN
        #: the last apply call sent ahead (``_send_chunks``) until its replies are read
        self._inflight: asyncio.Future[Any] | None = None
        #: deferred batches started so far, and the highest one whose sent apply failed
        self._deferred = 0
        self._failed_batch = -1

    def _config(self, board: str) -> LeaderboardConfigured | None:
        if callable(self.configs):
            return self.configs(board)
        return self.configs.get(board)

    def _dead_letter(self, raw: RawRecord, reason: str) -> None:
        """Park ``raw`` on the dead-letter topic with ``reason`` (not flushed here)."""
        DEAD_LETTERS.labels("projector", reason_kind(reason)).inc()
        log.warning(
            "dead-lettering %s[%d]@%d: %s", self.scores_topic, raw.partition, raw.offset, reason
        )
        if self.producer is not None:
            self.producer.send_dead_letter(
                self.scores_topic, raw.partition, raw.offset, raw.key, raw.value, reason
            )

    def _dead_letter_submission(
        self, raw: RawRecord, index: int, sub: MatchResultSubmitted, reason: str
    ) -> None:
        """Park one refused submission of a coalesced record, as its own one-entry match.

        Its value is the submission re-encoded as ``MatchResultSubmitted`` (its event id, time
        and entry), so a reader of the dead-letter topic (the gateway's ``?wait=true``, a
        redrive) sees the one submission that was refused; the headers name its source
        position, ``source.index`` included.
        """
        DEAD_LETTERS.labels("projector", reason_kind(reason)).inc()
        log.warning(
            "dead-lettering %s[%d]@%d submission %d (%s): %s",
            self.scores_topic,
            raw.partition,
            raw.offset,
            index,
            sub.event_id,
            reason,
        )
        if self.producer is not None:
            self.producer.send_dead_letter(
                self.scores_topic,
                raw.partition,
                raw.offset,
                raw.key,
                self.codec.encode(sub),
                reason,
                index=index,
            )

    async def dead_letter(self, raw: RawRecord, reason: str) -> None:
        """Park a record whose processing fails on its own, and wait until Kafka has it."""
        self._dead_letter(raw, reason)
        if self.producer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, 30.0)

    async def process(
        self,
        batch: Sequence[RawRecord],
        *,
        defer: bool = False,
        applied: Callable[[], Awaitable[None]] | None = None,
    ) -> BatchStats:
        """Decode, validate, apply and publish one batch; returns its counters.

        ``defer`` returns once the batch is applied, with the publish of its outcome, the
        wait for Kafka's ack and the outbox clear left in ``stats.finish``: the
        worker applies the next batch meanwhile (see ``batching.consume_batches``). Until
        ``finish`` returned, the batch's records count as unpublished (their results wait in
        the outbox, so handling the batch again publishes them). With ``defer`` the last apply
        call may still run in Redis when this returns (``_send_chunks``): ``finish`` reads its
        replies first, then awaits ``applied`` (if given), then publishes.
        """
        stats = BatchStats(records=len(batch))
        decoded: list[tuple[RawRecord, ScoreRecord]] = []
        for raw in batch:
            if raw.value is None:
                self._dead_letter(raw, "empty record (tombstone) on the score topic")
                stats.dead_lettered += 1
                continue
            try:
                event = self.decode_score(raw.value)
            except DecodeError as exc:
                self._dead_letter(raw, str(exc))
                stats.dead_lettered += 1
                continue
            misplaced = self._placement_reason(raw, event)
            if misplaced:
                self._dead_letter(raw, misplaced)
                stats.dead_lettered += 1
                continue
            decoded.append((raw, event))

        return await self.apply_decoded(decoded, stats, defer=defer, applied=applied)

    def decode_score(self, value: bytes) -> ScoreRecord:
        """Decode one record of the scores topic: a match, coalesced submissions or a
        moderation."""
        return decode_score_record(self.codec, value)

    def _placement_reason(self, raw: RawRecord, event: ScoreRecord) -> str | None:
        """Why a record sits where replay would not find it (wrong key or partition), or None.

        Replay reads a board's records from its murmur2 partition by key, so a record keyed
        otherwise, or placed by another partitioner, would be live state the log cannot rebuild.
        A clock mark belongs to every board of its partition and must carry the clock key.
        """
        if isinstance(event, ScoresSubmitted):
            if event.leaderboard_id == CLOCK_BOARD:
                return "a clock mark is a MatchResultSubmitted without entries"
            if not 1 <= len(event.submissions) <= MAX_SUBMISSIONS:
                return (
                    f"a ScoresSubmitted record carries 1 to {MAX_SUBMISSIONS} submissions, "
                    f"not {len(event.submissions)}"
                )
        elif isinstance(event, MatchResultSubmitted) and is_clock_mark(event):
            if raw.key != CLOCK_KEY:
                return f"a clock mark must be keyed {CLOCK_KEY.decode()!r}"
            return None
        board = event.leaderboard_id
        if raw.key != board.encode():
            got = raw.key.decode(errors="replace") if raw.key is not None else None
            return f"record key {got!r} is not its leaderboard id {board!r}"
        want = self._partition(board)
        if raw.partition != want:
            return (
                f"record of {board!r} is on partition {raw.partition}, but its key hashes to "
                f"partition {want} (produce with Kafka's murmur2 partitioner: librdkafka "
                "partitioner=murmur2_random)"
            )
        return None

    async def apply_decoded(
        self,
        decoded: Sequence[tuple[RawRecord, ScoreRecord]],
        stats: BatchStats | None = None,
        *,
        ack_from: dict[int, int] | None = None,
        defer: bool = False,
        applied: Callable[[], Awaitable[None]] | None = None,
    ) -> BatchStats:
        """Validate and apply decoded records, publish the outcome, then clear the outbox.

        ``ack_from`` (partition → offset) keeps the outbox results of records at or above
        that offset: replay uses it so that records the live worker has not processed yet
        still find their results to publish after a swap.

        A coalesced ``ScoresSubmitted`` record is unpacked here into one record per
        submission at position (offset, index), each checked, applied, refused and
        dead-lettered on its own: the same path for the live worker and replay.
        ``defer`` applies every chunk and leaves their publish to ``stats.finish``.
        """
        if stats is None:
            stats = BatchStats(records=len(decoded))
        if defer:
            self._deferred += 1
            number = self._deferred
        unknown = any(
            not _is_mark(ev) and self._config(ev.leaderboard_id) is None for _, ev in decoded
        )
        if unknown and not callable(self.configs):
            await self.configs.sync(5.0)

        groups: dict[tuple[str, int], list[SourceRecord]] = defaultdict(list)
        raws: dict[tuple[int, int], RawRecord] = {}
        subs: dict[tuple[int, int, int], MatchResultSubmitted] = {}
        configs: dict[str, LeaderboardConfigured] = {}
        marked: list[LeaderboardConfigured] | None = None
        for raw, record in decoded:
            raws[(raw.partition, raw.offset)] = raw
            if isinstance(record, LeaderboardModerated):
                found = self._moderation(raw, record)
                if isinstance(found, str):
                    self._dead_letter(raw, found)
                    stats.dead_lettered += 1
                    continue
                configs[record.leaderboard_id] = found.config
                groups[(record.leaderboard_id, raw.partition)].append(found.record)
                continue
            if isinstance(record, ScoresSubmitted):
                cfg = self._config(record.leaderboard_id)
                if cfg is not None and layout_of(cfg) is not None:
                    self._dead_letter(
                        raw, "coalesced submissions are not applied to sharded boards"
                    )
                    stats.dead_lettered += 1
                    continue
                for index, sub in record.unpack():
                    subs[(raw.partition, raw.offset, index)] = sub
                    reason = rules.reject_reason(cfg, sub, raw.log_time)
                    if reason is not None or cfg is None:
                        self._dead_letter_submission(
                            raw, index, sub, reason or "unknown leaderboard"
                        )
                        stats.dead_lettered += 1
                        continue
                    configs[sub.leaderboard_id] = cfg
                    at = rules.ranking_time(cfg, sub, raw.log_time)
                    groups[(sub.leaderboard_id, raw.partition)].append(
                        SourceRecord(raw.partition, raw.offset, sub, at, index=index)
                    )
                continue
            ev = record
            if is_clock_mark(ev):
                if marked is None:
                    marked = self._clocked_boards()
                for moved, rec in self._marks(raw, marked):
                    configs[moved.leaderboard_id] = moved
                    groups[(moved.leaderboard_id, raw.partition)].append(rec)
                continue
            cfg = self._config(ev.leaderboard_id)
            reason = rules.reject_reason(cfg, ev, raw.log_time)
            if reason is not None or cfg is None:
                self._dead_letter(raw, reason or "unknown leaderboard")
                stats.dead_lettered += 1
                continue
            configs[ev.leaderboard_id] = cfg
            at = rules.ranking_time(cfg, ev, raw.log_time)
            groups[(ev.leaderboard_id, raw.partition)].append(
                SourceRecord(raw.partition, raw.offset, ev, at)
            )

        work = [(configs[board], recs) for (board, _), recs in groups.items()]
        chunks = apply_chunks(work, APPLY_CHUNK_ENTRIES)
        if defer:
            # every chunk sent now, in order; published later, in order, by ``finish``:
            # nothing of this batch reaches Kafka before the caller starts ``finish``
            sent = await self._send_chunks(chunks, number)
            publish = functools.partial(
                self._finish_sent, chunks, sent, applied, raws, subs, stats, ack_from
            )
            # run later in this batch's context: its publish span is the batch span's child
            stats.finish = functools.partial(_in_context, contextvars.copy_context(), publish)
            return stats
        await self._after_inflight()
        done = await self._writer(chunks[0]).apply(chunks[0])
        for i, chunk in enumerate(chunks):
            outcomes = done
            # the next chunk's apply (Redis) runs while this one is published and acked (Kafka)
            ahead = (
                asyncio.ensure_future(self._writer(chunks[i + 1]).apply(chunks[i + 1]))
                if i + 1 < len(chunks)
                else None
            )
            try:
                await self._publish_and_clear(chunk, outcomes, raws, subs, stats, ack_from)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                    await asyncio.gather(ahead, return_exceptions=True)
                raise
            if ahead is not None:
                done = await ahead
        return stats

    async def _send_chunks(self, chunks: Sequence[Work], number: int) -> list[_Sent]:
        """Send each chunk's apply call as soon as the call before it (this batch's or the
        previous deferred batch's) has its replies, each prepared while the one before runs.

        Redis runs one call while Python prepares the next (and settles the one before: the
        replies are read and decoded by ``finish``), so neither waits for the other. A call
        is sent only once every call before it succeeded: one that failed would have left its
        records unapplied, and a later call of the same board would move the board's
        watermark past them. So when a call of this batch, or of the deferred batch before
        it (whose ``finish`` may be handling it again right now), failed, this raises
        ``ServiceUnavailable`` and the batch is handled again in order by the caller.
        The last call may still run when this returns (``self._inflight``).
        """
        sent: list[_Sent] = []
        for chunk in chunks:
            writer = self._writer(chunk)
            prepared = writer.prepare(chunk) if isinstance(writer, RankingStore) else None
            await self._after_inflight()
            if self._failed_batch >= number - 1:
                raise ServiceUnavailable(
                    "an apply call sent before this batch's failed: handling it again in order"
                )
            if prepared is None or not isinstance(writer, RankingStore):
                sent.append((None, _done(await writer.apply(chunk))))  # the sharding router
                continue
            replies = await writer.send(prepared)
            replies.add_done_callback(functools.partial(self._note_failure, number))
            self._inflight = replies
            sent.append((prepared, replies))
        return sent

    def _note_failure(self, number: int, task: asyncio.Future[Any]) -> None:
        """Remember that an apply call of deferred batch ``number`` failed (see
        ``_send_chunks``)."""
        if task.cancelled() or task.exception() is not None:
            self._failed_batch = max(self._failed_batch, number)

    async def _after_inflight(self) -> None:
        """Return once the apply call sent ahead, if any, has its replies (or failed)."""
        task = self._inflight
        if task is not None:
            if not task.done():
                await asyncio.wait((task,))
            if self._inflight is task:
                self._inflight = None

    async def _finish_sent(
        self,
        chunks: Sequence[Work],
        sent: Sequence[_Sent],
        applied: Callable[[], Awaitable[None]] | None,
        raws: dict[tuple[int, int], RawRecord],
        subs: dict[tuple[int, int, int], MatchResultSubmitted],
        stats: BatchStats,
        ack_from: dict[int, int] | None,
    ) -> None:
        """A deferred batch's ``finish``: its calls' outcomes (their replies read), then
        ``applied``, then the publish of each chunk in order (``_publish_chunks``)."""
        outcomes = [
            await replies if prepared is None else prepared.settle(await replies)
            for prepared, replies in sent
        ]
        if applied is not None:
            await applied()
        await self._publish_chunks(chunks, outcomes, raws, subs, stats, ack_from)

    async def _publish_chunks(
        self,
        chunks: Sequence[Work],
        applied: Sequence[list[BoardOutcome]],
        raws: dict[tuple[int, int], RawRecord],
        subs: dict[tuple[int, int, int], MatchResultSubmitted],
        stats: BatchStats,
        ack_from: dict[int, int] | None,
    ) -> None:
        """Publish applied chunks in order, each acknowledged by Kafka before its outbox is
        cleared (a deferred batch's ``finish``)."""
        for chunk, outcomes in zip(chunks, applied, strict=True):
            await self._publish_and_clear(chunk, outcomes, raws, subs, stats, ack_from)

    async def _publish_and_clear(
        self,
        chunk: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]],
        outcomes: list[BoardOutcome],
        raws: dict[tuple[int, int], RawRecord],
        subs: dict[tuple[int, int, int], MatchResultSubmitted],
        stats: BatchStats,
        ack_from: dict[int, int] | None,
    ) -> None:
        """Publish one applied chunk's outcome, wait for Kafka's ack, then clear its outbox.

        Until the outbox is cleared, a crash or retry re-applies the chunk's records as no-ops
        that return their kept results, so they are published again: nothing is lost.
        """
        OUTBOX.labels("projector").set(sum(len(out.offsets) for out in outcomes))
        # traced: the records published here carry this span's context (rank-change hop)
        with telemetry.span("rank-changes publish", kind=SpanKind.PRODUCER) as span:
            self._publish(outcomes, raws, subs, stats)
            if self.producer is not None:
                with PUBLISH_SECONDS.labels("projector").time():
                    await asyncio.get_running_loop().run_in_executor(
                        None, self.producer.flush, 30.0
                    )
            if span is not None:
                span.set_attributes(_span_facts(outcomes, stats))
        if ack_from is not None:
            for out, (_, recs) in zip(outcomes, chunk, strict=True):
                limit = ack_from.get(recs[0].partition, 0) if recs else 0
                out.offsets = [o for o in out.offsets if o < limit]
                out.positions = [p for p in out.positions if _offset_of(p) < limit]
        await self._writer(chunk).acknowledge(outcomes)
        OUTBOX.labels("projector").set(0)

    def _moderation(self, raw: RawRecord, ev: LeaderboardModerated) -> _Moderation | str:
        """A moderation as its board applies it (a match-shaped carrier at its ranking time),
        or why it cannot apply."""
        cfg = self._config(ev.leaderboard_id)
        carrier = moderation_carrier(ev)
        reason = rules.moderation_reason(cfg, ev) or rules.event_time_reason(
            ev.occurred_at, raw.log_time
        )
        if reason is not None or cfg is None:
            return reason or "unknown leaderboard"
        if layout_of(cfg) is not None:
            return f"leaderboard {cfg.leaderboard_id!r} is sharded: moderation needs a plain board"
        at = rules.ranking_time(cfg, carrier, raw.log_time)
        log.info(
            "%s on %s: %s by %s (%s)",
            ev.action.value,
            ev.leaderboard_id,
            ev.target,
            ev.issued_by,
            ev.reason,
        )
        return _Moderation(cfg, SourceRecord(raw.partition, raw.offset, carrier, at, ev))

    def _clocked_boards(self) -> list[LeaderboardConfigured]:
        """The boards a clock mark moves: unsharded log-time boards whose periods or window
        can end (``rules.ticks``)."""
        if self._boards is not None:
            known: Iterable[LeaderboardConfigured] = self._boards()
        else:
            snapshot = getattr(self.configs, "snapshot", None)
            known = snapshot().values() if snapshot is not None else ()
        return [cfg for cfg in known if rules.ticks(cfg) and layout_of(cfg) is None]

    def _marks(
        self, raw: RawRecord, boards: Sequence[LeaderboardConfigured]
    ) -> Iterable[tuple[LeaderboardConfigured, SourceRecord]]:
        """What a clock mark is for each board of its partition: a record without entries
        at the mark's broker time (none without one: no time to trust)."""
        if raw.log_time is None:
            return
        grace = self.settings.period_grace_ms
        for cfg in boards:
            if self._partition(cfg.leaderboard_id) != raw.partition:
                continue
            if rules.moved_by_mark(cfg, raw.log_time, grace):
                mark = MatchResultSubmitted("", "", cfg.leaderboard_id, raw.log_time, ())
                yield cfg, SourceRecord(raw.partition, raw.offset, mark, raw.log_time)

    def _partition(self, board: str) -> int:
        found = self._partitions.get(board)
        if found is None:
            found = self._partitions[board] = partition_for(board, self.settings.partitions)
        return found

    def _writer(
        self, work: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]]
    ) -> RankingWriter[SourceRecord, BoardOutcome]:
        """The plain store, or the sharding router when a board of the batch is sharded."""
        if not isinstance(self.store, RankingStore) or not any(
            layout_of(cfg) is not None for cfg, _ in work
        ):
            return self.store
        if self._sharded is None:
            self._sharded = ShardedStore(self.store)
        return self._sharded

    def _publish(
        self,
        outcomes: Sequence[BoardOutcome],
        raws: dict[tuple[int, int], RawRecord],
        subs: dict[tuple[int, int, int], MatchResultSubmitted],
        stats: BatchStats,
    ) -> None:
        for out in outcomes:
            stats.entries_applied += out.change_count()
            stats.periods_ended += [(out.board, p) for p, _ in out.periods_ended]
            reasons: dict[tuple[int, int, int | None], list[str]] = defaultdict(list)
            for rej in out.rejections:
                where = f"entries[{rej.entry_index}]: " if rej.entry_index is not None else ""
                reasons[(rej.partition, rej.offset, rej.index)].append(where + rej.reason)
            for (pnum, off, index), texts in reasons.items():
                raw = raws[(pnum, off)]
                if index is None:
                    self._dead_letter(raw, "; ".join(texts))
                else:
                    self._dead_letter_submission(
                        raw, index, subs[(pnum, off, index)], "; ".join(texts)
                    )
                stats.dead_lettered += 1
            if self.producer is None:
                continue
            self._publish_outcome(self.producer, out, stats)

    def _publish_outcome(self, producer: Publisher, out: BoardOutcome, stats: BatchStats) -> None:
        """Send one board's RankChanged and ParticipantsNotified records (counted in ``stats``).

        Written straight from the apply script's rows when the producer's codec has direct
        writers for both schemas (``output_records``), else as events through ``publish``;
        the same records either way.
        """
        direct = self._direct_headers(producer)
        pending = out.pending
        if direct is not None and pending is not None:
            rank_header, notify_header = direct
            raw = cast(_RawPublisher, producer)
            key = out.board.encode()
            traced = telemetry.kafka_headers() if telemetry.enabled() else None
            headers = {k: v for k, v in traced if v is not None} if traced else None
            sent = output_records(out.board, pending, out.periods_ended)
            for is_rank, body in sent.records:
                if is_rank:
                    raw.publish_raw(self.rank_topic, key, rank_header + body, headers)
                    stats.rank_changed_records += 1
                else:
                    raw.publish_raw(self.notify_topic, key, notify_header + body, headers)
            stats.notifications += sent.notices
            return
        for event in output_events(out):
            if isinstance(event, RankChanged):
                producer.publish(self.rank_topic, out.board, event)
                stats.rank_changed_records += 1
            else:
                producer.publish(self.notify_topic, out.board, event)
        stats.notifications += len(out.notifications)

    def _direct_headers(self, producer: Publisher) -> tuple[bytes, bytes] | None:
        """The headers of the two output records when the producer sends encoded bytes
        (``publish_raw``) and its codec writes both directly (``direct_header``), else None
        (looked up once)."""
        found = self._direct
        if found is _UNKNOWN:
            codec = getattr(producer, "codec", None)
            header = getattr(codec, "direct_header", None)
            found = None
            if header is not None and callable(getattr(producer, "publish_raw", None)):
                rank = header(RankChanged.SCHEMA)
                notify = header(ParticipantsNotified.SCHEMA)
                found = (rank, notify) if rank and notify else None
            self._direct = found
        return found


#: An apply call of a deferred batch: the call and its replies to come, or (None, the
#: outcomes) for a call applied at once.
_Sent = tuple[PreparedApply | None, asyncio.Future[Any]]


def _done(outcomes: list[BoardOutcome]) -> asyncio.Future[Any]:
    """``outcomes`` as a future already resolved."""
    found: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    found.set_result(outcomes)
    return found


#: ``Projector._direct`` before the producer's codec was asked.
_UNKNOWN: Any = object()


class _RawPublisher(Protocol):
    """A Publisher that also sends encoded bytes (``LeaderboardProducer.publish_raw``)."""

    def publish_raw(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> None:
        """Send ``value`` as it is to ``topic`` under ``key``."""


def output_events(out: BoardOutcome) -> list[RankChanged | ParticipantsNotified]:
    """One board's output records as events: its RankChanged records (at most
    ``RECORD_CHUNK`` changes each; the periods it ended on the last), then its
    ParticipantsNotified records (at most ``RECORD_CHUNK`` notices each)."""
    events: list[RankChanged | ParticipantsNotified] = []
    changes = out.changes
    ended = tuple(p for p, _ in out.periods_ended)
    for start in range(0, max(len(changes), 1 if ended else 0), RECORD_CHUNK):
        part = changes[start : start + RECORD_CHUNK]
        last = start + RECORD_CHUNK >= len(changes)
        versions = [c.version for c in part] or [v for _, v in out.periods_ended]
        events.append(
            RankChanged(
                leaderboard_id=out.board,
                version_from=min(versions),
                version_to=max(versions),
                changes=tuple(part),
                periods_ended=ended if last else (),
            )
        )
    notes = out.notifications
    for start in range(0, len(notes), RECORD_CHUNK):
        chunk = notes[start : start + RECORD_CHUNK]
        events.append(
            ParticipantsNotified(
                leaderboard_id=out.board,
                version_from=chunk[0].version,
                version_to=chunk[-1].version,
                notices=tuple(chunk),
            )
        )
    return events


@dataclass(slots=True)
class OutputRecords:
    """A board's output record bodies (``output_records``), in ``output_events``' order."""

    #: (True for a RankChanged, False for a ParticipantsNotified; its Avro body)
    records: list[tuple[bool, bytes]]
    notices: int


def output_records(
    board: str,
    pending: Sequence[tuple[SourceRecord, RecordResult]],
    periods_ended: Sequence[tuple[str, int]],
) -> OutputRecords:
    """The Avro bodies of ``output_events`` written straight from the apply script's rows
    (``BoardOutcome.pending``): the same bytes, without a RankChange or notice object."""
    change_parts: list[bytes] = []
    change_versions: list[int] = []
    notice_parts: list[bytes] = []
    notice_versions: list[int] = []
    for rec, res in pending:
        if res.changes:
            ev = rec.event
            at = rec.time
            ids, tail = avro_out.record_context(
                ev.event_id,
                ev.match_id,
                at,
                None if ev.occurred_at == at else ev.occurred_at,
                rec.partition,
                rec.offset,
            )
            avro_out.rank_change_rows(change_parts, change_versions, res.changes, ids, tail)
        if res.notices:
            avro_out.notice_rows(notice_parts, notice_versions, res.notices)
    records: list[tuple[bool, bytes]] = []
    n = len(change_versions)
    ended = [p for p, _ in periods_ended]
    width = avro_out.CHANGE_PARTS
    for start in range(0, max(n, 1 if ended else 0), RECORD_CHUNK):
        versions = change_versions[start : start + RECORD_CHUNK] or [v for _, v in periods_ended]
        last = start + RECORD_CHUNK >= n
        body = avro_out.rank_changed_body(
            board,
            min(versions),
            max(versions),
            min(RECORD_CHUNK, n - start) if n else 0,
            change_parts[start * width : (start + RECORD_CHUNK) * width],
            ended if last else (),
        )
        records.append((True, body))
    m = len(notice_versions)
    width = avro_out.NOTICE_PARTS
    for start in range(0, m, RECORD_CHUNK):
        end = min(start + RECORD_CHUNK, m)
        body = avro_out.participants_notified_body(
            board,
            notice_versions[start],
            notice_versions[end - 1],
            end - start,
            notice_parts[start * width : end * width],
        )
        records.append((False, body))
    return OutputRecords(records, m)


def _in_context(
    context: contextvars.Context, step: Callable[[], Coroutine[Any, Any, None]]
) -> Awaitable[None]:
    """``step`` run as a task in ``context`` (the context variables of when it was made)."""
    return asyncio.get_running_loop().create_task(step(), context=context)


def _span_facts(outcomes: Sequence[BoardOutcome], stats: BatchStats) -> dict[str, int | list[str]]:
    """What the rank-change publish span tells: boards, entries, records and event ids."""
    event_ids = sorted(
        {rec.event.event_id for out in outcomes for rec, res in out.pending or () if res.changes}
        | {c.event_id for out in outcomes if out.pending is None for c in out.changes}
    )
    return {
        "leaderboard.boards": len(outcomes),
        "leaderboard.entries_applied": stats.entries_applied,
        "leaderboard.rank_changed_records": stats.rank_changed_records,
        # a few ids make a trace findable by submission (bounded: a batch may hold thousands)
        "leaderboard.event_ids": event_ids[:20],
    }


def decode_score_record(codec: Codec, value: bytes) -> ScoreRecord:
    """Decode a record of the score topic: a match, coalesced submissions or a moderation
    (else DecodeError)."""
    event = codec.decode(value)
    if not isinstance(event, MatchResultSubmitted | ScoresSubmitted | LeaderboardModerated):
        raise DecodeError(
            "expected MatchResultSubmitted or ScoresSubmitted (or LeaderboardModerated), "
            f"got {type(event).__name__}"
        )
    return event


#: Most entries in one apply call: one Lua script holds Redis for its whole run, so a batch of
#: big (coalesced) records is applied in chunks of about this many entries (~25 ms of Redis
#: each on the dev machine) instead of one call of 50,000 entries that blocks every reader
#: for seconds (and outlives the client's read time-out on a loaded machine).
APPLY_CHUNK_ENTRIES = 2000

#: The per-board work of one apply call.
Work = list[tuple[LeaderboardConfigured, Sequence[SourceRecord]]]


def apply_chunks(
    work: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]], max_entries: int
) -> list[Work]:
    """Split a batch's per-board work into apply calls of at most ``max_entries`` entries.

    Boards and records keep their order; the records of one log offset (the submissions of a
    coalesced record, which share the board's offset watermark) are never split, and neither
    is a record, so a chunk may exceed ``max_entries`` by one record. Always one chunk at least.
    """
    chunks: list[Work] = [[]]
    size = 0
    for cfg, recs in work:
        start = 0
        for i, rec in enumerate(recs):
            if size >= max_entries and (i == 0 or rec.offset != recs[i - 1].offset):
                if i > start:
                    chunks[-1].append((cfg, recs[start:i]))
                chunks.append([])
                size, start = 0, i
            size += max(1, len(rec.event.entries))
        if len(recs) > start:
            chunks[-1].append((cfg, recs[start:]))
    return chunks


def _offset_of(position: str) -> int:
    """The offset of an outbox position (``offset`` or ``offset:index``)."""
    return int(position.partition(":")[0])


class Throughput:
    """Rolling counters for log lines: entries applied per second since the last report."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.entries = 0
        self.records = 0
        self.since = time.monotonic()

    def add(self, stats: BatchStats) -> None:
        """Count a batch; log a line when the reporting interval has passed."""
        self.entries += stats.entries_applied
        self.records += stats.records
        now = time.monotonic()
        if now - self.since >= self.every:
            dt = now - self.since
            log.info(
                "applied %d entries (%d records) in %.1fs: %.0f entries/s",
                self.entries,
                self.records,
                dt,
                self.entries / dt,
            )
            self.entries = self.records = 0
            self.since = now


@dataclass(frozen=True, slots=True)
class _Moderation:
    """A moderation record ready for its board's apply."""

    config: LeaderboardConfigured
    record: SourceRecord


def _is_mark(ev: ScoreTopicEvent) -> bool:
    return isinstance(ev, MatchResultSubmitted) and is_clock_mark(ev)
