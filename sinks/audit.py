"""Audit history writer: every applied score entry as one row, COPY-batched and idempotent."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any

import psycopg

from sinks.audit_decode import RankChangedFields
from streams.errors import ServiceUnavailable
from streams.events import RankChanged

__all__ = [
    "AUDIT_COLUMNS",
    "OPERATORS",
    "AuditWriter",
    "audit_rows",
    "months_of",
    "stored_event_id",
]

log = logging.getLogger(__name__)

#: Opens a new autocommit connection to the audit database.
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[tuple[object, ...]]]]

#: The stored audit row (``audit_entries``), in COPY order: (column, binary wire type, column
#: type). The one place the row's shape is stated: COPY, the staging table and its INSERT are
#: derived from it. The change's own fields come first, in ``_FIELDS`` order, so that a row is
#: one C-level getter call on the change (an Avro dict or a ``RankChange``) and a few Python
#: steps; board and period are dictionary ids (``audit_boards``, ``audit_periods``), the
#: operator its index in ``OPERATORS``. Binary COPY sends each value in its column's binary
#: form, which PostgreSQL reads without any conversion on its side: a ``timestamptz`` is a
#: 64-bit count of microseconds since 2000-01-01 UTC (the same bytes as an ``int8``), a
#: ``uuid`` its 16 raw bytes (the same bytes as a ``bytea`` of 16).
_SHAPE = (
    ("version", "int8", "int8"),
    ("submitted_score", "int8", "int8"),
    ("new_score", "int8", "int8"),
    ("old_score", "int8", "int8"),
    ("source_offset", "int8", "int8"),
    ("occurred_at", "int8", "timestamptz"),
    ("claimed_at", "int8", "timestamptz"),
    ("new_rank", "int4", "int4"),
    ("old_rank", "int4", "int4"),
    ("source_partition", "int2", "int2"),
    ("entry_index", "int2", "int2"),
    ("participant_id", "text", "text"),
    ("event_uuid", "bytea", "uuid"),
    ("event_text", "text", "text"),
    ("match_id", "text", "text"),
    ("board_id", "int4", "int4"),
    ("period_id", "int2", "int2"),
    ("operator", "int2", "int2"),
)
#: The RankChange fields a row is made of, in order (times in epoch milliseconds).
_FIELDS = (
    "version",
    "submitted_score",
    "new_score",
    "old_score",
    "source_offset",
    "occurred_at",
    "claimed_at",
    "new_rank",
    "old_rank",
    "source_partition",
    "entry_index",
    "participant_id",
    "event_id",
    "match_id",
    "period",
    "operator",
)
_FROM_OBJECT = attrgetter(*_FIELDS)
_FROM_DICT = itemgetter(*_FIELDS)
AUDIT_COLUMNS = tuple(name for name, _, _ in _SHAPE)
_TYPES = tuple(wire for _, wire, _ in _SHAPE)
_OCCURRED_OF = itemgetter(AUDIT_COLUMNS.index("occurred_at"))

#: PostgreSQL's timestamp epoch (2000-01-01 UTC) in Unix epoch milliseconds.
_PG_EPOCH_MS = 946_684_800_000

#: A canonical UUID: lower-case, hyphenated, the text PostgreSQL prints back. Such an event id
#: is stored as 16 bytes (``event_uuid``), any other as text (``event_text``), so every id
#: reads back as it was written; the same rule as the SQL function ``audit_event_uuid`` of
#: migration 0003 (tests/integration/test_audit_schema.py holds the two equal).
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def stored_event_id(event_id: str) -> tuple[bytes | None, str | None]:
    """(``event_uuid``, ``event_text``) of an event id: exactly one of the two is set."""
    if _CANONICAL_UUID.fullmatch(event_id):
        return bytes.fromhex(event_id.replace("-", "")), None
    return None, event_id


#: Stored operator codes: the four score operators, then the moderation actions whose rank
#: changes reach the audit (a removal, a void; docs/moderation.md). Append only.
OPERATORS = ("best", "set", "incr", "decr", "participant_removed", "match_voided")
_OPERATOR_CODE = {name: i for i, name in enumerate(OPERATORS)}

_COLUMN_LIST = ", ".join(AUDIT_COLUMNS)
#: The usual write: every row straight into the partitioned table (routed to its month).
_COPY_DIRECT = f"COPY audit_entries ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
#: A batch holding rows already stored (a redelivery) is staged and inserted without them.
_STAGE = "audit_entries_stage"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
    + ", ".join(f"{name} {kind}" for name, _, kind in _SHAPE)
    + ") ON COMMIT DELETE ROWS"
)
_COPY_STAGE = f"COPY {_STAGE} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_INSERT = (
    f"INSERT INTO audit_entries ({_COLUMN_LIST}) "
    f"SELECT {_COLUMN_LIST} FROM {_STAGE} ON CONFLICT DO NOTHING"
)

#: (table, name column) of the two dictionaries.
_BOARDS = ("audit_boards", "name")
_PERIODS = ("audit_periods", "period")


#: What the writer takes: rank changes from the codec, or as the audit decoder read them.
AuditInput = RankChanged | RankChangedFields


def audit_rows(
    batch: Sequence[AuditInput], boards: Mapping[str, int], periods: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    """The stored rows of ``batch`` in COPY order (``AUDIT_COLUMNS``, binary wire values),
    given the dictionary ids of its boards and periods: one getter call per change, the
    times moved to PostgreSQL's epoch in microseconds, the event id split by
    ``stored_event_id`` (once per event: the entries of a match share it)."""
    ops = _OPERATOR_CODE
    epoch = _PG_EPOCH_MS
    ids: dict[str, tuple[bytes | None, str | None]] = {}
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for ev in batch:
        if not ev.changes:
            continue
        board = boards[ev.leaderboard_id]
        get: Callable[[Any], tuple[Any, ...]] = (
            _FROM_OBJECT if isinstance(ev, RankChanged) else _FROM_DICT
        )
        for c in ev.changes:
            (ver, sub, new, old, off, occ, claimed, rank, old_rank, part, idx, pid, eid, mid,
             period, op) = get(c)  # fmt: skip
            stored = ids.get(eid)
            if stored is None:
                stored = ids[eid] = stored_event_id(eid)
            append(
                (
                    ver,
                    sub,
                    new,
                    old,
                    off,
                    (occ - epoch) * 1000,
                    None if claimed is None else (claimed - epoch) * 1000,
                    rank,
                    old_rank,
                    part,
                    idx,
                    pid,
                    stored[0],
                    stored[1],
                    None if mid == eid else mid,
                    board,
                    periods[period],
                    ops[op],
                )
            )
    return rows


def _period_names(batch: Sequence[AuditInput]) -> set[str]:
    names: set[str] = set()
    for ev in batch:
        if isinstance(ev, RankChanged):
            names.update(c.period for c in ev.changes)
        else:
            names.update(map(_PERIOD, ev.changes))
    return names


_PERIOD = itemgetter("period")


def months_of(times_ms: Iterable[int]) -> list[tuple[int, int]]:
    """(year, month) of each UTC month holding one of ``times_ms``, and of the month after it.

    Only months that occur are named (never the span between two far-apart times), so one
    batch creates at most two partitions per distinct month it holds; the month after is
    created ahead so that the first event of a new month never waits for DDL.
    """
    out: set[tuple[int, int]] = set()
    for ms in times_ms:
        day = datetime.fromtimestamp(ms / 1000, tz=UTC)
        y, m = day.year, day.month
        out.add((y, m))
        out.add((y + 1, 1) if m == 12 else (y, m + 1))
    return sorted(out)


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def _month_span(year: int, month: int) -> tuple[int, int]:
    """[start, end) of a UTC month in epoch milliseconds."""
    end = _month_start(year + 1, 1) if month == 12 else _month_start(year, month + 1)
    return _epoch_ms(_month_start(year, month)), _epoch_ms(end)


def _month_span_us(year: int, month: int) -> tuple[int, int]:
    """[start, end) of a UTC month in µs since 2000-01-01 (the unit of the rows' times)."""
    start, end = _month_span(year, month)
    return (start - _PG_EPOCH_MS) * 1000, (end - _PG_EPOCH_MS) * 1000


def _epoch_ms(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AuditWriter:
    """Writes RankChanged batches to ``score_audit`` over one async connection.

    Each ``write`` is one transaction: a binary COPY straight into ``audit_entries``. Rows are
    unique on their source (board, partition, offset, entry index, time), so a batch that
    holds a row already stored (a redelivery after a crash, rare) fails on that key and
    commits nothing; it is then written again in a second transaction through a temporary
    staging table and ``INSERT … SELECT … ON CONFLICT DO NOTHING``, which adds only the rows
    not stored yet. Either way the same rows are stored, once. The direct COPY is what makes
    the usual batch cheap: PostgreSQL inserts the rows in bulk with no staging, no
    expressions and no speculative insertion (benchmarks/notes.md). The monthly partitions a
    batch needs (and the month after it) are created first, in a short transaction of their
    own. A broken connection is dropped and reopened on the next call.
    """

    def __init__(self, connect: Connect) -> None:
        """``connect`` opens an autocommit connection (processors/bootstrap.py builds it)."""
        self.connect = connect
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._months: set[tuple[int, int]] = set()
        #: [start, end) of each month in ``_months``, in µs since 2000-01-01 (the rows' unit)
        self._spans: list[tuple[int, int]] = []
        self._board_ids: dict[str, int] = {}
        self._period_ids: dict[str, int] = {}

    async def __aenter__(self) -> AuditWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (a later ``write`` reconnects)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def write(self, batch: Sequence[AuditInput]) -> int:
        """Insert one row per RankChange of ``batch``; return how many rows were new.

        Raises ServiceUnavailable when PostgreSQL cannot be reached or the connection broke;
        nothing of the batch is then committed and the call may simply be repeated.
        """
        if not any(ev.changes for ev in batch):
            return 0
        try:
            conn = await self._connection()
            boards = await self._ids(
                conn, _BOARDS, self._board_ids, {ev.leaderboard_id for ev in batch if ev.changes}
            )
            periods = await self._ids(conn, _PERIODS, self._period_ids, _period_names(batch))
        except psycopg.OperationalError as exc:
            await self._drop()
            raise ServiceUnavailable(f"audit write failed: {_first_line(exc)}") from exc
        rows = audit_rows(batch, boards, periods)
        try:
            await self._ensure_partitions(conn, rows)
            try:
                async with conn.transaction():
                    async with conn.cursor() as cur:
                        await _copy(cur, _COPY_DIRECT, rows)
                inserted = len(rows)
            except psycopg.errors.UniqueViolation:
                log.info(
                    "audit: a batch of %d rows holds stored rows; adding the others", len(rows)
                )
                async with conn.transaction():
                    async with conn.cursor() as cur:
                        await _copy(cur, _COPY_STAGE, rows)
                        await cur.execute(_INSERT)
                        inserted = cur.rowcount
        except psycopg.OperationalError as exc:
            await self._drop()
            raise ServiceUnavailable(f"audit write failed: {_first_line(exc)}") from exc
        log.debug("audit: %d of %d rows new", inserted, len(rows))
        return inserted

    async def _ensure_partitions(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], rows: list[tuple[Any, ...]]
    ) -> None:
        occurred = set(map(_OCCURRED_OF, rows))  # µs since 2000-01-01 (the rows' unit)
        lo, hi = min(occurred), max(occurred)
        if any(start <= lo and hi < end for start, end in self._spans):
            return  # the whole batch lies in one month whose partitions exist (the usual case)
        times_ms = {us // 1000 + _PG_EPOCH_MS for us in occurred}
        missing = [ym for ym in months_of(times_ms) if ym not in self._months]
        if not missing:
            return
        created = 0
        async with conn.transaction():
            for ym in missing:
                start = _month_start(*ym)
                cur = await conn.execute("SELECT ensure_audit_partitions(%s, %s)", (start, start))
                row = await cur.fetchone()
                created += int(row[0]) if row else 0  # type: ignore[call-overload]
        if created:
            log.info("audit: created %d monthly partition(s) from %04d-%02d", created, *missing[0])
        self._months.update(missing)
        self._spans = [_month_span_us(*ym) for ym in sorted(self._months)]

    async def _ids(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        table: tuple[str, str],
        cache: dict[str, int],
        names: set[str],
    ) -> dict[str, int]:
        """Dictionary ids of ``names``, adding the new ones (each in its own short commit).

        Only names missing from the table are inserted, so the id sequence is not spent on
        every batch (periods have smallint ids); a concurrent writer's insert simply conflicts.
        """
        missing = [n for n in names if n not in cache]
        if missing:
            name, column = table
            select = f"SELECT {column}, id FROM {name} WHERE {column} = ANY(%s)"
            cur = await conn.execute(select, (missing,))
            cache.update((str(k), int(v)) for k, v in await cur.fetchall())  # type: ignore[call-overload]
            new = [n for n in missing if n not in cache]
            if new:
                insert = f"INSERT INTO {name} ({column}) SELECT unnest(%s::text[])"
                await conn.execute(insert + " ON CONFLICT DO NOTHING", (sorted(new),))
                cur = await conn.execute(select, (new,))
                cache.update((str(k), int(v)) for k, v in await cur.fetchall())  # type: ignore[call-overload]
        return cache

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = await self.connect()
            await conn.execute(_CREATE_STAGE)
            self._conn = conn
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # the connection is already broken; closing is best effort
                log.debug("audit: closing a broken connection failed", exc_info=True)


async def _copy(cur: psycopg.AsyncCursor[Any], statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Binary COPY of ``rows`` (``AUDIT_COLUMNS`` order) by ``statement``."""
    async with cur.copy(statement) as copy:
        copy.set_types(_TYPES)
        for row in rows:
            await copy.write_row(row)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
