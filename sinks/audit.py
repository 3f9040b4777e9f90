"""Audit history writer: every applied score entry as one row, COPY-batched and idempotent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any

import psycopg

from sinks.audit_decode import RankChangedFields
from streams.errors import ServiceUnavailable
from streams.events import RankChanged

__all__ = ["AUDIT_COLUMNS", "OPERATORS", "AuditWriter", "audit_rows", "months_of"]

log = logging.getLogger(__name__)

#: Opens a new autocommit connection to the audit database.
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[tuple[object, ...]]]]

#: Columns staged per RankChange, in COPY order, with their PostgreSQL types: the one place the
#: audit row's shape is stated (the staging table, COPY and INSERT are derived from it).
#: The change's own fields come first, in ``_FIELDS`` order, so that a row is one C-level
#: getter call on the change (an Avro dict or a ``RankChange``) plus the three columns the
#: writer maps: board and period as dictionary ids (``audit_boards``, ``audit_periods``), the
#: operator as its index in ``OPERATORS``. The server derives the stored forms of the rest
#: (``_DERIVED``): ``*_ms`` milliseconds become timestamps (``occurred_at`` is the ranking
#: time, ``claimed_at`` the producer's claim when it differs); the event id is kept as 16 bytes
#: when it is a canonical UUID (``audit_event_uuid``, the rule the migration used), as text
#: otherwise; the match id only when it differs from the event id.
_SHAPE = (
    ("version", "int8"),
    ("submitted_score", "int8"),
    ("new_score", "int8"),
    ("old_score", "int8"),
    ("source_offset", "int8"),
    ("occurred_ms", "int8"),
    ("claimed_ms", "int8"),
    ("new_rank", "int4"),
    ("old_rank", "int4"),
    ("source_partition", "int2"),
    ("entry_index", "int2"),
    ("participant_id", "text"),
    ("event_id", "text"),
    ("match_id", "text"),
    ("board_id", "int4"),
    ("period_id", "int2"),
    ("operator", "int2"),
)
#: The RankChange fields of the first staged columns, in order (``*_ms`` are ``*_at``).
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
)
_FROM_OBJECT = attrgetter(*_FIELDS)
_FROM_DICT = itemgetter(*_FIELDS)
AUDIT_COLUMNS = tuple(name for name, _ in _SHAPE)
_TYPES = tuple(kind for _, kind in _SHAPE)
_OCCURRED_OF = itemgetter(AUDIT_COLUMNS.index("occurred_ms"))

# Millisecond arithmetic on an interval is exact (no float round trip through to_timestamp).
_DERIVED = {
    "occurred_ms": [
        ("occurred_at", "timestamptz 'epoch' + occurred_ms * interval '1 millisecond'")
    ],
    "claimed_ms": [("claimed_at", "timestamptz 'epoch' + claimed_ms * interval '1 millisecond'")],
    "event_id": [
        ("event_uuid", "audit_event_uuid(event_id)"),
        ("event_text", "CASE WHEN audit_event_uuid(event_id) IS NULL THEN event_id END"),
    ],
    "match_id": [("match_id", "NULLIF(match_id, event_id)")],
}
_STORED = [pair for name in AUDIT_COLUMNS for pair in _DERIVED.get(name, [(name, name)])]

#: Stored operator codes: the four score operators, then the moderation actions whose rank
#: changes reach the audit (a removal, a void; docs/moderation.md). Append only.
OPERATORS = ("best", "set", "incr", "decr", "participant_removed", "match_voided")
_OPERATOR_CODE = {name: i for i, name in enumerate(OPERATORS)}

_STAGE = "audit_entries_stage"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
    + ", ".join(f"{name} {kind}" for name, kind in _SHAPE)
    + ") ON COMMIT DELETE ROWS"
)
_COPY = f"COPY {_STAGE} ({', '.join(AUDIT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_INSERT = (
    f"INSERT INTO audit_entries ({', '.join(col for col, _ in _STORED)}) "
    f"SELECT {', '.join(expr for _, expr in _STORED)} FROM {_STAGE} ON CONFLICT DO NOTHING"
)

#: (table, name column) of the two dictionaries.
_BOARDS = ("audit_boards", "name")
_PERIODS = ("audit_periods", "period")


#: What the writer takes: rank changes from the codec, or as the audit decoder read them.
AuditInput = RankChanged | RankChangedFields


def audit_rows(
    batch: Sequence[AuditInput], boards: Mapping[str, int], periods: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    """The staged rows of ``batch`` in COPY order, given the dictionary ids of its boards and
    periods: one tuple per change, built by one getter call and three look-ups."""
    ops = _OPERATOR_CODE
    rows: list[tuple[Any, ...]] = []
    # tuple + tuple, not (*t, ...): the unpacking builds a list first (half again the time)
    for ev in batch:
        if not ev.changes:
            continue
        board = boards[ev.leaderboard_id]
        if isinstance(ev, RankChanged):
            obj = _FROM_OBJECT
            rows += [obj(c) + (board, periods[c.period], ops[c.operator]) for c in ev.changes]  # noqa: RUF005
        else:
            get = _FROM_DICT
            rows += [
                get(c) + (board, periods[c["period"]], ops[c["operator"]])  # noqa: RUF005
                for c in ev.changes
            ]
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


def _epoch_ms(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AuditWriter:
    """Writes RankChanged batches to ``score_audit`` over one async connection.

    Each ``write`` is one transaction: COPY into a temporary staging table, then
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` so a redelivered batch adds no row. The
    monthly partitions a batch needs (and the month after it) are created first, in a short
    transaction of their own. A broken connection is dropped and reopened on the next call.
    """

    def __init__(self, connect: Connect) -> None:
        """``connect`` opens an autocommit connection (processors/bootstrap.py builds it)."""
        self.connect = connect
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._months: set[tuple[int, int]] = set()
        #: [start, end) in ms of each month in ``_months``
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
            async with conn.transaction():
                async with conn.cursor() as cur:
                    async with cur.copy(_COPY) as copy:
                        copy.set_types(_TYPES)
                        for row in rows:
                            await copy.write_row(row)
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
        occurred = set(map(_OCCURRED_OF, rows))
        lo, hi = min(occurred), max(occurred)
        if any(start <= lo and hi < end for start, end in self._spans):
            return  # the whole batch lies in one month whose partitions exist (the usual case)
        missing = [ym for ym in months_of(occurred) if ym not in self._months]
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
        self._spans = [_month_span(*ym) for ym in sorted(self._months)]

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
