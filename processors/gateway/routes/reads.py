"""Reads: pages of the standings, one participant with neighbours, closed periods' history."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam

from processors.gateway.cache import PageKey, Rendered, json_response, page_etag, page_stamp
from processors.gateway.deps import ClientDep, StateDep
from processors.gateway.errors import ApiError
from processors.gateway.models import MAX_LISTED, BoardId, ParticipantsIn, PeriodQ
from processors.gateway.responses import (
    ETAG_HEADER,
    HistoryOut,
    ListedOut,
    ParticipantOut,
    PlacementsOut,
    RankingsOut,
)
from processors.gateway.sharded import sharded_listed, sharded_page, sharded_participant
from projections.keys import BoardKeys
from projections.paging import decode_cursor, read_page
from projections.profiles import attach_profiles, profiles_key, profiles_version
from projections.push import current_period, read_many, read_participant, read_top
from projections.sharded import layout_of
from streams import rules
from streams.errors import LeaderboardError

__all__ = ["router"]

router = APIRouter(tags=["rankings"])


async def _profiled(state: StateDep, client: ClientDep, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with each row's participant profile attached (one HMGET for every row; a
    participant read's own profile too)."""
    rows = [body] if "rank" in body and "participant_id" in body else []
    rows += [
        row
        for name in ("entries", "above", "below")
        for row in body.get(name) or ()
        if isinstance(row, dict)
    ]
    await attach_profiles(client, rows, key=profiles_key(state.settings.topic_prefix))
    return body


async def _profiles_version(state: StateDep, client: ClientDep) -> int:
    """The profiles version, read before the rows' profiles (a validator is never newer than
    the body it names)."""
    return await profiles_version(client, key=profiles_key(state.settings.topic_prefix))


async def _unchanged(
    request: Request, state: StateDep, client: ClientDep, board: str, period: str
) -> Response | None:
    """304 when the client's ``If-None-Match`` names the board's current version and profiles
    version (one HGET and one GET, no rows read); else None."""
    version = int(await client.hget(BoardKeys(board).state, "ver") or 0)
    etag = page_etag(version, period, await _profiles_version(state, client))
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag})
    return None


@router.get(
    "/v1/leaderboards/{board}/rankings",
    response_model=None,
    responses={
        200: {
            "model": RankingsOut | ListedOut,
            "description": "a page (ListedOut with participants=); plain boards send an ETag",
            "headers": ETAG_HEADER,
        },
        304: {
            "description": "If-None-Match names the current ETag: nothing shown has changed",
            "headers": ETAG_HEADER,
        },
    },
)
async def rankings(
    board: BoardId,
    request: Request,
    state: StateDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    around: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="centre the page on this participant"),
    ] = None,
    participants: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=16_000,
            description="comma-separated participant ids: only their rows, best first "
            "(ids holding a comma, or long lists: POST …/rankings/participants)",
        ),
    ] = None,
    period: PeriodQ = None,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=2000,
            description="next_cursor of a previous page: the rows right after its last row, "
            "stable while others move (instead of offset)",
        ),
    ] = None,
) -> dict[str, Any] | Response:
    """A page of the standings with the board version they show (or, with ``participants``,
    the rows of those participants: "me and my friends").

    Every page of a plain board carries ``next_cursor`` (null on the last page): pass it as
    ``cursor`` for the rows that follow the last one, even if the board changed meanwhile.

    Sharded boards serve pages inside the cached global top K from the cache (one read,
    with its ``computed_at`` and staleness) and other pages by scatter-gather.
    """
    if participants is not None:
        listed = [p for p in participants.split(",") if p]
        body = _listed_body(listed)
        return await _listed(board, body.participants, period, state, client)
    after = None
    if cursor is not None:
        if offset or around is not None:
            raise ApiError(400, "cursor: give either cursor or offset/around, not both")
        try:
            after = decode_cursor(cursor)
        except LeaderboardError as exc:
            raise ApiError(400, str(exc)) from None
        if period is not None and period != after.period:
            raise ApiError(400, f"cursor: it pages period {after.period!r}, not {period!r}")
        period = after.period
    cfg = await state.board_cfg(board)
    if layout_of(cfg) is not None:
        if after is not None:
            raise ApiError(400, "cursor: sharded boards page by offset only")
        return await _profiled(
            state, client, await sharded_page(client, cfg, period, offset, limit, around)
        )
    p = period or await current_period(client, cfg)
    key: PageKey | None = None
    if after is None and around is None:
        # a plain page: rendered once per board and profiles version (gateway/cache.py)
        stamp = await page_stamp(client, board, profiles_key(state.settings.topic_prefix))
        etag = page_etag(stamp[0], p, stamp[1])
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": etag})
        key = (board, p, limit, offset)
        cached = state.pages.get(key, stamp)
        if cached is not None:
            return json_response(cached, headers={"ETag": etag})
    elif "if-none-match" in request.headers:
        unchanged = await _unchanged(request, state, client, board, p)
        if unchanged is not None:
            return unchanged
    if around is not None:
        me = await read_participant(client, cfg, p, around)
        if not me.entries:
            raise ApiError(404, f"participant {around!r} is not on {board!r} ({p})")
        offset = max(0, me.entries[0]["rank"] - 1 - (limit - 1) // 2)

    async def render() -> Rendered:
        profiles = await _profiles_version(state, client)
        found = await read_page(client, cfg, p, limit, offset=offset, after=after)
        snap = found.snapshot
        page = {
            "leaderboard_id": board,
            "period": p,
            "version": snap.version,
            "count": snap.count,
            "offset": found.offset,
            "entries": snap.entries,
            "next_cursor": found.next_cursor,
        }
        return orjson.dumps(await _profiled(state, client, page)), (snap.version, profiles)

    if key is not None:  # one render for every request that missed this page at this stamp
        rendered, (version, profiles) = await state.pages.render_once(key, stamp, render)
    else:
        rendered, (version, profiles) = await render()
    return json_response(rendered, headers={"ETag": page_etag(version, p, profiles)})


@router.post(
    "/v1/leaderboards/{board}/rankings/participants",
    response_model=None,
    responses={200: {"model": ListedOut}},
)
async def rankings_of(
    board: BoardId,
    body: ParticipantsIn,
    state: StateDep,
    client: ClientDep,
    period: PeriodQ = None,
) -> dict[str, Any]:
    """The rows of the listed participants, best first ("me and my friends"; up to 1,000
    ids); ``missing`` names those not on the board. A read: no key needed."""
    return await _listed(board, body.participants, period, state, client)


def _listed_body(listed: list[str]) -> ParticipantsIn:
    try:
        return ParticipantsIn(participants=listed)
    except ValueError:
        raise ApiError(
            400, f"participants: give 1 to {MAX_LISTED} ids of 1 to 128 characters"
        ) from None


async def _listed(
    board: str, pids: list[str], period: str | None, state: StateDep, client: ClientDep
) -> dict[str, Any]:
    cfg = await state.board_cfg(board)
    unique = list(dict.fromkeys(pids))
    if layout_of(cfg) is not None:
        body = await sharded_listed(client, cfg, period, unique)
    else:
        p = period or await current_period(client, cfg)
        snap = await read_many(client, cfg, p, unique)
        body = {
            "leaderboard_id": board,
            "period": p,
            "version": snap.version,
            "count": snap.count,
            "entries": snap.entries,
        }
    found = {e["participant_id"] for e in body["entries"]}
    return await _profiled(
        state, client, {**body, "missing": [p for p in unique if p not in found]}
    )


@router.get(
    "/v1/leaderboards/{board}/participants/{participant:path}",
    response_model=None,
    responses={200: {"model": ParticipantOut}},
)
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
        return await _profiled(
            state,
            client,
            await sharded_participant(client, cfg, period, participant, neighbours),
        )
    p = period or await current_period(client, cfg)
    me = await read_participant(client, cfg, p, participant)
    if not me.entries:
        raise ApiError(404, f"participant {participant!r} is not on {board!r} ({p})")
    rank = me.entries[0]["rank"]
    start = max(0, rank - 1 - neighbours)
    snap = await read_top(client, cfg, p, start, rank - start + neighbours)
    mine = next((e for e in snap.entries if e["participant_id"] == participant), me.entries[0])
    body = {
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
    return await _profiled(state, client, body)


@router.get(
    "/v1/participants/{participant:path}/placements",
    response_model=None,
    responses={200: {"model": PlacementsOut}},
)
async def placements(
    participant: Annotated[str, PathParam(min_length=1, max_length=128)],
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    """Where a participant finished in every closed period of every board, newest first."""
    if state.placements is None:
        raise ApiError(503, "history is not configured on this gateway")
    return {"participant_id": participant, "placements": await state.placements(participant, limit)}


@router.get(
    "/v1/leaderboards/{board}/history", response_model=None, responses={200: {"model": HistoryOut}}
)
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
