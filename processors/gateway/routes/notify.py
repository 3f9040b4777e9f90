"""Personal notifications over WebSocket: a participant hears when it is overtaken, enters or
leaves a board's watched top N (the ``notifications`` topic, fanned out by the rank feed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket
from fastapi import Path as PathParam
from starlette.websockets import WebSocketDisconnect, WebSocketState

from processors.gateway.deps import GatewayState, StateDep
from processors.gateway.errors import ApiError
from processors.gateway.feed import Listener, now_iso
from processors.gateway.routes.live import GOING_AWAY, _closing, _fail
from streams import rules

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()

#: Most boards one notification subscription may name in ``leaderboards``.
MAX_BOARDS = 100


def _allowed(ws: WebSocket, state: GatewayState, participant: str) -> str | None:
    """Why this handshake may not hear ``participant``'s notifications, or None.

    An ``X-API-Key`` (write or admin) hears anyone's; a player token only its subject's;
    without either, only a gateway started open without keys answers.
    """
    key = ws.headers.get("x-api-key")
    if key:
        state.keys.write(key)
        return None
    subject = state.keys.ws_player(ws.headers.get("authorization"))
    if subject is None:
        if not state.keys.write_keys and state.keys.open:
            return None
        raise ApiError(
            401, "notifications need an X-API-Key header or an Authorization: Bearer player token"
        )
    if subject != participant:
        return f"a player token for {subject!r} may hear only the notifications of {subject!r}"
    return None


@router.websocket("/v1/participants/{participant:path}/notifications")
async def notifications(
    ws: WebSocket,
    participant: Annotated[str, PathParam(min_length=1, max_length=128)],
    state: StateDep,
    leaderboards: Annotated[
        str | None,
        Query(max_length=8000, description="comma-separated board ids (default: every board)"),
    ] = None,
) -> None:
    """The participant's notifications (``overtaken``, ``entered_top_n``, ``left_top_n``) from
    every board, or from the listed ones, as they are published (see docs/gateway.md)."""
    await ws.accept()
    feed = state.feed
    if feed is None:
        await _fail(ws, "unavailable", "gateway is starting", 1013)
        return
    try:
        refused = _allowed(ws, state, participant)
    except ApiError as exc:
        await _fail(ws, exc.code, str(exc.detail), 4401 if exc.status_code == 401 else 4403)
        return
    if refused is not None:
        await _fail(ws, "forbidden", refused, 4403)
        return
    boards = frozenset(b for b in (leaderboards or "").split(",") if b)
    bad = next((b for b in boards if not re.fullmatch(rules.BOARD_ID_PATTERN, b)), None)
    if bad is not None or len(boards) > MAX_BOARDS:
        why = (
            f"leaderboards: {bad!r} is not a board id"
            if bad is not None
            else f"leaderboards: at most {MAX_BOARDS} boards"
        )
        await _fail(ws, "bad_request", why, 1008)
        return
    listener = Listener(participant, boards, queue_size=state.options.subscriber_queue)
    feed.listen(listener)
    try:
        await _send(
            ws,
            {
                "type": "subscribed",
                "participant_id": participant,
                "leaderboards": sorted(boards),
                "at": now_iso(),
            },
        )
        await _serve(ws, state, listener)
    finally:
        feed.unlisten(listener)


async def _send(ws: WebSocket, msg: dict[str, Any]) -> None:
    await ws.send_text(json.dumps(msg, separators=(",", ":")))


async def _serve(ws: WebSocket, state: GatewayState, listener: Listener) -> None:
    """Send the listener's queue, and a ping every interval, until either side ends."""
    interval = state.options.ping_interval_s

    async def push() -> None:
        while True:
            try:
                msg = await asyncio.wait_for(listener.queue.get(), interval)
            except TimeoutError:
                msg = {"type": "ping", "at": now_iso()}
            await asyncio.wait_for(_send(ws, msg), 10)

    async def receive() -> None:
        while True:
            await ws.receive_text()  # pongs and anything else: the client is alive

    closing = _closing(ws.app)
    tasks = [
        asyncio.create_task(push()),
        asyncio.create_task(receive()),
        asyncio.create_task(closing.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            err = task.exception()
            if err is not None and not isinstance(err, WebSocketDisconnect | TimeoutError):
                log.warning("listener %s ended: %r", listener.describe(), err)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if ws.application_state is not WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                if closing.is_set():
                    await ws.close(GOING_AWAY, "gateway shutting down: reconnect")
                else:
                    await ws.close()
