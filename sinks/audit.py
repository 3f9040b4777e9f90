"""Audit history writer: every applied score entry as one row, COPY-batched and idempotent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from streams.errors import ServiceUnavailable
from streams.events import RankChanged

__all__ = ["AUDIT_COLUMNS", "AuditWriter", "months_of"]

log = logging.getLogger(__name__)

#: Opens a new autocommit connection to the audit database.
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[tuple[object, ...]]]]

#: Columns written per RankChange, in COPY order, with their PostgreSQL types: the one place the
#: audit row's shape is stated (the staging table, COPY and INSERT are derived from it).
#: ``*_ms`` columns are staged as milliseconds and stored as timestamps (``_AS_TIME``);
#: ``occurred_at`` is the ranking time, ``claimed_at`` the producer's claim when it differs.
_SHAPE = (
    ("leaderboard_id", "text"),
    ("period", "text"),
    ("version", "int8"),
    ("participant_id", "text"),
    ("operator", "text"),
    ("submitted_score", "int8"),
    ("old_score", "int8"),
    ("new_score", "int8"),
    ("old_rank", "int4"),
    ("new_rank", "int4"),
    ("event_id", "text"),
    ("match_id", "text"),
    ("entry_index", "int4"),
    ("source_partition", "int4"),
    ("source_offset", "int8"),
    ("claimed_ms", "int8"),
    ("occurred_ms", "int8"),
)
_AS_TIME = {"claimed_ms": "claimed_at", "occurred_ms": "occurred_at"}
AUDIT_COLUMNS = tuple(name for name, _ in _SHAPE)
_TYPES = tuple(kind for _, kind in _SHAPE)

_STAGE = "score_audit_stage"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
    + ", ".join(f"{name} {kind}" for name, kind in _SHAPE)
    + ") ON COMMIT DELETE ROWS"
)
_COPY = f"COPY {_STAGE} ({', '.join(AUDIT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_STORED = [_AS_TIME.get(name, name) for name in AUDIT_COLUMNS]
# Millisecond arithmetic on an interval is exact (no float round trip through to_timestamp).
_SELECTED = [
    f"timestamptz 'epoch' + {name} * interval '1 millisecond'" if name in _AS_TIME else name
    for name in AUDIT_COLUMNS
]
_INSERT = (
    f"INSERT INTO score_audit ({', '.join(_STORED)}) "
    f"SELECT {', '.join(_SELECTED)} FROM {_STAGE} ON CONFLICT DO NOTHING"
)


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

    async def __aenter__(self) -> AuditWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (a later ``write`` reconnects)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def write(self, batch: Sequence[RankChanged]) -> int:
        """Insert one row per RankChange of ``batch``; return how many rows were new.

        Raises ServiceUnavailable when PostgreSQL cannot be reached or the connection broke;
        nothing of the batch is then committed and the call may simply be repeated.
        """
        rows: list[tuple[Any, ...]] = [
            (
                ev.leaderboard_id,
                c.period,
                c.version,
                c.participant_id,
                c.operator,
                c.submitted_score,
                c.old_score,
                c.new_score,
                c.old_rank,
                c.new_rank,
                c.event_id,
                c.match_id,
                c.entry_index,
                c.source_partition,
                c.source_offset,
                c.claimed_at,
                c.occurred_at,
            )
            for ev in batch
            for c in ev.changes
        ]
        if not rows:
            return 0
        try:
            conn = await self._connection()
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
        missing = [ym for ym in months_of(r[-1] for r in rows) if ym not in self._months]
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
