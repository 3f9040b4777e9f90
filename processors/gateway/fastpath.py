"""The two hottest calls served without FastAPI's routing and dependency machinery.

A score submission and a top-N page already rendered (gateway/cache.py) spend most of their
gateway CPU in the framework: matching the path against every route, solving the typed
dependencies, validating the parameters one by one. This ASGI middleware, just inside the
gateway's own (request id, metrics, limits, CORS), answers these two shapes itself:

- ``POST /v1/leaderboards/{board}/scores`` (optionally ``?wait=true``) with a JSON body and
  no ``Authorization`` header: the body is validated by the same model and handed to the same
  submission code as the route (routes/scores.py);
- ``GET /v1/leaderboards/{board}/rankings`` with only ``limit`` / ``offset`` when the page is
  in the cache at the board's current version.

Anything else, and anything that does not parse or validate, goes to the FastAPI app with the
request untouched, so errors and every other behaviour keep one home: the routes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processors import telemetry
from processors.gateway.cache import json_response, page_etag, page_stamp
from processors.gateway.deps import GatewayState
from processors.gateway.errors import ApiError, error_response, internal
from processors.gateway.models import ScoreIn
from processors.gateway.routes.scores import submit_once
from projections.profiles import profiles_key
from projections.push import current_period
from projections.sharded import layout_of
from streams import rules
from streams.errors import ValidationError

__all__ = ["FastPaths"]

log = logging.getLogger(__name__)

_PREFIX = "/v1/leaderboards/"
_BOARD = re.compile(rules.BOARD_ID_PATTERN)
_WAIT = {b"": False, b"wait=false": False, b"wait=true": True}
_PAGE_QUERY = re.compile(rb"limit=([0-9]{1,4})(?:&offset=([0-9]{1,9}))?")


class FastPaths:
    """ASGI middleware: submissions and cached pages answered directly (see the module)."""

    def __init__(self, app: ASGIApp, state: GatewayState, routes: dict[str, Any]) -> None:
        """``routes``: the app's routes by path (filled once the routers are included), so
        that a request served here is measured under its route like any other."""
        self.app = app
        self.state = state
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a hot call, or pass the request on."""
        if scope["type"] == "http" and self.state.services is not None:
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
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
        wait = _WAIT.get(scope["query_string"])
        headers = dict(scope["headers"])
        parsed: ScoreIn | None = None
        if (
            wait is not None
            and not telemetry.enabled()
            and b"authorization" not in headers
            and headers.get(b"content-type", b"").startswith(b"application/json")
            and _BOARD.fullmatch(board)
        ):
            try:
                parsed = ScoreIn.model_validate(orjson.loads(body))
            except (ValueError, TypeError):
                parsed = None  # the route answers with its own message
        if parsed is None or wait is None:
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        scope["route"] = self.routes.get("/v1/leaderboards/{board}/scores")
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
        await response(scope, _no_body, send)

    async def _page(self, board: str, scope: Scope, send: Send) -> bool:
        """Answer a cached page (True), or leave the request to the route (False)."""
        query = _PAGE_QUERY.fullmatch(scope["query_string"])
        if query is None or not _BOARD.fullmatch(board):
            return False
        limit, offset = int(query.group(1)), int(query.group(2) or 0)
        if not 1 <= limit <= 1000:
            return False
        for name, _ in scope["headers"]:
            if name == b"if-none-match":
                return False  # the route answers 304 or the page
        services = self.state.services
        assert services is not None
        cfg = services.view.get(board)
        if cfg is None or layout_of(cfg) is not None:
            return False
        period = await current_period(services.redis, cfg)
        stamp = await page_stamp(
            services.redis, board, profiles_key(self.state.settings.topic_prefix)
        )
        cached = self.state.pages.get((board, period, limit, offset), stamp)
        if cached is None:
            return False
        scope["route"] = self.routes.get("/v1/leaderboards/{board}/rankings")
        await json_response(cached, headers={"ETag": page_etag(stamp[0], period, stamp[1])})(
            scope, _no_body, send
        )
        return True


async def _no_body() -> Message:
    """The receive channel of a request whose body was read already."""
    return {"type": "http.disconnect"}
