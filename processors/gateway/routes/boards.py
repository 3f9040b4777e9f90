"""Boards: list, create (admin), read one, close/reopen or resize its watched top N (admin)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import APIRouter

from processors.gateway.deps import ClientDep, ProducerDep, StateDep, ViewDep
from processors.gateway.errors import ApiError
from processors.gateway.guards import ApiKey
from processors.gateway.models import BoardId, BoardPatchIn, board_json, now_ms
from processors.gateway.responses import BoardOut, BoardsOut, BoardStateOut
from processors.kafka.configview import ConfigView
from processors.kafka.producer import LeaderboardProducer
from projections.push import current_period, read_top
from streams import rules
from streams.errors import LeaderboardError
from streams.events import BoardStatus, LeaderboardConfigured
from streams.validation import BoardConfigIn

__all__ = ["publish_config", "router"]

router = APIRouter(tags=["boards"])


async def publish_config(
    producer: LeaderboardProducer, view: ConfigView, cfg: LeaderboardConfigured
) -> None:
    """Publish a board configuration (503 if Kafka does not take it), then catch the view up."""
    producer.configure(cfg)
    try:
        await asyncio.get_running_loop().run_in_executor(None, producer.flush, 10.0)
    except LeaderboardError as exc:
        raise ApiError(503, f"could not publish the configuration: {exc}") from None
    await view.sync(5)


@router.get("/v1/leaderboards", response_model=None, responses={200: {"model": BoardsOut}})
async def list_boards(view: ViewDep) -> dict[str, Any]:
    """Every known leaderboard and its configuration."""
    boards = sorted(view.snapshot().values(), key=lambda c: c.leaderboard_id)
    return {"leaderboards": [board_json(c) for c in boards]}


@router.post(
    "/v1/leaderboards",
    status_code=201,
    response_model=None,
    responses={201: {"model": BoardOut, "description": "created"}},
)
async def create_board(
    body: BoardConfigIn,
    state: StateDep,
    view: ViewDep,
    producer: ProducerDep,
    key: ApiKey = None,
) -> dict[str, Any]:
    """Create a leaderboard (admin)."""
    state.keys.admin(key)
    await view.sync(2)
    if view.get(body.leaderboard_id) is not None:
        raise ApiError(409, f"leaderboard {body.leaderboard_id!r} exists already")
    cfg = body.to_event(now_ms())
    await publish_config(producer, view, cfg)
    return board_json(cfg)


@router.get(
    "/v1/leaderboards/{board}", response_model=None, responses={200: {"model": BoardStateOut}}
)
async def get_board(board: BoardId, state: StateDep, client: ClientDep) -> dict[str, Any]:
    """One leaderboard's configuration and version."""
    cfg = await state.board_cfg(board)
    period = await current_period(client, cfg)
    snap = await read_top(client, cfg, period, 0, 0)
    return {**board_json(cfg), "version": snap.version, "period": period, "count": snap.count}


@router.patch("/v1/leaderboards/{board}", response_model=None, responses={200: {"model": BoardOut}})
async def patch_board(
    board: BoardId,
    body: BoardPatchIn,
    state: StateDep,
    view: ViewDep,
    producer: ProducerDep,
    key: ApiKey = None,
) -> dict[str, Any]:
    """Close a leaderboard or change its watched top-N size (admin).

    A close takes effect ``rules.CLOSE_DELAY_MS`` after the call and is final: the board's
    open periods end then, their final standings are written (history) and a closed board is
    not reopened (create a new board instead).
    """
    state.keys.admin(key)
    cfg = await state.board_cfg(board)
    if body.status is None and body.watch_top_n is None:
        raise ApiError(400, "nothing to change: give status and/or watch_top_n")
    now = now_ms()
    changes: dict[str, Any] = {"configured_at": now}
    if body.watch_top_n is not None:
        changes["watch_top_n"] = body.watch_top_n
    if body.status is BoardStatus.CLOSED and cfg.status is not BoardStatus.CLOSED:
        changes |= {"status": BoardStatus.CLOSED, "closed_at": now + rules.CLOSE_DELAY_MS}
    elif body.status is BoardStatus.ACTIVE and cfg.status is BoardStatus.CLOSED:
        raise ApiError(
            409,
            f"leaderboard {board!r} is closed for good (its final standings are written): "
            "create a new board instead",
        )
    new = dataclasses.replace(cfg, **changes)
    await publish_config(producer, view, new)
    return board_json(new)
