"""Leaderboard registry: the latest configuration of every board, from the config topic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from streams.events import BoardStatus, LeaderboardConfigured, Operator, ResetPeriod, SortOrder

__all__ = ["get_board", "list_boards", "upsert_board"]

log = logging.getLogger(__name__)

# Older configurations (by configured_at) never overwrite newer ones: replaying the compacted
# config topic, or a redelivered record, leaves the registry as it is.
_UPSERT = """
INSERT INTO leaderboards (id, sort_order, operator, reset_period, starts_at, ends_at,
                          watch_top_n, metadata, status, closed_at, configured_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    sort_order = EXCLUDED.sort_order, operator = EXCLUDED.operator,
    reset_period = EXCLUDED.reset_period, starts_at = EXCLUDED.starts_at,
    ends_at = EXCLUDED.ends_at, watch_top_n = EXCLUDED.watch_top_n,
    metadata = EXCLUDED.metadata, status = EXCLUDED.status, closed_at = EXCLUDED.closed_at,
    configured_at = EXCLUDED.configured_at, updated_at = now()
WHERE leaderboards.configured_at <= EXCLUDED.configured_at
RETURNING 1
"""

_MS = "(extract(epoch FROM {0}) * 1000)::bigint"
_SELECT = f"""
SELECT id, sort_order, operator, reset_period, {_MS.format("configured_at")},
       {_MS.format("starts_at")}, {_MS.format("ends_at")}, watch_top_n, metadata, status,
       {_MS.format("closed_at")}
FROM leaderboards
"""


def _utc(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def upsert_board(conn: psycopg.Connection[Any], cfg: LeaderboardConfigured) -> bool:
    """Insert or update one board; False if a newer configuration is already stored."""
    with conn.transaction():
        row = conn.execute(
            _UPSERT,
            (
                cfg.leaderboard_id,
                str(cfg.sort_order),
                str(cfg.operator),
                str(cfg.reset_period),
                _utc(cfg.starts_at),
                _utc(cfg.ends_at),
                cfg.watch_top_n,
                Jsonb(dict(cfg.metadata)),
                str(cfg.status),
                _utc(cfg.closed_at),
                _utc(cfg.configured_at),
            ),
        ).fetchone()
    changed = row is not None
    log.debug("registry: %s %s", cfg.leaderboard_id, "stored" if changed else "older, ignored")
    return changed


def _config(row: tuple[Any, ...]) -> LeaderboardConfigured:
    return LeaderboardConfigured(
        leaderboard_id=row[0],
        sort_order=SortOrder(row[1]),
        operator=Operator(row[2]),
        reset_period=ResetPeriod(row[3]),
        configured_at=int(row[4]),
        starts_at=row[5],
        ends_at=row[6],
        watch_top_n=int(row[7]),
        metadata={str(k): str(v) for k, v in (row[8] or {}).items()},
        status=BoardStatus(row[9]),
        closed_at=row[10],
    )


def list_boards(conn: psycopg.Connection[Any]) -> list[LeaderboardConfigured]:
    """Every registered board's latest configuration, ordered by id."""
    return [_config(r) for r in conn.execute(_SELECT + " ORDER BY id").fetchall()]


def get_board(conn: psycopg.Connection[Any], board: str) -> LeaderboardConfigured | None:
    """One board's configuration, or None if it is not registered."""
    row = conn.execute(_SELECT + " WHERE id = %s", (board,)).fetchone()
    return None if row is None else _config(row)
