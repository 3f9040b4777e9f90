"""Live push: the WebSocket subscription to a board's top N or to one participant."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from processors.gateway.deps import StateDep
from processors.gateway.errors import ApiError, validation_message
from processors.gateway.feed import RankFeed, Subscriber
from processors.gateway.models import SubscribeIn
from processors.gateway.rawsocket import SERVER_SEND, RawSocket

__all__ = ["GOING_AWAY", "TOO_SLOW", "close_subscribers", "router"]

log = logging.getLogger(__name__)

router = APIRouter()

#: The close code a subscriber gets when the gateway shuts down (RFC 6455 "going away"):
#: reconnect to another instance and resume with since_version.
GOING_AWAY = 1001
#: The close code of a client that stopped reading (a send blocked for 30 s: its buffers
#: are full) or stopped answering pings: reconnect and resume with since_version.
TOO_SLOW = 4408


def _closing(app: Any) -> asyncio.Event:
    """The app's "close every subscription" event (made on first use, per app)."""
    event: asyncio.Event | None = getattr(app.state, "ws_closing", None)
    if event is None:
        event = app.state.ws_closing = asyncio.Event()
    return event


async def close_subscribers(app: Any, timeout_s: float = 2.0) -> int:
    """Close every live subscription of ``app`` with 1001; wait up to ``timeout_s`` for them.

    Called on SIGTERM before the server closes connections itself (uvicorn would send 1012).
    Returns the number of subscriptions still open when the wait ended.
    """
    _closing(app).set()
    state = getattr(app.state, "gateway", None)
    deadline = time.monotonic() + timeout_s
    while True:
        feed = state.feed if state is not None else None
        left = feed.subscriber_count() if feed is not None else 0
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.02)


async def _fail(ws: WebSocket, code: str, message: str, close: int) -> None:
    """Send an error message, then close with ``close`` (the client may be gone already)."""
    with contextlib.suppress(Exception):
        await ws.send_json({"type": "error", "error": {"code": code, "message": message}})
        await ws.close(close)


async def _read_request(ws: WebSocket) -> SubscribeIn | None:
    """The first message as a subscription, or None after answering why it is not one."""
    try:
        first = await asyncio.wait_for(ws.receive_text(), 10)
        req = SubscribeIn.model_validate_json(first)
    except TimeoutError:
        await _fail(ws, "timeout", "send a subscribe message within 10 s", 1008)
        return None
    except WebSocketDisconnect:
        return None
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        msg = validation_message(errors()) if callable(errors) else "invalid subscribe message"
        await _fail(ws, "bad_request", msg, 1008)
        return None
    if req.mode in ("track", "around") and req.participant_id is None:
        await _fail(ws, "bad_request", f"mode {req.mode} needs participant_id", 1008)
        return None
    if req.mode == "around" and req.n > 50:
        await _fail(ws, "bad_request", "mode around takes n ≤ 50 neighbours each side", 1008)
        return None
    return req


@dataclasses.dataclass
class _Liveness:
    """When the client was last heard from and whether it answers pings."""

    last_heard: float = dataclasses.field(default_factory=time.monotonic)
    answers_pings: bool = False


async def _receive(ws: WebSocket, sub: Subscriber, live: _Liveness) -> None:
    """Read the client's messages: any of them shows it is alive, a pong that it answers."""
    while True:
        text = await ws.receive_text()
        live.last_heard = time.monotonic()
        sub.ping_sent = None
        with contextlib.suppress(ValueError):
            if json.loads(text).get("type") == "pong":
                live.answers_pings = True


#: a heartbeat tick this late (s) means the gateway's own loop is behind: no verdict then
_LATE_S = 1.0


async def _heartbeat(sub: Subscriber, live: _Liveness, interval_s: float) -> None:
    """Queue a ping every ``interval_s``; end when a client that answered pings stops.

    Only a ping that was sent counts: one still queued behind deltas, or dropped with them
    when a slow client's queue overflowed, cannot have been answered (closing a viewer for
    that would close it for the gateway's own delay); nor does a tick that ran late.
    """
    while True:
        due = time.monotonic() + interval_s
        await asyncio.sleep(interval_s)
        now = time.monotonic()
        if now - due > _LATE_S:
            # the event loop is behind (a starved or overloaded gateway): the pong may be
            # waiting unread; judge at the next tick, when it runs on time
            continue
        sent = sub.ping_sent
        if live.answers_pings and sent is not None and now - sent > 2 * interval_s:
            log.info("subscriber %s stopped answering pings", sub.describe())
            return
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait({"type": "ping", "version": sub.version})


async def _serve(
    ws: WebSocket,
    feed: RankFeed,
    sub: Subscriber,
    ping_interval_s: float,
    on_close: Callable[[str], None],
) -> None:
    """Push the subscription's messages until the client, the feed or the heartbeat ends it;
    log and count why it ended (``gateway_ws_closed_total{reason}``)."""
    live = _Liveness()

    closing = _closing(ws.app)
    serving = asyncio.create_task(feed.serve(sub, ws.send_text))
    receiving = asyncio.create_task(_receive(ws, sub, live))
    beating = asyncio.create_task(_heartbeat(sub, live, ping_interval_s))
    tasks = [serving, receiving, beating, asyncio.create_task(closing.wait())]
    reason, close = "shutdown", (GOING_AWAY, "gateway shutting down: reconnect and resume")
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if receiving in done and isinstance(receiving.exception(), WebSocketDisconnect):
            sent = sub.socket.close_sent() if sub.socket is not None else None
            # the server's own protocol ping went unanswered: uvicorn closed with 1011
            reason = "keepalive" if sent is not None and sent[0] == 1011 else "client"
        elif serving in done and isinstance(serving.exception(), TimeoutError):
            reason, close = "send_timeout", (TOO_SLOW, "too slow: nothing read for 30 s")
        elif beating in done and beating.exception() is None:
            reason, close = "ping_timeout", (TOO_SLOW, "no pong for 30 s")
        elif not closing.is_set():
            errors = [t.exception() for t in done if t.exception() is not None]
            if errors and not isinstance(errors[0], WebSocketDisconnect):
                reason = "error"
                close = (1011, "internal error")
            else:
                reason = "client" if errors else "feed_stopped"
        if reason in ("client", "keepalive", "shutdown", "feed_stopped"):
            log.debug("subscriber %s ended: %s", sub.describe(), reason)
        elif reason == "error":
            log.warning("subscriber %s ended: %r", sub.describe(), errors[0])
        else:
            log.info("subscriber %s closed with %d: %s", sub.describe(), close[0], close[1])
        on_close(reason)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        feed.unsubscribe(sub)
        if ws.application_state is not WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(*close)


@router.websocket("/v1/leaderboards/{board}/subscribe")
async def subscribe(ws: WebSocket, board: str, state: StateDep) -> None:
    """Live deltas of the top N or of one participant, or the rows around one participant
    (see docs/gateway.md)."""
    await ws.accept()
    feed = state.feed
    if feed is None:
        await _fail(ws, "unavailable", "gateway is starting", 1013)
        return
    try:
        subject = state.keys.ws_player(ws.headers.get("authorization"))
    except ApiError as exc:
        await _fail(ws, exc.code, str(exc.detail), 4401)
        return
    req = await _read_request(ws)
    if req is None:
        return
    if subject is not None and req.mode == "track" and req.participant_id != subject:
        why = f"a player token for {subject!r} may track only {subject!r}"
        await _fail(ws, "forbidden", why, 4403)
        return
    try:
        await state.board_cfg(board)
    except ApiError as exc:
        await _fail(ws, exc.code, str(exc.detail), 4404)
        return
    options = state.options
    sub = Subscriber(
        board,
        req.mode,
        n=req.n,
        participant_id=req.participant_id,
        queue_size=options.subscriber_queue,
        socket=RawSocket.of(ws.scope.get(SERVER_SEND)),
    )
    feed.subscribe(sub, req.since_version)
    await _serve(ws, feed, sub, options.ping_interval_s, state.metrics.on_close)
