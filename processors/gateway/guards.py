"""Guards: API keys (write and admin roles, a budget per key), player tokens, rate limits, the
body size limit."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processors.gateway.errors import ApiError, error_response
from processors.gateway.tokens import TokenRefused, TokenVerifier
from streams.settings import Settings

__all__ = [
    "ApiKey",
    "BearerToken",
    "BodyLimit",
    "ClientLimit",
    "KeyGuard",
    "RateLimiter",
    "bearer_challenge",
    "key_ok",
    "parse_keys",
    "retry_after",
]


class RateLimiter:
    """Token bucket per key (in memory, bounded: least recently used keys are forgotten)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if allowed (one token taken), else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> dict[str, str]:
    """The ``Retry-After`` header (whole seconds, at least 1) for a rate limiter's wait."""
    return {"Retry-After": str(max(1, round(wait + 0.5)))}


def parse_keys(text: str) -> list[bytes]:
    """The keys of a comma-separated setting, blanks dropped."""
    return [k.strip().encode() for k in text.split(",") if k.strip()]


def key_ok(given: str, keys: Sequence[bytes]) -> bool:
    """Constant-time membership: every key is compared, whatever matches first."""
    raw = given.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(raw, key)
    return ok


class KeyGuard:
    """Checks ``X-API-Key`` for write and admin calls and keeps a request budget per key.

    Writes take a key from ``settings.api_keys`` (or ``admin_keys``), admin calls one from
    ``settings.admin_keys`` (or ``api_keys`` if that is empty). No key configured: writes and
    admin calls are refused, unless the gateway was started open (``--open``).
    """

    def __init__(self, settings: Settings, rate: float, burst: int) -> None:
        self.write_keys = parse_keys(settings.api_keys) + parse_keys(settings.admin_keys)
        self.admin_keys = parse_keys(settings.admin_keys) or parse_keys(settings.api_keys)
        self.open = settings.gateway_open
        self.rate = rate
        self.limiter = RateLimiter(rate, burst)
        self.tokens = TokenVerifier.from_settings(settings)

    def writer(self, key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
        """Allow a write: None for a service key (any participant), else the token's subject.

        An ``X-API-Key`` wins over a token; a token is verified once here, and only when the
        gateway has player-token keys (``LEADERBOARD_JWT_*``).
        """
        if key or self.tokens is None:
            self.write(key)
            return None
        if bearer is None:
            if not self.write_keys and self.open:
                return None
            raise ApiError(
                401,
                "write calls need an X-API-Key header or an Authorization: Bearer player token",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        return self.player(bearer.credentials)

    def player(self, token: str) -> str:
        """The subject of a player token, or 401 with the reason (and a Bearer challenge)."""
        if self.tokens is None:
            raise ApiError(401, "this gateway accepts no player tokens")
        try:
            return self.tokens.verify(token)
        except TokenRefused as exc:
            why = str(exc)
            raise ApiError(401, why, headers=bearer_challenge("invalid_token", why)) from None

    def ws_player(self, authorization: str | None) -> str | None:
        """The subject of a WebSocket handshake's ``Authorization: Bearer`` token, if any."""
        if self.tokens is None or not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.player(token.strip())

    def write(self, given: str | None) -> None:
        """Allow a write call (score submission) or raise 401/403/429."""
        self.check(given, self.write_keys, "write")

    def admin(self, given: str | None) -> None:
        """Allow an admin call (board configuration) or raise 401/403/429."""
        self.check(given, self.admin_keys, "admin")

    def check(self, given: str | None, keys: Sequence[bytes], role: str) -> None:
        """Allow a ``role`` call with key ``given`` if it is one of ``keys`` and within budget."""
        if not keys:
            if self.open:
                return  # no keys, started with --open: anyone may write (a laptop, a demo)
            raise ApiError(
                403,
                f"{role} calls are refused: this gateway has no API keys (set "
                "LEADERBOARD_API_KEYS / LEADERBOARD_ADMIN_KEYS, or start it with --open)",
            )
        if not given:
            raise ApiError(401, f"{role} calls need an X-API-Key header")
        if not key_ok(given, keys):
            raise ApiError(403, f"this API key may not make {role} calls")
        # per-key budget, keyed by a digest so the secret itself is never kept or logged
        retry = self.limiter.take(hashlib.sha256(given.encode()).hexdigest())
        if retry:
            raise ApiError(
                429,
                f"too many {role} calls for this API key: at most {self.rate:g}/s",
                headers=retry_after(retry),
            )


#: The challenge of a 401 for a missing token (RFC 6750 §3).
_CHALLENGE = 'Bearer realm="leaderboard"'


def bearer_challenge(error: str, description: str) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a refused token (RFC 6750 §3: no quotes inside)."""
    text = description.replace('"', "'").replace("\\", "/")
    return {"WWW-Authenticate": f'{_CHALLENGE}, error="{error}", error_description="{text}"'}


_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="write or admin key")
#: The ``X-API-Key`` header of write and admin calls (checked by the route, after validation).
ApiKey = Annotated[str | None, Security(_API_KEY)]


_BEARER = HTTPBearer(auto_error=False, description="player token (JWT): its own scores only")
#: A player token (``Authorization: Bearer``), verified by :meth:`KeyGuard.writer`.
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]


#: Methods that read: never limited per client (reads are cheap, and viewers share addresses).
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class ClientLimit:
    """Write calls per client address: a token bucket each; over it, 429 with ``Retry-After``.

    Beside the per-participant and per-key limits, it stops one address that floods the gateway
    with writes (any key, any participant) before the body is read or validated. The address is
    the connection's (or the one the server trusts from ``X-Forwarded-For``: uvicorn's
    ``--forwarded-allow-ips``). Cost on the write path: one dictionary move and a clock read.
    """

    def __init__(
        self, app: ASGIApp, rate: float, burst: int, limiter: RateLimiter | None = None
    ) -> None:
        """``limiter``: the budgets to take from, when shared (the gateway's fast path takes
        from the same); a new one of ``rate`` and ``burst`` else."""
        self.app = app
        self.rate = rate
        self.limiter = limiter or RateLimiter(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a write over its address's budget; pass everything else through."""
        if scope["type"] == "http" and scope["method"] not in _READS:
            client = scope.get("client")
            address = client[0] if client else "-"
            wait = self.limiter.take(address)
            if wait:
                response = error_response(
                    429,
                    "too_many_requests",
                    f"too many write calls from {address}: at most {self.rate:g}/s per client "
                    "address",
                    headers=retry_after(wait),
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the (bounded) body, then hand it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.limit
        body = b""
        more = not too_big
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                too_big = True
                break
        if too_big:
            response = error_response(
                413, "payload_too_large", f"request body over {self.limit} bytes"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replayed_receive(body, False, receive), send)


def replayed_receive(body: bytes, more: bool, receive: Receive) -> Receive:
    """The receive channel of a request whose first ``body`` bytes were read already."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
