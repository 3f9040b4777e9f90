"""Reads: pages of the standings, one participant with neighbours, closed periods' history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from processors.gateway.deps import ClientDep, StateDep
from processors.gateway.errors import ApiError
from processors.gateway.models import BoardId, PeriodQ
from processors.gateway.sharded import sharded_page, sharded_participant
from projections.push import current_period, read_participant, read_top
from projections.sharded import layout_of
from streams import rules

__all__ = ["router"]

router = APIRouter(tags=["rankings"])


@router.get("/v1/leaderboards/{board}/rankings")
async def rankings(
    board: BoardId,
    state: StateDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    around: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="centre the page on this participant"),
    ] = None,
    period: PeriodQ = None,
) -> dict[str, Any]:
    """A page of the standings with the board version they show.

    Sharded boards serve pages inside the cached global top K from the cache (one read,
    with its ``computed_at`` and staleness) and other pages by scatter-gather.
    """
    cfg = await state.board_cfg(board)
    if layout_of(cfg) is not None:
        return await sharded_page(client, cfg, period, offset, limit, around)
    p = period or await current_period(client, cfg)
    if around is not None:
        me = await read_participant(client, cfg, p, around)
        if not me.entries:
            raise ApiError(404, f"participant {around!r} is not on {board!r} ({p})")
        offset = max(0, me.entries[0]["rank"] - 1 - (limit - 1) // 2)
    snap = await read_top(client, cfg, p, offset, limit)
    return {
        "leaderboard_id": board,
        "period": p,
        "version": snap.version,
        "count": snap.count,
        "offset": offset,
        "entries": snap.entries,
    }


@router.get("/v1/leaderboards/{board}/participants/{participant:path}")
async def participant(
    board: BoardId,
    participant: Annotated[str, PathParam(min_length=1, max_length=128)],
    state: StateDep,
    client: ClientDep,
    neighbours: Annotated[int, Query(ge=0, le=50)] = 2,
    period: PeriodQ = None,
) -> dict[str, Any]:
    """One participant's rank and score with neighbours above and below."""
    cfg = await state.board_cfg(board)
    if layout_of(cfg) is not None:
        return await sharded_participant(client, cfg, period, participant, neighbours)
    p = period or await current_period(client, cfg)
    me = await read_participant(client, cfg, p, participant)
    if not me.entries:
        raise ApiError(404, f"participant {participant!r} is not on {board!r} ({p})")
    rank = me.entries[0]["rank"]
    start = max(0, rank - 1 - neighbours)
    snap = await read_top(client, cfg, p, start, rank - start + neighbours)
    mine = next((e for e in snap.entries if e["participant_id"] == participant), me.entries[0])
    return {
        "leaderboard_id": board,
        "period": p,
        "version": snap.version,
        "count": snap.count,
        "participant_id": participant,
        "rank": mine["rank"],
        "percentile": rules.percentile(mine["rank"], snap.count),
        "score": mine["score"],
        "above": [e for e in snap.entries if e["rank"] < mine["rank"]],
        "below": [e for e in snap.entries if e["rank"] > mine["rank"]],
    }


@router.get("/v1/leaderboards/{board}/history")
async def board_history(
    board: BoardId,
    state: StateDep,
    period: PeriodQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> dict[str, Any]:
    """Final standings of a closed period (default: the latest closed one)."""
    await state.board_cfg(board)
    if state.history is None:
        raise ApiError(503, "history is not configured on this gateway")
    found = await state.history(board, period, limit, offset)
    if found is None:
        what = f"period {period!r}" if period else "any period"
        raise ApiError(404, f"{what} of {board!r} is not closed (no final standings)")
    return {"leaderboard_id": board, **found}
