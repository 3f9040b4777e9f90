"""Errors answered as ``{"error": {"code", "message"}}`` and the exception handlers that do it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from processors.logs import request_id
from streams.errors import ValidationError

__all__ = ["CODES", "ApiError", "error_response", "install_error_handlers", "validation_message"]

log = logging.getLogger(__name__)

#: The ``error.code`` of each HTTP status the gateway answers with.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "refused",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
    504: "timeout",
}


class ApiError(StarletteHTTPException):
    """An HTTP error answered as ``{"error": {"code", "message"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.code = code or CODES.get(status, "error")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body ``{"error": {"code", "message"}}`` with its status."""
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def validation_message(errors: Sequence[Any]) -> str:
    """One line from pydantic's errors: ``field: message; field: message``."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'input'}: {msg}")
    return "; ".join(parts) or "invalid request"


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Any HTTP error (ours or Starlette's 404/405) in the gateway's error shape."""
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Request validation errors as 400 ``bad_request``."""
    return error_response(400, "bad_request", validation_message(exc.errors()))


async def domain_invalid(request: Request, exc: ValidationError) -> JSONResponse:
    """The domain's validation errors as 400 ``bad_request``."""
    return error_response(400, "bad_request", str(exc))


async def internal(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: logged with the request id, answered as 500 ``internal`` without details."""
    log.exception("%s %s failed", request.method, request.url.path)
    rid = request_id.get()
    return error_response(
        500,
        "internal",
        "internal error (logged by the gateway" + (f", request id {rid})" if rid else ")"),
        # this handler answers outside the request-id middleware: echo the id here
        headers={"X-Request-ID": rid} if rid else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the gateway's exception handlers on ``app``."""
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(bad_request)
    app.exception_handler(ValidationError)(domain_invalid)
    app.exception_handler(Exception)(internal)
