"""The gateway's rank-change feed: one consumer per gateway, versioned deltas per subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from confluent_kafka import KafkaError, TopicPartition
from opentelemetry.trace import SpanContext, SpanKind
from redis.exceptions import RedisError

from processors import telemetry
from processors.bootstrap import get_codec, kafka_consumer
from processors.gateway.rawsocket import RawSocket, Write, text_frame
from processors.gateway.recordhead import RecordHead
from projections.keys import BoardKeys
from projections.profiles import attach_profiles, profiles_key
from projections.push import (
    Snapshot,
    change_json,
    current_period,
    read_participant,
    read_top,
)
from streams import rules
from streams.errors import DecodeError, LeaderboardError
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    ParticipantsNotified,
    RankChange,
    RankChanged,
    ScoresSubmitted,
)
from streams.settings import Settings

__all__ = ["Board", "DeadLettered", "Listener", "RankFeed", "Subscriber", "encode", "now_iso"]

log = logging.getLogger(__name__)


class DeadLettered(LeaderboardError):
    """A submitted record was dead-lettered by the worker; the message is its reason."""


_RESYNC = object()
_CLOSE = object()
#: a delta's private key (removed before it is sent): the first top-n row its client lacks
_FILL_FROM = "_fill_from"


@dataclass(frozen=True, slots=True)
class _Traced:
    """A queued delta with the trace contexts of the rank-change records it came from."""

    msg: dict[str, Any]
    traces: list[SpanContext]


@dataclass(frozen=True, slots=True)
class _Frame:
    """A message encoded once for every subscriber of a view: the same text for each, and
    the same WebSocket frame bytes for each member written to directly (``RawSocket``)."""

    text: str
    kind: str
    version: int
    data: bytes = b""

    @classmethod
    def of(cls, msg: dict[str, Any], kind: str) -> _Frame:
        """``msg`` encoded once: its JSON text and its frame."""
        text = encode(msg)
        return cls(text, kind, int(msg["version"]), text_frame(text))


_TopRead = tuple[Snapshot, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Raw:
    """A rank-change record kept as its bytes, with its head (recordhead.py): what the
    history holds of a board nobody on this process watches (decoded on a resume)."""

    leaderboard_id: str
    version_from: int
    version_to: int
    data: bytes


#: What the reader thread hands over per record: the record decoded (None: nobody needed
#: its changes when it was read) and its bytes with their head (None: not readable so).
_Incoming = tuple[RankChanged | None, _Raw | None, SpanContext | None]


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A view's delta on its way to the pump, with the members in step when it was cut."""

    item: dict[str, Any] | _Traced
    members: tuple[Subscriber, ...]


def encode(msg: dict[str, Any]) -> str:
    """A message as compact JSON text (the one encoding of every push)."""
    return json.dumps(msg, separators=(",", ":"))


@dataclass(eq=False)
class Subscriber:
    """One WebSocket subscription: its view, its version and its bounded outgoing queue."""

    board: str
    mode: str
    n: int = 0
    participant_id: str | None = None
    queue_size: int = 256
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    version: int = 0
    period: str = rules.ALL_TIME
    rank: int | None = None
    score: int | None = None
    syncing: bool = True
    #: mode around: the participants of the window the client holds, best first, and the
    #: rank of its first row; and the board's participant count
    window: list[str] = field(default_factory=list)
    base: int = 0
    count: int = 0
    backlog: list[RankChanged] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    flush_handle: asyncio.Handle | None = None
    #: when its last delta was cut (monotonic; the push window counts from there)
    last_push: float = float("-inf")
    queue: asyncio.Queue[Any] = field(init=False)
    overflows: int = 0
    #: trace contexts of the records in ``pending`` (only while tracing is on)
    traces: list[SpanContext] = field(default_factory=list)
    #: mode top: how many rows (1..held) the client holds exactly once it has applied
    #: ``pending``; below ``n`` after rows left the top n, so the next delta carries a ``fill``
    held: int = 0
    #: the shared view this subscriber is a member of (None: it is served on its own)
    view: _View | None = None
    #: the view this subscriber leads (the socketless subscriber of a shared view)
    leads: _View | None = None
    #: when the oldest ping not answered yet was sent (monotonic; None: none outstanding)
    ping_sent: float | None = None
    #: the connection below Starlette (None: served through Starlette only); a view writes
    #: its frames to it directly while the subscriber's own task has nothing to send
    socket: RawSocket | None = None
    #: its own task holds a message taken from the queue and not yet sent
    sending: bool = False
    #: times the view found its write buffer full (slow client) and resynced it
    slow: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def describe(self) -> str:
        """Short text for log lines."""
        what = f"top {self.n}" if self.mode == "top" else f"{self.mode} {self.participant_id!r}"
        return f"{self.id} {self.board} {what}"


@dataclass(eq=False)
class Listener:
    """One participant's notification subscription: its filter and bounded outgoing queue.

    A full queue drops its oldest notification (counted in ``dropped`` and told to the
    client with the next one): notifications are hints, the reads have the state.
    """

    participant_id: str
    boards: frozenset[str] = frozenset()
    queue_size: int = 256
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    dropped: int = 0
    queue: asyncio.Queue[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def describe(self) -> str:
        """Short text for log lines."""
        return f"{self.id} notifications of {self.participant_id!r}"

    def offer(self, msg: dict[str, Any]) -> None:
        """Queue ``msg``; if the queue is full, drop the oldest message to make room."""
        while True:
            try:
                self.queue.put_nowait(msg)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1


@dataclass(eq=False)
class _View:
    """The top-``n`` subscribers of one board that are in step, served as one.

    ``lead`` is a subscriber without a socket: it follows the records like any subscriber
    (versions, period, pending delta, resync). Each delta it cuts is enriched and encoded
    once and the same text is queued to every member; a snapshot it needs is read once for
    all of them. A subscriber joins when it is at the lead's version (after its own snapshot
    or resume) and leaves when its queue overflows (it resyncs on its own, then joins again).
    """

    lead: Subscriber
    members: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    #: new subscribers waiting for the pump to be idle (then they get the cached snapshot)
    waiting: set[Subscriber] = field(default_factory=set)
    #: the view's last snapshot and the deltas sent since, as sent: a new subscriber gets
    #: them and is in step at once, without a Redis read of its own (None: too old, re-read)
    snapshot: _Frame | None = None
    since: list[_Frame] = field(default_factory=list)
    #: the pump is working on an item (its members are fixed; a newcomer must wait)
    busy: bool = False
    #: the lead's delta waits for the pump: it is cut when the pump is idle, with every
    #: change that arrived meanwhile (one frame per pump cycle under load, not a queue)
    deferred: bool = False


@dataclass(eq=False)
class Board:
    """The feed's state for one board: recent records (contiguous versions) and subscribers."""

    history: deque[RankChanged | _Raw]
    last_version: int = 0
    #: every subscriber of the board (members of views included)
    subscribers: set[Subscriber] = field(default_factory=set)
    #: the subscribers that follow the records on their own (not in a view)
    solo: set[Subscriber] = field(default_factory=set)
    #: shared top-n views by n
    views: dict[int, _View] = field(default_factory=dict)


def _shifted(sub: Subscriber, new: int, c: RankChange) -> None:
    """Queue the tracked participant's rank moving to ``new`` because ``c`` moved past it."""
    sub.pending.append(
        {
            "participant_id": sub.participant_id,
            "old_rank": sub.rank,
            "new_rank": new,
            "old_score": sub.score,
            "new_score": sub.score,
            "period": c.period,
            "version": c.version,
            "by": c.participant_id,
        }
    )
    sub.rank = new


ConfigLookup = Callable[[str], LeaderboardConfigured | None]
#: ``on_push(kind, count)``: ``count`` messages of type ``kind`` were pushed
Counter = Callable[[str, int], None]


class RankFeed:
    """Consumes the rank-change topic (every partition, from its end, outside any group).

    Every gateway instance runs its own feed, so every instance sees every change. Records
    arrive on the event loop from a reader thread; per board the feed keeps the last
    ``history`` records (contiguous versions) so a reconnecting client can be sent what it
    missed, and fans each record out to the board's subscribers.
    """

    def __init__(
        self,
        settings: Settings,
        client: aioredis.Redis,
        configs: ConfigLookup,
        *,
        history: int = 500,
        window_s: float = 0.05,
        queue_size: int = 256,
        on_push: Counter | None = None,
    ) -> None:
        if not 0 < window_s <= 0.1:
            raise ValueError("window_s must be in (0, 0.1]")
        self.settings = settings
        self.client = client
        self.configs = configs
        self.topic = settings.topic(settings.rank_changes_topic)
        #: the score topic's dead letters: a waiting submission learns why it was refused
        self.dlq_topic = settings.dlq(settings.scores_topic)
        #: participants' notices, fanned out to their notification listeners
        self.notices_topic = settings.topic(settings.notifications_topic)
        self.listeners: dict[str, set[Listener]] = {}
        self.codec = get_codec(settings)
        self.head = RecordHead(self.codec)
        #: records read without decoding their changes (nobody needed them)
        self.undecoded = 0
        self.profiles_key = profiles_key(settings.topic_prefix)
        self.history_size = history
        self.window_s = window_s
        self.queue_size = queue_size
        self.on_push = on_push or (lambda kind, count: None)
        self.boards: dict[str, Board] = {}
        self.waiters: dict[str, list[asyncio.Future[RankChange]]] = {}
        #: top-mode fills being read, per (board, n, period): (version, first rank, read)
        self._fills: dict[tuple[str, int, str], tuple[int, int, asyncio.Future[Snapshot]]] = {}
        #: top-n snapshots being read, per (board, n, period): every subscriber that needs
        #: one while it is in flight takes the same read (a crowd resyncing reads it once)
        self._tops: dict[tuple[str, int, str], asyncio.Future[_TopRead]] = {}
        self.records = 0
        #: view members whose write buffer was full (slow clients), resynced on their own
        self.slow_resyncs = 0
        self.lag = 0
        self.delay_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._ready = threading.Event()
        self._error: str | None = None
        #: snapshot reads at once: a crowd (re)subscribing queues here, leaving the Redis
        #: pool to the deltas and the HTTP reads
        self._reads = asyncio.Semaphore(16)

    # ------------------------------------------------------------------ consumer thread
    def start(self) -> None:
        """Assign every partition at its current end and start the reader thread."""
        self._loop = asyncio.get_running_loop()
        consumer = kafka_consumer(
            self.settings,
            **{
                "group.id": f"gateway-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                # answered as soon as one record lands (min bytes 1), so the wait only
                # bounds an idle fetch: 20 ms made 50 fetches a second expire in the
                # broker's purgatory, about 1 ms of broker CPU each (benchmarks/notes.md)
                "fetch.wait.max.ms": 500,
                "fetch.min.bytes": 1,
            },
        )
        meta = consumer.list_topics(self.topic, timeout=10)
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            consumer.close()
            raise RuntimeError(
                f"topic {self.topic} does not exist: run `leaderboard topics create`"
            )
        assignment = []
        for p in tmeta.partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            assignment.append(TopicPartition(self.topic, p, high))
        dlq = consumer.list_topics(self.dlq_topic, timeout=10).topics.get(self.dlq_topic)
        for p in dlq.partitions if dlq is not None and dlq.error is None else ():
            _, high = consumer.get_watermark_offsets(TopicPartition(self.dlq_topic, p), timeout=10)
            assignment.append(TopicPartition(self.dlq_topic, p, high))
        listed = consumer.list_topics(self.notices_topic, timeout=10)
        notices = listed.topics.get(self.notices_topic)
        for p in notices.partitions if notices is not None and notices.error is None else ():
            tp = TopicPartition(self.notices_topic, p)
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            assignment.append(TopicPartition(self.notices_topic, p, high))
        consumer.assign(assignment)
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name="rank-feed", daemon=True)
        self._thread.start()
        self._ready.set()

    def stop(self) -> None:
        """Stop the reader thread and close every subscriber."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for board in self.boards.values():
            for sub in list(board.subscribers):
                self._put_control(sub, _CLOSE)
            for view in board.views.values():
                self._put_control(view.lead, _CLOSE)

    @property
    def running(self) -> bool:
        """True while the reader thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        consumer = self._consumer
        last_lag = 0.0
        try:
            while not self._stop.is_set():
                # consume(n, timeout) waits for n records or the whole timeout: a first record
                # is taken as soon as it lands, then whatever else is there (wait=true latency).
                first = consumer.poll(0.1)
                batch = [] if first is None else [first, *consumer.consume(499, timeout=0)]
                # one hand-over to the loop per batch: one wake-up, and the pushes it starts
                # run after all of the batch's records were applied (``_apply``)
                records: list[_Incoming] = []
                for msg in batch:
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("rank-change topic: %s", err)
                        continue
                    value = msg.value()
                    if value is None:
                        continue
                    if msg.topic() == self.dlq_topic:
                        self._dead_letter(value, msg.headers() or [])
                        continue
                    if msg.topic() == self.notices_topic:
                        self._notices(value)
                        continue
                    head = self.head(value)
                    raw = None if head is None else _Raw(*head, value)
                    record = None
                    # the changes only for a board watched here or while a submission waits
                    # (the loop checks again: a subscriber may come meanwhile)
                    if raw is None or self.waiters or self._watched(raw.leaderboard_id):
                        try:
                            record = self.codec.decode_as(value, RankChanged)
                        except DecodeError as exc:
                            log.warning("rank-change record skipped: %s", exc)
                            continue
                    _, ts = msg.timestamp()
                    if ts > 0:
                        self.delay_s = max(0.0, time.time() - ts / 1000)
                    # the publish span's context, for the push span (None when tracing is off)
                    trace = telemetry.context_of(msg.headers()) if telemetry.enabled() else None
                    records.append((record, raw, trace))
                loop = self._loop
                if records and loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(self._on_records, records)
                now = time.monotonic()
                if now - last_lag > 5:
                    last_lag = now
                    self.lag = self._measure_lag(consumer)
        except Exception:  # the thread must report, not vanish silently
            log.exception("rank-change reader stopped")
            self._error = "rank-change reader stopped"
        finally:
            consumer.close()

    def _dead_letter(self, value: bytes, headers: list[tuple[str, bytes | None]]) -> None:
        """Tell the submission waiting for a dead-lettered record why it was refused."""
        if not self.waiters:
            return
        try:
            event = self.codec.decode(value)
        except DecodeError:
            return  # undecodable: no submission of this gateway can be waiting for it
        if isinstance(event, MatchResultSubmitted):
            event_ids = [event.event_id]
        elif isinstance(event, ScoresSubmitted):  # a coalesced record refused whole
            event_ids = [s.event_id for s in event.submissions]
        else:
            return
        reason = next(
            ((v or b"").decode(errors="replace") for k, v in headers if k == "reason"), ""
        )
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for event_id in event_ids:
                loop.call_soon_threadsafe(self._refuse, event_id, reason or "dead-lettered")

    def _notices(self, value: bytes) -> None:
        """Hand a notifications record to the event loop if anyone listens (else skip it)."""
        if not self.listeners:
            return
        try:
            record = self.codec.decode_as(value, ParticipantsNotified)
        except DecodeError as exc:
            log.warning("notifications record skipped: %s", exc)
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_notices, record)

    def _on_notices(self, record: ParticipantsNotified) -> None:
        """Queue each notice for the listeners of its participant."""
        for n in record.notices:
            for listener in self.listeners.get(n.participant_id, ()):
                if listener.boards and record.leaderboard_id not in listener.boards:
                    continue
                listener.offer(
                    {
                        "type": "notification",
                        "leaderboard_id": record.leaderboard_id,
                        **n.notice(),
                        "dropped": listener.dropped,
                    }
                )
                self.on_push("notification", 1)

    def listen(self, listener: Listener) -> None:
        """Register a participant's notification listener."""
        self.listeners.setdefault(listener.participant_id, set()).add(listener)

    def unlisten(self, listener: Listener) -> None:
        """Forget a listener (its connection closed)."""
        found = self.listeners.get(listener.participant_id)
        if found is not None:
            found.discard(listener)
            if not found:
                del self.listeners[listener.participant_id]

    def _refuse(self, event_id: str, reason: str) -> None:
        for fut in self.waiters.pop(event_id, ()):
            if not fut.done():
                fut.set_exception(DeadLettered(reason))

    def _measure_lag(self, consumer: Any) -> int:
        lag = 0
        try:
            for tp in consumer.position(consumer.assignment()):
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    lag += max(0, high - tp.offset)
        except Exception as exc:  # metrics only: never stop reading for them
            log.debug("lag measurement failed: %s", exc)
        return lag

    # ------------------------------------------------------------------ event loop side
    def board(self, name: str) -> Board:
        """The feed state of ``name`` (created on first use)."""
        found = self.boards.get(name)
        if found is None:
            found = self.boards[name] = Board(deque(maxlen=self.history_size))
        return found

    def wait_for(self, event_id: str) -> asyncio.Future[RankChange]:
        """A future resolved with the first rank change of ``event_id`` the feed sees."""
        fut: asyncio.Future[RankChange] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(event_id, []).append(fut)
        return fut

    def forget(self, event_id: str, fut: asyncio.Future[RankChange]) -> None:
        """Drop a waiter (time-out or cancelled request)."""
        futs = self.waiters.get(event_id)
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self.waiters[event_id]

    def _watched(self, name: str) -> bool:
        """True if a subscriber of board ``name`` follows its records on this process."""
        board = self.boards.get(name)
        return board is not None and bool(board.views or board.solo)

    def _decoded(self, raw: _Raw) -> RankChanged | None:
        """The record of ``raw`` decoded (None, logged, if it does not decode)."""
        try:
            return self.codec.decode_as(raw.data, RankChanged)
        except DecodeError as exc:
            log.warning("rank-change record skipped: %s", exc)
            return None

    def _history(self, board: Board, after: int) -> list[RankChanged]:
        """The board's history past version ``after``, decoded (a record that does not
        decode is left out: the version gap it leaves makes ``_apply`` resync)."""
        out = []
        for item in board.history:
            if item.version_to <= after:
                continue
            record = self._decoded(item) if isinstance(item, _Raw) else item
            if record is not None:
                out.append(record)
        return out

    def _on_records(self, records: list[_Incoming]) -> None:
        for record, raw, trace in records:
            self._on_record(record, raw, trace)

    def _on_record(
        self, record: RankChanged | None, raw: _Raw | None, trace: SpanContext | None = None
    ) -> None:
        self.records += 1
        head = record if record is not None else raw
        assert head is not None  # the reader hands over one or both
        board = self.board(head.leaderboard_id)
        live = bool(board.views or board.solo)
        if record is None and raw is not None and (self.waiters or live):
            record = self._decoded(raw)
            if record is None:
                return
        if record is None:
            self.undecoded += 1
        elif self.waiters:
            for c in record.changes:
                for fut in self.waiters.pop(c.event_id, ()):
                    if not fut.done():
                        fut.set_result(c)
        if head.version_to <= board.last_version:
            return  # a republished record (at-least-once): already seen
        if board.last_version and head.version_from > board.last_version + 1:
            log.info(
                "%s: versions %d..%d missing from the feed",
                head.leaderboard_id,
                board.last_version + 1,
                head.version_from - 1,
            )
            board.history.clear()
        elif head.version_from <= board.last_version:
            if record is None:
                assert raw is not None
                record = self._decoded(raw)
                if record is None:
                    return
            keep = tuple(c for c in record.changes if c.version > board.last_version)
            record = RankChanged(
                record.leaderboard_id,
                board.last_version + 1,
                record.version_to,
                keep,
                record.periods_ended,
            )
            raw = None  # trimmed: its bytes are no longer this record
        # an unwatched board's history keeps the bytes (no objects for the collector to walk)
        kept = raw if raw is not None and not live else record
        assert kept is not None
        board.history.append(kept)
        board.last_version = head.version_to
        if record is None:
            return  # nobody here follows the board
        leads = [view.lead for view in board.views.values()]
        for sub in [*leads, *board.solo]:
            if sub.syncing:
                sub.backlog.append(record)
                if len(sub.backlog) > self.history_size:
                    sub.backlog.clear()
                    self.resync(sub)
            else:
                self._apply(sub, (record,))
                if trace is not None and sub.pending:
                    sub.traces.append(trace)

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, sub: Subscriber, since_version: int | None = None) -> None:
        """Register ``sub``; resume from ``since_version`` if history allows, else snapshot."""
        board = self.board(sub.board)
        board.subscribers.add(sub)
        if sub.mode == "top" and since_version is None:
            view = self._view(board, sub.board, sub.n)
            view.waiting.add(sub)  # served from the view's snapshot: no read of its own
            sub.view = view
            if not view.busy and view.lead.queue.empty():
                self._admit(view)
            return
        board.solo.add(sub)
        if sub.mode == "top":
            self._view(board, sub.board, sub.n)
        period = self._period_hint(sub.board, board)
        if (
            sub.mode == "top"
            and since_version is not None
            and period is not None
            and board.history
            and board.history[0].version_from <= since_version + 1
            and since_version <= board.last_version
        ):
            sub.version = since_version
            sub.syncing = False
            sub.period = period
            sub.held = sub.n
            self._apply(sub, self._history(board, since_version))
            if not sub.syncing:
                if sub.flush_handle is not None:
                    sub.flush_handle.cancel()
                # Send now, even if empty: the client learns it is up to date at this version.
                self._emit(sub, force=True)
            return
        self.resync(sub)

    def _period_hint(self, name: str, board: Board) -> str | None:
        cfg = self.configs(name)
        if cfg is None:
            return None
        if cfg.reset_period.value == "none":
            return rules.ALL_TIME
        periods = [c.period for rec in self._history(board, 0) for c in rec.changes]
        return max(periods) if periods else None

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget ``sub`` (its connection closed); a view left without subscribers ends."""
        board = self.boards.get(sub.board)
        if sub.view is not None:
            sub.view.members.discard(sub)
            sub.view.waiting.discard(sub)
            sub.view = None
        if board is not None:
            board.subscribers.discard(sub)
            board.solo.discard(sub)
            view = board.views.get(sub.n) if sub.mode == "top" else None
            if view is not None and not any(
                s.mode == "top" and s.n == sub.n for s in board.subscribers
            ):
                del board.views[sub.n]
                self._close_view(view)
        if sub.flush_handle is not None:
            sub.flush_handle.cancel()
            sub.flush_handle = None

    # ------------------------------------------------------------------ shared views
    def _view(self, board: Board, name: str, n: int) -> _View:
        """The shared top-``n`` view of ``board`` (started, with its own snapshot, if new)."""
        view = board.views.get(n)
        if view is None:
            lead = Subscriber(name, "top", n=n, queue_size=max(self.queue_size, 1024))
            view = board.views[n] = _View(lead)
            lead.leads = view
            lead.queue.put_nowait(_RESYNC)
            view.task = asyncio.get_running_loop().create_task(self._pump(view))
        return view

    def _close_view(self, view: _View) -> None:
        """Stop a view's pump and cancel its pending flush."""
        if view.lead.flush_handle is not None:
            view.lead.flush_handle.cancel()
            view.lead.flush_handle = None
        if view.task is not None:
            view.task.cancel()

    def _join(self, view: _View, board: Board) -> None:
        """Move the solo top-n subscribers that are in step with ``view``'s lead into it.

        Called right after the lead cut a delta (no await in between): a subscriber at the
        lead's version and period has seen exactly the same records, so after its own
        pending changes go out it needs what the lead sends from now on, nothing else.
        """
        lead = view.lead
        for sub in list(board.solo):
            if (
                sub.mode == "top"
                and sub.n == lead.n
                and not sub.syncing
                and sub.version == lead.version
                and sub.period == lead.period
            ):
                if sub.flush_handle is not None:
                    sub.flush_handle.cancel()
                self._emit(sub)
                if sub.syncing:
                    continue  # its queue overflowed: it resyncs on its own first
                board.solo.discard(sub)
                view.members.add(sub)
                sub.view = view

    #: deltas kept after a view's snapshot for newcomers (each is sent to each newcomer);
    #: beyond, newcomers take a shared snapshot read and catch up from the board's history
    SINCE_MAX = 32

    def _admit(self, view: _View) -> None:
        """Make the waiting newcomers members: each is queued the view's snapshot and the
        deltas sent since (the same texts), so it is in step with the lead's next delta.
        Called only while the pump is idle (nothing cut and not yet sent). Without a cached
        snapshot (the lead is still reading one, it will include them) they keep waiting;
        with a stale cache they are served on their own."""
        if not view.waiting or view.lead.syncing:
            return
        board = self.boards.get(view.lead.board)
        waiting, view.waiting = view.waiting, set()
        for sub in waiting:
            if view.snapshot is None or board is None or len(view.since) >= sub.queue.maxsize:
                sub.view = None
                if board is not None and sub in board.subscribers:
                    board.solo.add(sub)
                    self.resync(sub)
                continue
            for frame in (view.snapshot, *view.since):
                sub.queue.put_nowait(frame)
                sub.version = frame.version
            sub.period = view.lead.period
            sub.syncing = False
            view.members.add(sub)

    def _leave(self, sub: Subscriber) -> None:
        """Take a member out of its view (it follows the records on its own again)."""
        view = sub.view
        if view is None:
            return
        view.members.discard(sub)
        sub.view = None
        board = self.boards.get(sub.board)
        if board is not None and sub in board.subscribers:
            board.solo.add(sub)

    async def _pump(self, view: _View) -> None:
        """Encode each of the view's messages once and queue the same text to its members."""
        lead = view.lead
        while True:
            if lead.queue.empty():
                view.busy = False
                self._admit(view)
                if view.deferred:
                    view.deferred = False
                    if lead.flush_handle is not None:
                        lead.flush_handle.cancel()
                    self._emit(lead)  # the changes that arrived while it was busy
            item = await lead.queue.get()
            view.busy = True
            if item is _CLOSE:
                return
            if item is _RESYNC:
                if not lead.syncing:
                    continue
                msg = await self._snapshot_or_retry(lead)
                if msg is None:
                    continue
                for sub in view.waiting:  # newcomers take this snapshot with the members
                    sub.syncing = False
                    view.members.add(sub)
                view.waiting.clear()
                members: tuple[Subscriber, ...] = tuple(view.members)
                frame = _Frame.of(msg, "snapshot")
                self._deliver(view, members, frame)
                view.snapshot, view.since = frame, []
                board = self.boards.get(lead.board)
                if board is not None and not lead.pending:
                    self._join(view, board)
                continue
            assert isinstance(item, _Outgoing)
            members = item.members
            out = item.item
            msg = out.msg if isinstance(out, _Traced) else out
            if msg.get("type") == "delta":
                if lead.syncing:
                    continue  # superseded by the snapshot queued after it
                if _FILL_FROM in msg and not await self._filled(lead, msg):
                    continue  # the rows moved on: a snapshot follows instead
                if not await self._enriched(lead, msg):
                    continue
            frame = _Frame.of(msg, "delta")
            if isinstance(out, _Traced):
                attributes: dict[str, str | int] = {
                    "leaderboard.id": lead.board,
                    "leaderboard.mode": lead.mode,
                    "leaderboard.version": frame.version,
                    "leaderboard.changes": len(msg["changes"]),
                    "leaderboard.subscribers": len(members),
                }
                links = telemetry.links_of(out.traces)
                with telemetry.span(
                    "ws push", kind=SpanKind.PRODUCER, attributes=attributes, links=links
                ):
                    self._deliver(view, members, frame)
            else:
                self._deliver(view, members, frame)
            if view.snapshot is not None:
                view.since.append(frame)
                if len(view.since) > self.SINCE_MAX:
                    view.snapshot, view.since = None, []

    def _deliver(self, view: _View, members: tuple[Subscriber, ...], frame: _Frame) -> None:
        """Hand ``frame`` to each of ``members`` still in ``view``.

        A member whose own task has nothing to send gets the frame's bytes written to its
        connection here (``RawSocket``: no task wake-up, no framing per member); any other
        is queued the frame, sent by its task in order behind what it holds. A slow client
        (its server write buffer above the high-water mark, or its queue full) leaves the
        view: its queued messages are dropped and its own task sends it one snapshot once it
        reads again (docs/gateway.md "Slow viewers"); the others go on.
        """
        lead_period = view.lead.period
        written = 0
        for sub in members:
            if sub.view is not view:
                continue  # left meanwhile (closed, or overflowed on an earlier frame)
            sock = sub.socket
            if sock is not None and not sub.sending and sub.queue.empty():
                outcome = sock.write(frame.data)
                if outcome is Write.WRITTEN:
                    written += 1
                elif outcome is Write.FULL:
                    self._slow(sub, "its write buffer is full")
                    continue
                # GONE: closing; its task sees the disconnect and unsubscribes it
            else:
                try:
                    sub.queue.put_nowait(frame)
                except asyncio.QueueFull:
                    self._slow(sub, "its queue is full")
                    continue
            sub.version = frame.version
            sub.period = lead_period
        if written:
            self.on_push(frame.kind, written)

    def _slow(self, sub: Subscriber, why: str) -> None:
        """Take a slow member out of its view and have it resync on its own."""
        sub.overflows += 1
        sub.slow += 1
        self.slow_resyncs += 1
        log.info("subscriber %s is slow (%s): deltas dropped, resync", sub.describe(), why)
        self._leave(sub)
        self._drop_data(sub)
        self.resync(sub)

    def subscriber_count(self) -> int:
        """Subscribers across every board."""
        return sum(len(b.subscribers) for b in self.boards.values())

    def resync(self, sub: Subscriber) -> None:
        """Drop whatever ``sub`` has queued and have its sender send a fresh snapshot."""
        sub.syncing = True
        sub.pending.clear()
        sub.traces.clear()
        if sub.flush_handle is not None:
            sub.flush_handle.cancel()
            sub.flush_handle = None
        self._put_control(sub, _RESYNC)

    def _put_control(self, sub: Subscriber, marker: object) -> None:
        while True:
            try:
                sub.queue.put_nowait(marker)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()

    async def snapshot(self, sub: Subscriber) -> dict[str, Any]:
        """Read ``sub``'s view from Redis, replay what arrived meanwhile, return the message."""
        cfg = self.configs(sub.board)
        if cfg is None:
            raise LookupError(sub.board)
        period = await current_period(self.client, cfg)
        shared: list[dict[str, Any]] | None = None
        if sub.mode == "top":
            snap, shared = await self._top_read(cfg, period, sub.n)
        elif sub.mode == "around":
            assert sub.participant_id is not None
            me = await read_participant(self.client, cfg, period, sub.participant_id)
            sub.rank = me.entries[0]["rank"] if me.entries else None
            snap = me
            if sub.rank is not None:
                start = max(0, sub.rank - 1 - sub.n)
                snap = await read_top(self.client, cfg, period, start, sub.rank + sub.n - start)
                mine = next(
                    (e for e in snap.entries if e["participant_id"] == sub.participant_id), None
                )
                sub.rank = mine["rank"] if mine else None  # it may have moved between reads
            sub.window = [e["participant_id"] for e in snap.entries] if sub.rank else []
            sub.base = snap.entries[0]["rank"] if sub.window else 0
            sub.count = snap.count
        else:
            assert sub.participant_id is not None
            snap = await read_participant(self.client, cfg, period, sub.participant_id)
            sub.rank = snap.entries[0]["rank"] if snap.entries else None
            sub.score = snap.entries[0]["score"] if snap.entries else None
        if shared is None:
            entries = [dict(e) for e in snap.entries]
            await attach_profiles(self.client, entries, key=self.profiles_key)
        else:
            entries = [dict(e) for e in shared]
        # No await from here on: the backlog replay and the switch to live are atomic.
        sub.version = snap.version
        sub.period = period
        sub.syncing = False
        sub.held = sub.n
        backlog, sub.backlog = sub.backlog, []
        board = self.boards.get(sub.board)
        if shared is not None and board is not None:
            # A shared read may have started before this subscriber began collecting its
            # backlog: the board's history holds every record since (contiguous; a gap is
            # caught by ``_apply``, which resyncs)
            backlog = self._history(board, sub.version)
        self._apply(sub, backlog)
        self.on_push("snapshot", 1)
        return {
            "type": "snapshot",
            "mode": sub.mode,
            "version": snap.version,
            "period": period,
            "count": snap.count,
            "entries": entries,
        }

    async def _top_read(
        self, cfg: LeaderboardConfigured, period: str, n: int
    ) -> tuple[Snapshot, list[dict[str, Any]]]:
        """The top ``n`` of ``period`` with profiles attached, read once for every caller
        that asks while the read is in flight."""
        key = (cfg.leaderboard_id, n, period)
        fut = self._tops.get(key)
        if fut is None:
            fut = self._tops[key] = asyncio.ensure_future(self._read_top(cfg, period, n))
            fut.add_done_callback(
                lambda f: self._tops.pop(key, None) if self._tops.get(key) is f else None
            )
        return await asyncio.shield(fut)

    async def _read_top(
        self, cfg: LeaderboardConfigured, period: str, n: int
    ) -> tuple[Snapshot, list[dict[str, Any]]]:
        snap = await read_top(self.client, cfg, period, 0, n)
        entries = [dict(e) for e in snap.entries]
        await attach_profiles(self.client, entries, key=self.profiles_key)
        return snap, entries

    def _apply(self, sub: Subscriber, records: Iterable[RankChanged]) -> None:
        """Filter records into ``sub``'s pending delta (or resync it) and schedule a flush."""
        for record in records:
            if record.version_to <= sub.version:
                continue
            for c in record.changes:
                if c.version <= sub.version:
                    continue
                if c.version > sub.version + 1:
                    self.resync(sub)  # a gap: the client cannot apply what follows
                    return
                sub.version = c.version
                if c.period != sub.period:
                    if c.period > sub.period:
                        self.resync(sub)  # a new period started: show its standings
                        return
                    continue
                if c.new_rank == 0 and not self._departure(sub, c):
                    self.resync(sub)  # a row the client holds left the standings
                    return
                if c.new_rank == 0:
                    continue
                if sub.mode == "top":
                    if not self._top_change(sub, c):
                        self.resync(sub)
                        return
                elif sub.mode == "around":
                    if not self._around_change(sub, c):
                        self.resync(sub)  # the window needs rows the client has never seen
                        return
                else:
                    self._track_change(sub, c)
            sub.version = max(sub.version, record.version_to)
        loop = self._loop
        if sub.pending and sub.flush_handle is None and loop is not None:
            # Leading edge: a change after a quiet window leaves at once (after the records
            # of the same hand-over); later ones wait for the window since that push, so a
            # subscriber still gets at most one delta per window.
            wait = sub.last_push + self.window_s - time.monotonic()
            if wait <= 0:
                sub.flush_handle = loop.call_soon(self._emit, sub)
            else:
                sub.flush_handle = loop.call_later(wait, self._emit, sub)

    @staticmethod
    def _departure(sub: Subscriber, c: RankChange) -> bool:
        """Apply a participant leaving the standings (``new_rank`` 0: a moderator's removal or
        the void of its only match). False if the client needs a snapshot: a row it holds (or
        one above the rows it holds, which shifts them) left; top-n then also pulls a row in."""
        if c.old_rank is None:
            return True  # not on the board: nothing moved
        if sub.mode == "top":
            return c.old_rank > sub.n
        if sub.mode == "around":
            sub.count = max(0, sub.count - 1)
            return sub.rank is None or c.old_rank > sub.base + len(sub.window) - 1
        if c.participant_id == sub.participant_id:
            sub.rank, sub.score = None, None
            sub.pending.append(change_json(c))
        elif sub.rank is not None and c.old_rank < sub.rank:
            _shifted(sub, sub.rank - 1, c)
        return True

    @staticmethod
    def _top_change(sub: Subscriber, c: RankChange) -> bool:
        """Add ``c`` if it is inside the top ``n`` and follow the rows the client holds.

        The client's steps (docs/gateway.md): remove the participant if it holds it, insert it
        at ``new_rank`` if that is ≤ n and ≤ its rows + 1, cut at n. A row leaving the top n
        leaves the client one row short; the delta then ends with a ``fill`` read from Redis
        (``_fill``), so the client again holds rows ``1..n`` exactly.
        """
        was_in = c.old_rank is not None and c.old_rank <= sub.n
        now_in = c.new_rank <= sub.n
        if c.old_rank is not None and c.old_rank <= sub.held:
            sub.held -= 1
        if now_in and c.new_rank <= sub.held + 1:
            sub.held = min(sub.n, sub.held + 1)
        if was_in or now_in:
            sub.pending.append(change_json(c))
        return True

    @staticmethod
    def _around_change(sub: Subscriber, c: RankChange) -> bool:
        """Apply ``c`` to the window around ``sub``'s participant; queue it if it touched the
        window. False if the client needs a snapshot: a row it has never seen enters the
        window (a row leaving it pulls one in, or the participant moved away), or the
        participant is not on the board and arrives.

        The client applies the same steps to each change of a delta (docs/gateway.md): remove
        the participant of the change if it holds it (a row above the window leaving shifts
        the window's ranks up by one), insert it at ``new_rank`` if that falls inside or right
        below the rows (above them: ranks shift down by one), then keep the rows of ranks
        ``rank - n .. rank + n`` around the subscribed participant's new rank.
        """
        pid = c.participant_id
        if c.old_rank is None:
            sub.count += 1
        if sub.rank is None:
            return pid != sub.participant_id
        known, base, touched = list(sub.window), sub.base, False
        if pid in known:
            at = known.index(pid)
            if c.old_rank != base + at:
                return False  # the window and the log disagree: start again from a snapshot
            known.pop(at)
            touched = True
        elif c.old_rank is not None and c.old_rank < base:
            base -= 1  # a row above the window left: every row moves up one rank
            touched = True
        elif c.old_rank is not None and c.old_rank < base + len(known):
            return False  # it held a rank of the window under another name: resync
        if c.new_rank < base:
            base += 1
            touched = True
        elif c.new_rank <= base + len(known):
            known.insert(c.new_rank - base, pid)
            touched = True
        if not touched:
            return True  # a move below the window: nothing the client holds changed
        assert sub.participant_id is not None
        if sub.participant_id not in known:
            return False
        rank = base + known.index(sub.participant_id)
        lo, hi = max(1, rank - sub.n), min(rank + sub.n, sub.count)
        if lo < base or hi > base + len(known) - 1:
            return False
        sub.window, sub.base, sub.rank = known[lo - base : hi - base + 1], lo, rank
        sub.pending.append(change_json(c))
        return True

    def _track_change(self, sub: Subscriber, c: RankChange) -> None:
        """Follow the tracked participant's rank through its own and others' moves."""
        if c.participant_id == sub.participant_id:
            sub.rank, sub.score = c.new_rank, c.new_score
            sub.pending.append(change_json(c))
            return
        r = sub.rank
        if r is None:
            return
        if (c.old_rank is None or c.old_rank > r) and c.new_rank <= r:
            new = r + 1  # passed by c
        elif c.old_rank is not None and c.old_rank < r <= c.new_rank:
            new = r - 1  # c fell behind
        else:
            return
        _shifted(sub, new, c)

    def _emit(self, sub: Subscriber, *, force: bool = False) -> None:
        sub.flush_handle = None
        if sub.syncing or (not sub.pending and not force):
            return
        view = sub.leads
        if view is not None and (view.busy or not sub.queue.empty()):
            # The pump is still sending the previous frame (awaiting Redis, the loop busy
            # with sends): keep the changes and cut them when it is idle, as one delta. A
            # queue of deltas would only add latency and hold newcomers out (``_admit``).
            view.deferred = True
            return
        msg = {
            "type": "delta",
            "version": sub.version,
            "period": sub.period,
            "changes": sub.pending,
        }
        if sub.mode == "top" and sub.held < sub.n:
            msg[_FILL_FROM] = sub.held + 1  # the sender reads rows held+1..n (``_fill``)
            sub.held = sub.n
        sub.pending = []
        sub.last_push = time.monotonic()
        item: dict[str, Any] | _Traced = msg
        if sub.traces:
            item, sub.traces = _Traced(msg, sub.traces), []
        try:
            sub.queue.put_nowait(item if view is None else _Outgoing(item, tuple(view.members)))
        except asyncio.QueueFull:
            sub.overflows += 1
            log.info("subscriber %s is slow: queue full, resync", sub.describe())
            self._drop_data(sub)
            self.resync(sub)
            if view is not None:  # the pump fell behind: its members missed deltas
                for member in list(view.members):
                    self._leave(member)
                    self._drop_data(member)
                    self.resync(member)
            return
        board = self.boards.get(sub.board)
        if view is not None and board is not None:
            self._join(view, board)

    @staticmethod
    def _drop_data(sub: Subscriber) -> None:
        """Empty ``sub``'s queue (a snapshot will supersede what was in it)."""
        while not sub.queue.empty():
            sub.queue.get_nowait()

    async def _enrich(self, board: str, changes: list[dict[str, Any]]) -> None:
        """Attach each changed participant's latest entry ``metadata`` and ``profile`` to the
        changes of a delta, in place: read as the delta leaves, in one round trip (two
        HMGETs), so they are the current ones."""
        pids = list(dict.fromkeys(c["participant_id"] for c in changes))
        if not pids:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(BoardKeys(board).metadata, pids)
        pipe.hmget(self.profiles_key, pids)
        metas, profiles = await pipe.execute()
        meta = {p: json.loads(m) for p, m in zip(pids, metas, strict=True) if m}
        prof = {p: json.loads(v) for p, v in zip(pids, profiles, strict=True) if v}
        for c in changes:
            pid = c["participant_id"]
            if pid in meta:
                c["metadata"] = meta[pid]
            if pid in prof:
                c["profile"] = prof[pid]

    async def _snapshot_or_retry(self, sub: Subscriber) -> dict[str, Any] | None:
        """``sub``'s snapshot; None if Redis failed (busy or away): it is asked again in 1 s.

        A Redis error never ends a subscription: the viewer keeps its connection and gets
        the snapshot once Redis answers (an unknown board still ends it: LookupError).
        """
        try:
            async with self._reads:
                return await self.snapshot(sub)
        except RedisError as exc:
            log.warning("snapshot of %s failed, retrying in 1 s: %r", sub.describe(), exc)
            asyncio.get_running_loop().call_later(1.0, self._retry_snapshot, sub)
            return None

    def _retry_snapshot(self, sub: Subscriber) -> None:
        """Ask ``sub``'s sender for its snapshot again (unless one was sent meanwhile)."""
        if sub.syncing:
            self._put_control(sub, _RESYNC)

    async def _filled(self, sub: Subscriber, msg: dict[str, Any]) -> bool:
        """``_fill``; if Redis failed, resync ``sub`` instead (False)."""
        try:
            return await self._fill(sub, msg)
        except RedisError as exc:
            log.warning("fill of %s not read, resync: %r", sub.describe(), exc)
            self.resync(sub)
            return False

    async def _fill(self, sub: Subscriber, msg: dict[str, Any]) -> bool:
        """Add to a top-mode delta the rows its client lacks (``fill``: rows from
        ``_fill_from`` to n, read at the delta's version); False (and a resync) if the board
        has moved past that version. One Redis read serves every subscriber of the board and
        view that needs rows at that version."""
        start = msg.pop(_FILL_FROM)
        version = msg["version"]
        cfg = self.configs(sub.board)
        if cfg is None:
            self.resync(sub)
            return False
        key = (sub.board, sub.n, sub.period)
        cached = self._fills.get(key)
        if cached is None or cached[0] != version or cached[1] > start:
            task = asyncio.ensure_future(
                read_top(self.client, cfg, sub.period, start - 1, sub.n - start + 1)
            )
            cached = self._fills[key] = (version, start, task)
        snap = await asyncio.shield(cached[2])
        if snap.version != version:
            self.resync(sub)
            return False
        rows = [dict(e) for e in snap.entries if e["rank"] >= start]
        await attach_profiles(self.client, rows, key=self.profiles_key)
        msg["fill"] = rows
        return True

    async def _enriched(self, sub: Subscriber, msg: dict[str, Any]) -> bool:
        """Enrich a delta's changes; if Redis failed, resync ``sub`` instead (False)."""
        try:
            await self._enrich(sub.board, msg["changes"])
        except RedisError as exc:
            log.warning("delta of %s not enriched, resync: %r", sub.describe(), exc)
            self.resync(sub)
            return False
        return True

    async def serve(
        self,
        sub: Subscriber,
        send: Callable[[str], Awaitable[None]],
        *,
        send_timeout_s: float = 30.0,
    ) -> None:
        """Send ``sub``'s queue (as JSON text) until it is closed.

        A send blocked longer than ``send_timeout_s`` (the client reads nothing: its socket
        buffers are full) ends the subscription; a client that reads too slowly for the
        deltas overflows its queue instead and gets a snapshot when it has caught up.
        """
        while True:
            item = await sub.queue.get()
            if item is _CLOSE:
                return
            sub.sending = True  # a view queues to it meanwhile, in order
            try:
                await self._send_one(sub, item, send, send_timeout_s)
            finally:
                sub.sending = False

    async def _send_one(
        self,
        sub: Subscriber,
        item: Any,
        send: Callable[[str], Awaitable[None]],
        send_timeout_s: float,
    ) -> None:
        """Send one queued item (nothing if it was superseded)."""
        if isinstance(item, _Frame):  # encoded once by the view for all its members
            self.on_push(item.kind, 1)
            async with asyncio.timeout(send_timeout_s):  # no task per send
                await send(item.text)
            return
        if item is _RESYNC:
            if not sub.syncing:
                return  # superseded by a snapshot already sent
            snap = await self._snapshot_or_retry(sub)
            if snap is None:
                return
            msg = snap
        elif isinstance(item, _Traced):
            if sub.syncing:
                return  # superseded by the snapshot queued after it
            if _FILL_FROM in item.msg and not await self._filled(sub, item.msg):
                return  # the rows moved on: a snapshot follows instead
            self.on_push("delta", 1)
            await self._send_traced(sub, item, send, send_timeout_s)
            return
        else:
            msg = item
            if msg.get("type") == "delta":
                if sub.syncing:
                    return  # superseded by the snapshot queued after it
                if _FILL_FROM in msg and not await self._filled(sub, msg):
                    return  # the rows moved on: a snapshot follows instead
                if not await self._enriched(sub, msg):
                    return
                self.on_push("delta", 1)
            elif msg.get("type") == "ping" and sub.ping_sent is None:
                sub.ping_sent = time.monotonic()  # sent, not only queued: now it counts
        async with asyncio.timeout(send_timeout_s):
            await send(encode(msg))

    @staticmethod
    async def _send_traced(
        sub: Subscriber,
        item: _Traced,
        send: Callable[[str], Awaitable[None]],
        send_timeout_s: float,
    ) -> None:
        """Send a delta inside a push span linked to the rank-change records it carries."""
        attributes: dict[str, str | int] = {
            "leaderboard.id": sub.board,
            "leaderboard.subscriber": sub.id,
            "leaderboard.mode": sub.mode,
            "leaderboard.version": int(item.msg["version"]),
            "leaderboard.changes": len(item.msg["changes"]),
        }
        links = telemetry.links_of(item.traces)
        with telemetry.span("ws push", kind=SpanKind.PRODUCER, attributes=attributes, links=links):
            async with asyncio.timeout(send_timeout_s):
                await send(encode(item.msg))


def now_iso() -> str:
    """The wall clock as ISO-8601 UTC (heartbeat messages)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
