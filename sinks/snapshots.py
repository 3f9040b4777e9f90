"""Period-end snapshots: a closed period's final standings and its checksum, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg

from streams import rules
from streams.errors import ValidationError
from streams.events import LeaderboardConfigured

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
    config: LeaderboardConfigured,
    period: str,
    rows: Iterable[tuple[int, str, int]],
    checksum: str,
    version: int,
) -> bool:
    """Write the final standings ``(rank, participant, score)`` of one period; False if done.

    The period's span is its calendar period cut to the board's tournament window (a window
    that ends closes an all-time board's period too; with no start it is dated from
    ``rules.MIN_EVENT_MS``). One transaction: the ``closed_periods`` row is inserted first
    (ON CONFLICT DO NOTHING), so a second or concurrent writer of the same period finds it
    and writes nothing.
    """
    board = config.leaderboard_id
    try:
        start_ms, end_ms = rules.period_span(config, period)
    except ValueError as exc:
        raise ValidationError(
            f"period {period!r} is not a valid {config.reset_period.value} period key: {exc}"
        ) from exc
    if end_ms == rules.NEVER:
        raise ValidationError(f"board {board!r} never ends a period: {period!r} cannot close")
    if start_ms == rules.NEVER:
        start_ms = rules.MIN_EVENT_MS
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
