"""Reads of sharded boards: pages from the cached global top K or by scatter-gather."""

from __future__ import annotations

from typing import Any

from processors.gateway.errors import ApiError
from processors.gateway.models import now_ms
from projections.sharded import ShardedStore
from projections.store import Entry, RankingStore
from projections.topk import DEFAULT_K, read_topk
from streams import rules
from streams.events import LeaderboardConfigured

__all__ = ["entry_json", "sharded_listed", "sharded_page", "sharded_participant"]


async def _sharded_period(
    store: ShardedStore, cfg: LeaderboardConfigured, period: str | None
) -> str:
    if period:
        return period
    periods = await store.periods(cfg.leaderboard_id)
    if not periods:
        return rules.ALL_TIME if cfg.reset_period.value == "none" else "-"
    return max(periods, key=lambda p: rules.period_bounds(cfg.reset_period, p)[0])


def entry_json(e: Entry) -> dict[str, Any]:
    """The JSON form of one ranked entry."""
    return {"rank": e.rank, "participant_id": e.participant_id, "score": e.score}


async def sharded_page(
    client: Any,
    cfg: LeaderboardConfigured,
    period: str | None,
    offset: int,
    limit: int,
    around: str | None,
) -> dict[str, Any]:
    """A page of a sharded board: from the cached top K when inside it, else scatter-gather."""
    board = cfg.leaderboard_id
    store = ShardedStore(RankingStore(client))
    p = await _sharded_period(store, cfg, period)
    if around is not None:
        me = await store.rank(board, p, cfg.sort_order, around)
        if me is None:
            raise ApiError(404, f"participant {around!r} is not on {board!r} ({p})")
        offset = max(0, me.rank - 1 - (limit - 1) // 2)
    body: dict[str, Any] = {"leaderboard_id": board, "period": p, "offset": offset}
    if offset + limit <= DEFAULT_K:
        cached = await read_topk(store, board, p, limit, offset)
        if cached is not None:
            return {
                **body,
                "version": cached.version,
                "count": await store.count(board, p),
                "computed_at": cached.computed_at,
                "stale_ms": max(0, now_ms() - cached.computed_at),
                "entries": [entry_json(e) for e in cached.entries],
            }
    rows = await store.top(board, p, cfg.sort_order, limit=limit, offset=offset)
    return {
        **body,
        "version": await store.version(board),
        "count": await store.count(board, p),
        "entries": [entry_json(e) for e in rows],
    }


async def sharded_listed(
    client: Any, cfg: LeaderboardConfigured, period: str | None, pids: list[str]
) -> dict[str, Any]:
    """The listed participants' rows of a sharded board, best first (exact global ranks)."""
    board = cfg.leaderboard_id
    store = ShardedStore(RankingStore(client))
    p = await _sharded_period(store, cfg, period)
    found = await store.ranks(board, p, cfg.sort_order, pids)
    rows = sorted((e for e in found if e is not None), key=lambda e: e.rank)
    return {
        "leaderboard_id": board,
        "period": p,
        "version": await store.version(board),
        "count": await store.count(board, p),
        "entries": [entry_json(e) for e in rows],
    }


async def sharded_participant(
    client: Any, cfg: LeaderboardConfigured, period: str | None, pid: str, k: int
) -> dict[str, Any]:
    """A participant of a sharded board with neighbours (exact ranks across shards)."""
    board = cfg.leaderboard_id
    store = ShardedStore(RankingStore(client))
    p = await _sharded_period(store, cfg, period)
    rows = await store.around(board, p, cfg.sort_order, pid, k)
    mine = next((e for e in rows if e.participant_id == pid), None)
    if mine is None:
        raise ApiError(404, f"participant {pid!r} is not on {board!r} ({p})")
    count = await store.count(board, p)
    return {
        "leaderboard_id": board,
        "period": p,
        "version": await store.version(board),
        "count": count,
        "participant_id": pid,
        "rank": mine.rank,
        "percentile": rules.percentile(mine.rank, count),
        "score": mine.score,
        "above": [entry_json(e) for e in rows if e.rank < mine.rank],
        "below": [entry_json(e) for e in rows if e.rank > mine.rank],
    }
