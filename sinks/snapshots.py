"""Period-end snapshots: a closed period's final standings and its checksum, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg

from streams import rules
from streams.errors import ValidationError
from streams.events import ResetPeriod

__all__ = ["write_period"]

log = logging.getLogger(__name__)

_COPY = (
    "COPY period_standings (leaderboard_id, period, period_start, rank, participant_id, score) "
    "FROM STDIN (FORMAT BINARY)"
)
_TYPES = ("text", "text", "timestamptz", "int4", "text", "int8")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def write_period(
    conn: psycopg.Connection[tuple[object, ...]],
    board: str,
    period: str,
    reset_period: ResetPeriod,
    rows: Iterable[tuple[int, str, int]],
    checksum: str,
    version: int,
) -> bool:
    """Write the final standings ``(rank, participant, score)`` of one period; False if done.

    One transaction: the ``closed_periods`` row is inserted first (ON CONFLICT DO NOTHING),
    so a second or concurrent writer of the same period finds it and writes nothing.
    """
    reset = ResetPeriod(reset_period)
    if reset is ResetPeriod.NONE:
        raise ValidationError(f"board {board!r} never resets: period {period!r} cannot close")
    try:
        start_ms, end_ms = rules.period_bounds(reset, period)
    except ValueError as exc:
        raise ValidationError(
            f"period {period!r} is not a valid {reset.value} period key: {exc}"
        ) from exc
    start, end = _utc(start_ms), _utc(end_ms)
    standings = list(rows)
    with conn.transaction():
        conn.execute("SELECT ensure_standings_partitions(%s, %s)", (start, start))
        inserted = conn.execute(
            "INSERT INTO closed_periods (leaderboard_id, period, period_start, period_end, "
            "participant_count, checksum, version) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            (board, period, start, end, len(standings), checksum, version),
        ).fetchone()
        if inserted is None:
            log.info("period %s of %s was already closed; nothing written", period, board)
            return False
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for rank, participant, score in standings:
                copy.write_row((board, period, start, rank, participant, score))
    log.info("closed period %s of %s: %d participants", period, board, len(standings))
    return True
