"""History queries: final standings of closed periods and a participant's past placements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

__all__ = [
    "ClosedPeriod",
    "Placement",
    "StandingRow",
    "closed_period",
    "closed_periods",
    "period_standings",
    "placements",
]


@dataclass(frozen=True, slots=True)
class StandingRow:
    """One line of a period's final standings."""

    rank: int
    participant_id: str
    score: int


@dataclass(frozen=True, slots=True)
class ClosedPeriod:
    """A period whose final standings were written."""

    leaderboard_id: str
    period: str
    period_start: datetime
    period_end: datetime
    participant_count: int
    checksum: str
    version: int
    closed_at: datetime


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a participant finished in one closed period of one board."""

    leaderboard_id: str
    period: str
    rank: int
    score: int
    participant_count: int
    period_start: datetime
    closed_at: datetime


_CLOSED = """
SELECT leaderboard_id, period, period_start, period_end, participant_count, checksum,
       version, closed_at
FROM closed_periods
"""


def closed_period(conn: psycopg.Connection[Any], board: str, period: str) -> ClosedPeriod | None:
    """The closed-period record of (board, period), or None if it is not closed."""
    row = conn.execute(
        _CLOSED + " WHERE leaderboard_id = %s AND period = %s", (board, period)
    ).fetchone()
    return None if row is None else ClosedPeriod(*row)


def closed_periods(conn: psycopg.Connection[Any], board: str) -> list[ClosedPeriod]:
    """Every closed period of ``board``, newest first."""
    rows = conn.execute(
        _CLOSED + " WHERE leaderboard_id = %s ORDER BY period_start DESC", (board,)
    ).fetchall()
    return [ClosedPeriod(*r) for r in rows]


def period_standings(
    conn: psycopg.Connection[Any], board: str, period: str, limit: int = 100, offset: int = 0
) -> list[StandingRow]:
    """Rows ``offset+1 .. offset+limit`` of a closed period's final standings, best first."""
    closed = closed_period(conn, board, period)
    if closed is None:
        return []
    # Filtering on period_start prunes the scan to the one monthly partition.
    rows = conn.execute(
        "SELECT rank, participant_id, score FROM period_standings "
        "WHERE leaderboard_id = %s AND period = %s AND period_start = %s "
        "ORDER BY rank LIMIT %s OFFSET %s",
        (board, period, closed.period_start, max(0, limit), max(0, offset)),
    ).fetchall()
    return [StandingRow(*r) for r in rows]


def placements(conn: psycopg.Connection[Any], participant: str, limit: int = 20) -> list[Placement]:
    """The participant's final placements across boards and closed periods, newest first."""
    rows = conn.execute(
        "SELECT s.leaderboard_id, s.period, s.rank, s.score, c.participant_count, "
        "s.period_start, c.closed_at "
        "FROM period_standings s JOIN closed_periods c "
        "ON c.leaderboard_id = s.leaderboard_id AND c.period = s.period "
        "WHERE s.participant_id = %s "
        "ORDER BY s.period_start DESC, s.leaderboard_id, s.period LIMIT %s",
        (participant, max(0, limit)),
    ).fetchall()
    return [Placement(*r) for r in rows]
