"""The two hottest calls served ahead of the framework and of the middleware stack.

A score submission and a top-N page already rendered (gateway/cache.py) spent most of their
gateway CPU outside their own work: matching the path against every route, solving the typed
dependencies, and passing every message through seven middleware layers (the server's error
handler, FastAPI's body limit and telemetry, request id, metrics, client limit, body limit,
CORS), each wrapping ``send`` once more. This ASGI app sits in front of all of them (app.py)
and, while tracing is off, answers these two shapes itself, doing what those layers would do
for them in one place:

- ``POST /v1/leaderboards/{board}/scores`` (optionally ``?wait=true``) with a JSON body of at
  most the body limit, no ``Authorization`` and no ``Origin`` header: the body is validated by
  the same model and handed to the same submission code as the route (routes/scores.py);
- ``GET /v1/leaderboards/{board}/rankings`` with only ``limit`` / ``offset`` and no ``Origin``
  header, when the page is in the cache at the board's current version.

Answers go out in one write (``_write_whole``). Each answer carries its ``X-Request-ID`` (the
client's, if plain, else a fresh one), is counted and timed under its route like any other,
and a submission takes its token from the same per-address write budget as ``ClientLimit``.
Anything else, and anything that does not parse or validate, goes down the whole stack with
the request untouched, so errors, CORS and every other behaviour keep one home: the
middleware and the routes.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE as _STATUS_LINE
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as _HttpToolsCycle

from processors import telemetry
from processors.gateway.cache import json_response, page_etag
from processors.gateway.deps import GatewayState
from processors.gateway.errors import ApiError, error_response, internal
from processors.gateway.guards import RateLimiter, replayed_receive, retry_after
from processors.gateway.models import ScoreIn
from processors.gateway.routes.scores import submit_once
from processors.gateway.tracing import accept_id, log_access
from processors.logs import request_id
from projections.sharded import layout_of
from streams import rules
from streams.errors import ValidationError

__all__ = ["FastPaths"]

log = logging.getLogger(__name__)

_PREFIX = "/v1/leaderboards/"
_BOARD = re.compile(rules.BOARD_ID_PATTERN)
_WAIT = {b"": False, b"wait=false": False, b"wait=true": True}
_PAGE_QUERY = re.compile(rb"limit=([0-9]{1,4})(?:&offset=([0-9]{1,9}))?")
_SUBMIT_ROUTE = "/v1/leaderboards/{board}/scores"
_PAGE_ROUTE = "/v1/leaderboards/{board}/rankings"
_REQUEST_ID = b"x-request-id"
_VARY = (b"vary", b"Origin")


def _write_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes | memoryview
) -> bool:
    """Write a whole response with one ``transport.write`` when ``send`` is uvicorn's
    httptools cycle (True), else leave it to the two ASGI messages (False).

    uvicorn writes the status line and headers when the response starts and the body in a
    second write: two ``send`` system calls, two TCP segments and often two wake-ups of the
    client per answer, for bodies of a few dozen bytes. The cycle's state moves exactly as its
    own ``send`` would move it for a complete response with a content length; a connection that
    must close, a paused writer, or any other server, takes the ordinary path.
    """
    cycle = getattr(send, "__self__", None)
    if (
        type(cycle) is not _HttpToolsCycle
        or cycle.response_started
        or cycle.disconnected
        or not cycle.keep_alive
        or cycle.flow.write_paused
        or cycle.scope["method"] == "HEAD"
    ):
        return False
    out: list[bytes | memoryview] = [_STATUS_LINE[status]]
    for name, value in (*cycle.default_headers, *headers):
        out += (name, b": ", value, b"\r\n")
    out += (b"\r\n", body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.response_complete = True
    cycle.transport.write(b"".join(out))
    cycle.message_event.set()
    cycle.on_response()
    return True


class FastPaths:
    """ASGI app: submissions and cached pages answered directly (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        state: GatewayState,
        routes: dict[str, Any],
        *,
        client_limit: RateLimiter | None,
        max_body: int,
        access_log: bool = False,
    ) -> None:
        """``app``: the whole middleware stack and the routes; ``routes``: the app's routes by
        path (filled once the routers are included), so that a request served here is
        measured under its route; ``client_limit``: the per-address write budget the
        ``ClientLimit`` middleware also takes from (None: no limit); ``access_log``: one line
        per request served here too, as ``RequestId`` writes."""
        self.app = app
        self.state = state
        self.routes = routes
        self.client_limit = client_limit
        self.max_body = max_body
        self.access_log = access_log
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a hot call, or pass the request on."""
        if scope["type"] == "http" and self.state.services is not None and not telemetry.enabled():
            path: str = scope["path"]
            if path.startswith(_PREFIX):
                board, _, tail = path[len(_PREFIX) :].partition("/")
                if tail == "scores" and scope["method"] == "POST":
                    await self._submit(board, scope, receive, send)
                    return
                if tail == "rankings" and scope["method"] == "GET":
                    if await self._page(board, scope, send):
                        return
        await self.app(scope, receive, send)

    async def _submit(self, board: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a submission; pass it on (with its body) when it is not the plain shape."""
        start = time.perf_counter()
        headers = dict(scope["headers"])
        body, more = b"", True
        while more and len(body) <= self.max_body:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
        wait = _WAIT.get(scope["query_string"])
        parsed: ScoreIn | None = None
        if (
            not more
            and len(body) <= self.max_body
            and wait is not None
            and b"authorization" not in headers
            and b"origin" not in headers
            and headers.get(b"content-type", b"").startswith(b"application/json")
            and _BOARD.fullmatch(board)
        ):
            try:
                parsed = ScoreIn.model_validate(orjson.loads(body))
            except (ValueError, TypeError):
                parsed = None  # the route answers with its own message
        if parsed is None or wait is None:
            await self.app(scope, replayed_receive(body, more, receive), send)
            return
        rid = accept_id(headers.get(_REQUEST_ID))
        request_id.set(rid)
        scope["route"] = self.routes.get(_SUBMIT_ROUTE)
        limiter = self.client_limit
        client = scope.get("client")
        address = client[0] if client else "-"
        response: Response
        if limiter is not None and (retry := limiter.take(address)):
            response = error_response(
                429,
                "too_many_requests",
                f"too many write calls from {address}: at most {limiter.rate:g}/s per client "
                "address",
                headers=retry_after(retry),
            )
        else:
            key = headers.get(b"x-api-key")
            try:
                response = await submit_once(
                    self.state, board, parsed, wait, key.decode("latin-1") if key else None
                )
            except ApiError as exc:
                response = error_response(
                    exc.status_code, exc.code, str(exc.detail), dict(exc.headers or {}) or None
                )
            except ValidationError as exc:
                response = error_response(400, "bad_request", str(exc))
            except Exception as exc:  # the shape the app's own handler gives
                response = await internal(Request(scope), exc)
        await self._answer(response, rid, scope, _SUBMIT_ROUTE, start, send)

    async def _page(self, board: str, scope: Scope, send: Send) -> bool:
        """Answer a cached page (True), or leave the request to the stack (False)."""
        start = time.perf_counter()
        query = _PAGE_QUERY.fullmatch(scope["query_string"])
        if query is None or not _BOARD.fullmatch(board):
            return False
        limit, offset = int(query.group(1)), int(query.group(2) or 0)
        if not 1 <= limit <= 1000:
            return False
        given = None
        for name, value in scope["headers"]:
            if name in (b"if-none-match", b"origin"):
                return False  # the route answers 304 or the page; CORS adds its headers
            if name == _REQUEST_ID:
                given = value
        services = self.state.services
        assert services is not None
        cfg = services.view.get(board)
        if cfg is None or layout_of(cfg) is not None:
            return False
        try:
            period, stamp = await services.stamps.read(cfg)
        except Exception:  # Redis failing: the route answers with the error's own status
            return False
        cached = self.state.pages.get((board, period, limit, offset), stamp)
        if cached is None:
            return False
        rid = accept_id(given)
        request_id.set(rid)
        scope["route"] = self.routes.get(_PAGE_ROUTE)
        response = json_response(cached, headers={"ETag": page_etag(stamp[0], period, stamp[1])})
        await self._answer(response, rid, scope, _PAGE_ROUTE, start, send)
        return True

    async def _answer(
        self, response: Response, rid: str, scope: Scope, route: str, start: float, send: Send
    ) -> None:
        """Send ``response`` with its request id; count and time it as ``MeasureRequests``."""
        status = response.status_code
        # Vary as CORS gives it to a request without Origin (shared caches)
        headers = [*response.raw_headers, _VARY, (_REQUEST_ID, rid.encode())]
        if not _write_whole(send, status, headers, response.body):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
        if self.access_log:
            log_access(scope, status, start)
        method: str = scope["method"]
        metrics = self.state.metrics
        timer = self._timers.get((method, route))
        if timer is None:
            timer = self._timers[(method, route)] = metrics.latency.labels(method, route)
        timer.observe(time.perf_counter() - start)
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = metrics.requests.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        counter.inc()
