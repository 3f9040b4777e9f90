"""Reading a board's records from the score topic for replay, here or in a second process.

``KafkaSource`` reads one board's partition as plain rows. A fold of many records reads and
decodes them in a second process instead (``DecodeProcess``): the parent then only unpacks
compact tuples into events and folds them, so decoding (fastavro, about a third of a replay's
CPU) and folding run on two cores at once.
"""

from __future__ import annotations

import multiprocessing
import pickle
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Message, TopicPartition
from psycopg import sql

from processors.bootstrap import get_codec, kafka_consumer, pg_connect
from sinks.audit import OPERATORS
from streams.codec import SingleObjectCodec, match_fingerprint, match_rows
from streams.errors import DecodeError, LeaderboardError
from streams.events import CLOCK_KEY, MatchResultSubmitted, Operator, ScoreEntry
from streams.model import FoldEntry
from streams.partitioning import partition_for
from streams.settings import Settings

#: Records asked of the consumer per read.
CHUNK = 5000
#: (partition, offset, key, value, broker append time or None): a record as read.
Row = tuple[int, int, bytes | None, bytes | None, int | None]
#: A record of the board decoded in the second process: (partition, offset, key, append time,
#: event id, match id, claimed time, entries as (participant, score, operator or None,
#: metadata or None)). Any other record travels as a ``Row`` and is decoded by the parent.
Packed = tuple[
    int,
    int,
    bytes | None,
    int | None,
    str,
    str,
    int,
    tuple[tuple[str, int, Operator | None, dict[str, str] | None], ...],
]


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


def log_time(msg: Message) -> int | None:
    """The broker's append time of ``msg`` in ms (as the live worker sees it), else None."""
    kind, ms = msg.timestamp()
    return int(ms) if kind == TIMESTAMP_LOG_APPEND_TIME else None


class KafkaSource:
    """Reads one board's records from its partition of the score topic.

    The partition is assigned at the first read (from ``position``), so a source whose
    records a second process reads fetches nothing until its own reads (the tail of a swap).
    """

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
        low, _ = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, self.partition), timeout=10
        )
        self.position = max(low, start) if start >= 0 else low
        self.assigned = False

    def end_offset(self) -> int:
        """Current end (high watermark) of the board's partition."""
        _, high = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, self.partition), timeout=10, cached=False
        )
        return int(high)

    def read_until(self, end: int) -> list[Row]:
        """Next records (the board's and the clock marks) up to offset ``end`` (exclusive);
        [] when reached."""
        if self.position >= end:
            return []
        if not self.assigned:
            self.consumer.assign([TopicPartition(self.topic, self.partition, self.position)])
            self.assigned = True
        out: list[Row] = []
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
                    out.append((msg.partition(), off, msg.key(), msg.value(), log_time(msg)))
            if self.position >= end:
                break
        return out

    def close(self) -> None:
        """Release the consumer."""
        self.consumer.close()


def pack(settings: Settings, board: str, rows: list[Row]) -> list[Packed | Row]:
    """The board's matches of one chunk decoded into ``Packed`` tuples, other records as
    read (undecodable ones left out, as the parent would): the second process's work, or
    this process's when it reads alone.

    A match written with the current schema in single-object form (nearly every record) is
    decoded by ``codec.match_rows`` straight into the tuple (about a quarter of fastavro's
    CPU and no event objects); any other record goes through the live codec."""
    codec = get_codec(settings)
    fp = match_fingerprint(codec.store) if isinstance(codec, SingleObjectCodec) else b""
    out: list[Packed | Row] = []
    for row in rows:
        part, off, key, value, at = row
        data = value or b""
        try:
            got = match_rows(data, fp)
            if got is None:
                ev = codec.decode(data)
                if type(ev) is MatchResultSubmitted:
                    got = (
                        ev.event_id,
                        ev.match_id,
                        ev.leaderboard_id,
                        ev.occurred_at,
                        tuple(
                            [
                                (
                                    e.participant_id,
                                    e.score,
                                    e.operator,
                                    e.metadata or None,
                                )
                                for e in ev.entries
                            ]
                        ),
                    )
        except DecodeError:
            continue  # dead-lettered live
        if got is not None and got[2] == board:
            out.append((part, off, key, at, got[0], got[1], got[3], got[4]))
        else:
            out.append(row)
    return out


def unpack_match(board: str, row: Packed) -> MatchResultSubmitted:
    """The event of a ``Packed`` row for a fold: its values as the codec decodes them, each
    entry a ``model.FoldEntry`` (``ScoreEntry``'s fields in a tuple, built in C), which is all
    the fold reads of an entry."""
    entries = tuple(map(FoldEntry._make, row[7]))
    # FoldEntry is structurally the ScoreEntry the fold and the record checks read
    return MatchResultSubmitted(
        row[4], row[5], board, row[6], cast(tuple[ScoreEntry, ...], entries)
    )


def _read_and_decode(
    settings: Settings,
    board: str,
    from_timestamp: int | None,
    orders: Any,
    conn: Any,
    parent_ends: tuple[Any, ...],
) -> None:
    """The second process: wait for the offset to read up to (from ``orders``; negative: none
    wanted), read the board's partition up to it, decode, and send ``(position, rows)``
    chunks through ``conn``, then ``(position, None)``; an error as ``(-1, message)``.

    The parent's ends of both pipes, copied by the fork, are closed first: once the parent
    closes its own (or dies), the wait for orders ends instead of lasting forever."""
    for theirs in parent_ends:
        theirs.close()
    try:
        src = KafkaSource(settings, board, from_timestamp)
        try:
            end = orders.recv()
            while end >= 0 and (rows := src.read_until(end)):
                data = (src.position, pack(settings, board, rows))
                conn.send_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
            conn.send_bytes(pickle.dumps((src.position, None)))
        finally:
            src.close()
    except Exception as exc:  # the parent raises it as a one-line error
        conn.send_bytes(pickle.dumps((-1, f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class DecodeProcess:
    """A second process that reads and decodes one board's records, once told how far.

    It is forked before this replay opens any Kafka client (``start`` then says how far to
    read, ``cancel`` that nothing is wanted): a forked child starts in milliseconds with every
    module loaded, where a spawned one spends about a second importing them, and no Kafka
    client thread of the parent is running to be copied mid-step.
    """

    def __init__(self, settings: Settings, board: str, from_timestamp: int | None) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=False)
        orders, self.orders = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_read_and_decode,
            args=(settings, board, from_timestamp, orders, child, (self.conn, self.orders)),
            name=f"replay-decode-{board}",
            daemon=True,
        )
        self.process.start()
        child.close()
        orders.close()
        self.started = False

    def start(self, end: int) -> None:
        """Read and decode up to offset ``end`` (exclusive)."""
        self.orders.send(end)
        self.started = True

    def receive(self) -> tuple[int, list[Packed | Row] | None]:
        """The next ``(position, rows)`` chunk; ``rows`` None at the end (blocking)."""
        try:
            # our own child process wrote these bytes (a pipe no one else holds)
            position, rows = pickle.loads(self.conn.recv_bytes())  # noqa: S301
        except EOFError:
            code = self.process.exitcode
            raise LeaderboardError(
                f"the replay's decode process stopped (exit code {code}): rerun the replay"
            ) from None
        if position < 0:
            raise LeaderboardError(f"the replay's decode process failed: {rows}")
        return position, rows

    def close(self) -> None:
        """Stop the process (told to read nothing if it was never started) and release it."""
        if not self.started and self.process.is_alive():
            with suppress(OSError):
                self.orders.send(-1)
            self.process.join(timeout=10)
        if self.process.is_alive():  # what it still reads or sends is not wanted
            self.process.kill()
            self.process.join()
        self.orders.close()
        self.conn.close()


def audit_query(board: str, from_timestamp: int | None) -> sql.Composed:
    """The board's audit rows in source order (the order of the unique source index, so no
    sort): partition, offset, entry index, event id, match id (None when equal), ms,
    participant, score, operator code. Ids are resolved on the server and times arrive as
    milliseconds, so each row costs little more than its entry."""
    cond = sql.SQL("a.board_id = (SELECT id FROM audit_boards WHERE name = {})").format(
        sql.Literal(board)
    )
    if from_timestamp is not None:
        since = datetime.fromtimestamp(from_timestamp / 1000, tz=UTC)
        cond += sql.SQL(" AND a.occurred_at >= {}").format(sql.Literal(since))
    return sql.SQL(
        "SELECT a.source_partition, a.source_offset, a.entry_index,"
        " coalesce(a.event_uuid::text, a.event_text), a.match_id,"
        " round(date_part('epoch', a.occurred_at) * 1000)::int8,"
        " a.participant_id, a.submitted_score, a.operator"
        " FROM audit_entries a WHERE {}"
        " ORDER BY a.source_partition, a.source_offset, a.entry_index"
    ).format(cond)


#: Operators of ScoreEntry by their stored audit code (sinks.audit.OPERATORS order); None for
#: the moderation actions a row may also carry (a removal, a void).
AUDIT_OPERATORS = tuple(
    Operator(name) if name in Operator._value2member_map_ else None for name in OPERATORS
)
#: One log record's audit rows, as ``audit_query`` returns them.
AuditGroup = list[tuple[Any, ...]]


def pack_audit(key: bytes, group: AuditGroup) -> Packed | AuditGroup:
    """A record's audit rows as a ``Packed`` match (one event id, entries from index 0, every
    operator a score operator; its log time None: the audit keeps the ranking time), or the
    rows as they are (a coalesced record, a moderation) for the parent's ``_record``."""
    part, off, first, eid, mid, at = group[0][:6]
    if first != 0:
        return group
    ops = AUDIT_OPERATORS
    entries = []
    for r in group:
        op = ops[r[8]]
        if op is None or r[3] != eid:
            return group
        entries.append((r[6], r[7], op, None))
    return (part, off, key, None, eid, mid if mid is not None else eid, at, tuple(entries))


def _read_audit(
    settings: Settings, board: str, from_timestamp: int | None, conn: Any, parent: Any
) -> None:
    """The audit reading process: the board's rows grouped into records (``pack_audit``),
    sent through ``conn`` as pickled chunks of about ``CHUNK`` records, then None; an error as
    ``(-1, message)``. The parent's end, copied by the fork, is closed first."""
    parent.close()
    key = board.encode()
    try:
        with (
            pg_connect(settings) as db,
            db.cursor(name=f"replay_{uuid.uuid4().hex[:8]}", binary=True) as cur,
        ):
            cur.execute(audit_query(board, from_timestamp))
            batch: list[Packed | AuditGroup] = []
            group: AuditGroup = []
            while rows := cur.fetchmany(20_000):
                for row in rows:
                    if group and (group[0][1] != row[1] or group[0][0] != row[0]):
                        batch.append(pack_audit(key, group))
                        group = []
                    group.append(row)
                if len(batch) >= CHUNK:
                    conn.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
                    batch = []
            if group:
                batch.append(pack_audit(key, group))
            if batch:
                conn.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        conn.send_bytes(pickle.dumps(None))
    except Exception as exc:  # the parent raises it as a one-line error
        conn.send_bytes(pickle.dumps((-1, f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class AuditProcess:
    """A second process that reads one board's audit rows and groups them into records.

    The read (psycopg's binary rows) and the grouping run beside the fold: the parent
    unpickles compact ``Packed`` tuples (entries become ``FoldEntry`` tuples in C) instead
    of fetching, grouping and building the records itself. Forked, so it starts with every
    module loaded; it opens only its own PostgreSQL connection.
    """

    def __init__(self, settings: Settings, board: str, from_timestamp: int | None) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_read_audit,
            args=(settings, board, from_timestamp, child, self.conn),
            name=f"replay-audit-{board}",
            daemon=True,
        )
        self.process.start()
        child.close()

    def receive(self) -> list[Packed | AuditGroup] | None:
        """The next chunk of records; None at the end (blocking)."""
        try:
            # our own child process wrote these bytes (a pipe no one else holds)
            chunk = pickle.loads(self.conn.recv_bytes())  # noqa: S301
        except EOFError:
            code = self.process.exitcode
            raise LeaderboardError(
                f"the replay's audit reading process stopped (exit code {code}): rerun the replay"
            ) from None
        if isinstance(chunk, tuple):
            raise LeaderboardError(f"the replay's audit read failed: {chunk[1]}")
        return cast(list[Packed | AuditGroup] | None, chunk)

    def stop(self) -> None:
        """Stop the process now (what it still reads or sends is not wanted)."""
        if self.process.is_alive():
            self.process.kill()

    def close(self) -> None:
        """Stop the process if it is still running and release it."""
        self.stop()
        self.process.join()
        self.conn.close()


__all__ = [
    "AUDIT_OPERATORS",
    "CHUNK",
    "AuditGroup",
    "AuditProcess",
    "DecodeProcess",
    "KafkaSource",
    "Packed",
    "Row",
    "audit_query",
    "log_time",
    "pack",
    "pack_audit",
    "unpack_match",
]
