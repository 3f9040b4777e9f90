"""A request id per HTTP request (taken from ``X-Request-ID`` or made), echoed and logged.

The id is set in :data:`processors.logs.request_id` for the request's task, so every log line
written while serving it (errors included) carries it; the response echoes it in
``X-Request-ID``. With ``access_log`` each request also gets one access line
(``processors.gateway.access``: method, path, status, duration, client, request id).
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processors.kafka.producer import fresh_uuid
from processors.logs import request_id

__all__ = ["HEADER", "RequestId", "accept_id", "log_access"]

log = logging.getLogger("processors.gateway.access")

HEADER = "X-Request-ID"
_HEADER_RAW = HEADER.lower().encode()
#: A client's id is kept if it is short and plain (it goes into logs and headers).
_PLAIN_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def accept_id(given: bytes | None) -> str:
    """The client's request id if it is plain and at most 128 characters, else a new one."""
    if given is not None and _PLAIN_ID.fullmatch(given):
        return given.decode()
    return fresh_uuid().replace("-", "")


class RequestId:
    """ASGI middleware: request id in, header out, optional access line per request."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request with its id set (HTTP and WebSocket alike)."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers") or ():
            if name == _HEADER_RAW:
                given = value
                break
        rid = accept_id(given)
        # not reset afterwards: the server's error handler (outside this middleware) logs a
        # failure after we return; each request runs in its own task, so nothing leaks
        request_id.set(rid)
        raw_id = rid.encode()
        status = 0
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_HEADER_RAW, raw_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log and scope["type"] == "http":
                log_access(scope, status, start)


def log_access(scope: Scope, status: int, start: float) -> None:
    """The access line of one HTTP request (``start``: its ``time.perf_counter()``)."""
    ms = round((time.perf_counter() - start) * 1000, 2)
    client = (scope.get("client") or ("-",))[0]
    path = scope.get("path", "")
    method = scope.get("method", "")
    log.info(
        "%s %s %d %.2fms %s",
        method,
        path,
        status or 500,
        ms,
        client,
        extra={
            "method": method,
            "path": path,
            "status": status or 500,
            "duration_ms": ms,
            "client": client,
        },
    )
