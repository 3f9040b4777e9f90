"""HTTP + WebSocket gateway: rankings, score submission, admin, live push, the live page."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI, Query, Request, Response, Security, WebSocket
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from processors.bootstrap import kafka_admin, make_client, pg_connect_async
from processors.gateway.feed import RankFeed, Subscriber
from processors.kafka.configview import ConfigView
from processors.kafka.producer import LeaderboardProducer
from projections.push import current_period, read_participant, read_top
from projections.sharded import ShardedStore, layout_of
from projections.store import Entry, RankingStore
from projections.topk import DEFAULT_K, read_topk
from streams import rules
from streams.errors import LeaderboardError, ValidationError
from streams.events import BoardStatus, LeaderboardConfigured
from streams.settings import Settings
from streams.validation import BoardConfigIn, ScoreEntryIn, parse_time

__all__ = ["ApiError", "HistoryReader", "RateLimiter", "create_app"]

log = logging.getLogger(__name__)

#: ``history(board, period, limit, offset)`` → final standings of a closed period, or None
#: if that period (or, with ``period=None``, any period of the board) is not closed.
HistoryReader = Callable[[str, str | None, int, int], Awaitable[dict[str, Any] | None]]

STATIC_DIR = Path(str(resources.files("projections").joinpath("static")))
BOARD_ID = r"^[A-Za-z0-9_.-]{1,64}$"
PERIOD = r"^[0-9A-Za-z-]{1,32}$"
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
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
        self.code = code or _CODES.get(status, "error")


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


# ---------------------------------------------------------------------------- request models
class ScoreIn(ScoreEntryIn):
    """A score submitted over HTTP: one participant's entry plus optional time and match id."""

    timestamp: int | None = Field(
        None, description="event time: epoch milliseconds or ISO-8601 (default: now)"
    )
    match_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _time(cls, value: Any) -> int | None:
        return None if value is None else parse_time(value)


class BoardPatchIn(BaseModel):
    """Changes to a board: close (or reopen) it, change its watched top-N size."""

    model_config = ConfigDict(extra="forbid")

    status: BoardStatus | None = None
    watch_top_n: int | None = Field(None, ge=0, le=10_000)


class SubscribeIn(BaseModel):
    """The first WebSocket message: what to follow and from which version."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe"] = "subscribe"
    mode: Literal["top", "track"] = "top"
    n: StrictInt = Field(100, ge=1, le=1000)
    participant_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    since_version: StrictInt | None = Field(None, ge=0)


# ---------------------------------------------------------------------------- helpers
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


def _keys(text: str) -> list[bytes]:
    return [k.strip().encode() for k in text.split(",") if k.strip()]


def _key_ok(given: str, keys: Sequence[bytes]) -> bool:
    """Constant-time membership: every key is compared, whatever matches first."""
    raw = given.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(raw, key)
    return ok


def board_json(cfg: LeaderboardConfigured) -> dict[str, Any]:
    """The JSON form of a board configuration."""
    return cfg.to_avro()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _validation_message(errors: Sequence[Any]) -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'input'}: {msg}")
    return "; ".join(parts) or "invalid request"


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
            response = _error(413, "payload_too_large", f"request body over {self.limit} bytes")
            await response(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="write or admin key")
BoardId = Annotated[str, PathParam(pattern=BOARD_ID, description="leaderboard id")]
PeriodQ = Annotated[
    str | None, Query(pattern=PERIOD, description="period key (default: the current one)")
]
ApiKey = Annotated[str | None, Security(_API_KEY)]


@dataclasses.dataclass
class _State:
    client: Any = None  # redis.asyncio Redis or RedisCluster (projections.redis_client)
    view: ConfigView | None = None
    producer: LeaderboardProducer | None = None
    feed: RankFeed | None = None
    admin: AdminClient | None = None
    last_sync: float = 0.0


# ---------------------------------------------------------------------------- the app
async def _sharded_period(
    store: ShardedStore, cfg: LeaderboardConfigured, period: str | None
) -> str:
    if period:
        return period
    periods = await store.periods(cfg.leaderboard_id)
    if not periods:
        return rules.ALL_TIME if cfg.reset_period.value == "none" else "-"
    return max(periods, key=lambda p: rules.period_bounds(cfg.reset_period, p)[0])


async def sharded_page(
    client: Any,
    cfg: LeaderboardConfigured,
    period: str | None,
    offset: int,
    limit: int,
    around: str | None,
) -> dict[str, Any]:
    """A page of a sharded board: from the cached top K when inside it, else scatter-gather."""
    board = cfg.leaderboard_id
    store = ShardedStore(RankingStore(client))
    p = await _sharded_period(store, cfg, period)
    if around is not None:
        me = await store.rank(board, p, cfg.sort_order, around)
        if me is None:
            raise ApiError(404, f"participant {around!r} is not on {board!r} ({p})")
        offset = max(0, me.rank - 1 - (limit - 1) // 2)
    body: dict[str, Any] = {"leaderboard_id": board, "period": p, "offset": offset}
    if offset + limit <= DEFAULT_K:
        cached = await read_topk(store, board, p, limit, offset)
        if cached is not None:
            return {
                **body,
                "version": cached.version,
                "count": await store.count(board, p),
                "computed_at": cached.computed_at,
                "stale_ms": max(0, _now_ms() - cached.computed_at),
                "entries": [_row(e) for e in cached.entries],
            }
    rows = await store.top(board, p, cfg.sort_order, limit=limit, offset=offset)
    return {
        **body,
        "version": await store.version(board),
        "count": await store.count(board, p),
        "entries": [_row(e) for e in rows],
    }


async def sharded_participant(
    client: Any, cfg: LeaderboardConfigured, period: str | None, pid: str, k: int
) -> dict[str, Any]:
    """A participant of a sharded board with neighbours (exact ranks across shards)."""
    board = cfg.leaderboard_id
    store = ShardedStore(RankingStore(client))
    p = await _sharded_period(store, cfg, period)
    rows = await store.around(board, p, cfg.sort_order, pid, k)
    mine = next((e for e in rows if e.participant_id == pid), None)
    if mine is None:
        raise ApiError(404, f"participant {pid!r} is not on {board!r} ({p})")
    return {
        "leaderboard_id": board,
        "period": p,
        "version": await store.version(board),
        "count": await store.count(board, p),
        "participant_id": pid,
        "rank": mine.rank,
        "score": mine.score,
        "above": [_row(e) for e in rows if e.rank < mine.rank],
        "below": [_row(e) for e in rows if e.rank > mine.rank],
    }


def _row(e: Entry) -> dict[str, Any]:
    return {"rank": e.rank, "participant_id": e.participant_id, "score": e.score}


def create_app(
    settings: Settings,
    *,
    history: HistoryReader | None = None,
    submit_rate: float = 5.0,
    submit_burst: int = 10,
    key_rate: float = 500.0,
    key_burst: int = 1000,
    wait_timeout_s: float = 5.0,
    max_body: int = 64 * 1024,
    cors_origins: Sequence[str] = ("*",),
    push_window_s: float = 0.05,
    ping_interval_s: float = 15.0,
    subscriber_queue: int = 256,
) -> FastAPI:
    """The gateway app; Kafka, Redis and the config view are opened by its lifespan.

    Writes need an ``X-API-Key`` from ``settings.api_keys`` (or ``admin_keys``), admin calls
    one from ``settings.admin_keys`` (or ``api_keys`` if that is empty). With no key
    configured at all, writes and admin calls are open: fine on a laptop, not in production.
    """
    st = _State()
    registry = CollectorRegistry()
    requests = Counter(
        "gateway_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "gateway_http_request_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    pushes = Counter("gateway_ws_pushes", "WebSocket messages pushed", ["type"], registry=registry)
    Gauge("gateway_ws_subscribers", "Live WebSocket subscribers", registry=registry).set_function(
        lambda: st.feed.subscriber_count() if st.feed else 0
    )
    Gauge(
        "gateway_rank_feed_lag_records", "Rank-change records not yet read", registry=registry
    ).set_function(lambda: st.feed.lag if st.feed else 0)
    Gauge(
        "gateway_rank_feed_delay_seconds",
        "Age of the last rank-change record when read",
        registry=registry,
    ).set_function(lambda: st.feed.delay_s if st.feed else 0)
    Gauge(
        "gateway_rank_feed_records", "Rank-change records read since start", registry=registry
    ).set_function(lambda: st.feed.records if st.feed else 0)
    submitted = Counter("gateway_scores_submitted", "Scores published", registry=registry)

    write_keys = _keys(settings.api_keys) + _keys(settings.admin_keys)
    admin_keys = _keys(settings.admin_keys) or _keys(settings.api_keys)
    limiter = RateLimiter(submit_rate, submit_burst)
    key_limiter = RateLimiter(key_rate, key_burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        st.client = make_client(settings)
        st.view = ConfigView(settings)
        await loop.run_in_executor(None, st.view.start)
        await st.view.sync(10)
        st.producer = LeaderboardProducer(settings)
        st.admin = kafka_admin(settings)
        st.feed = RankFeed(
            settings,
            st.client,
            st.view.get,
            window_s=push_window_s,
            queue_size=subscriber_queue,
            on_push=lambda kind: pushes.labels(kind).inc(),
        )
        st.feed.start()
        log.info("gateway ready: %d board(s) known", len(st.view.snapshot()))
        try:
            yield
        finally:
            st.feed.stop()
            st.view.stop()
            try:
                await loop.run_in_executor(None, st.producer.close, 5.0)
            except LeaderboardError as exc:
                log.warning("producer close: %s", exc)
            await st.client.aclose()

    app = FastAPI(
        title="Leaderboard gateway",
        version="1",
        description="Rankings, score submission, live push (WebSocket) and admin of leaderboards.",
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cors_origins),
        allow_methods=["GET", "POST", "PATCH", "OPTIONS"],
        allow_headers=["Content-Type", "X-API-Key"],
        max_age=600,
    )
    app.add_middleware(BodyLimit, limit=max_body)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ errors and metrics
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "bad_request", _validation_message(exc.errors()))

    @app.exception_handler(ValidationError)
    async def domain_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal", "internal error (logged by the gateway)")

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            latency.labels(request.method, route).observe(time.perf_counter() - start)
            requests.labels(request.method, route, str(status)).inc()

    # ------------------------------------------------------------------ dependencies
    def need(what: str) -> Any:
        value = getattr(st, what)
        if value is None:
            raise ApiError(503, "gateway is starting", "unavailable")
        return value

    def check_key(given: str | None, keys: Sequence[bytes], role: str) -> None:
        if not keys:
            return  # no keys configured: open (documented)
        if not given:
            raise ApiError(401, f"{role} calls need an X-API-Key header")
        if not _key_ok(given, keys):
            raise ApiError(403, f"this API key may not make {role} calls")
        # per-key budget, keyed by a digest so the secret itself is never kept or logged
        retry = key_limiter.take(hashlib.sha256(given.encode()).hexdigest())
        if retry:
            raise ApiError(
                429,
                f"too many {role} calls for this API key: at most {key_rate:g}/s",
                headers={"Retry-After": str(max(1, round(retry + 0.5)))},
            )

    async def board_cfg(board: str) -> LeaderboardConfigured:
        view: ConfigView = need("view")
        cfg = view.get(board)
        if cfg is None and time.monotonic() - st.last_sync > 1.0:
            st.last_sync = time.monotonic()  # one catch-up a second at most, whatever asks
            await view.sync(2)
            cfg = view.get(board)
        if cfg is None:
            raise ApiError(404, f"unknown leaderboard {board!r}")
        return cfg

    # ------------------------------------------------------------------ pages
    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/boards/{board}", include_in_schema=False)
    async def board_page(board: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "board.html")

    # ------------------------------------------------------------------ health
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        """Readiness: Kafka, Redis and PostgreSQL answer and the rank-change reader runs."""
        loop = asyncio.get_running_loop()
        checks: dict[str, str] = {}

        async def kafka() -> None:
            admin: AdminClient = need("admin")
            await loop.run_in_executor(None, lambda: admin.list_topics(timeout=3))
            feed: RankFeed = need("feed")
            if not feed.running:
                raise RuntimeError("rank-change reader is not running")

        async def redis_ping() -> None:
            client: aioredis.Redis = need("client")
            await asyncio.wait_for(client.ping(), 3)

        async def postgres() -> None:
            conn = await pg_connect_async(settings, connect_timeout=3)
            async with conn:
                await conn.execute("SELECT 1")

        for name, check in (("kafka", kafka), ("redis", redis_ping), ("postgres", postgres)):
            try:
                await asyncio.wait_for(check(), 5)
                checks[name] = "ok"
            except Exception as exc:
                log.warning("readiness: %s: %s", name, exc)
                checks[name] = f"failed: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        body = {"error": {"code": "not_ready", "message": "a dependency does not answer"}}
        return JSONResponse({**body, "checks": checks}, 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ boards (admin)
    @app.get("/v1/leaderboards", tags=["boards"])
    async def list_boards() -> dict[str, Any]:
        """Every known leaderboard and its configuration."""
        view: ConfigView = need("view")
        boards = sorted(view.snapshot().values(), key=lambda c: c.leaderboard_id)
        return {"leaderboards": [board_json(c) for c in boards]}

    async def publish_config(cfg: LeaderboardConfigured) -> None:
        producer: LeaderboardProducer = need("producer")
        view: ConfigView = need("view")
        producer.configure(cfg)
        try:
            await asyncio.get_running_loop().run_in_executor(None, producer.flush, 10.0)
        except LeaderboardError as exc:
            raise ApiError(503, f"could not publish the configuration: {exc}") from None
        await view.sync(5)

    @app.post("/v1/leaderboards", status_code=201, tags=["boards"])
    async def create_board(body: BoardConfigIn, key: ApiKey = None) -> dict[str, Any]:
        """Create a leaderboard (admin)."""
        check_key(key, admin_keys, "admin")
        view: ConfigView = need("view")
        await view.sync(2)
        if view.get(body.leaderboard_id) is not None:
            raise ApiError(409, f"leaderboard {body.leaderboard_id!r} exists already")
        cfg = body.to_event(_now_ms())
        await publish_config(cfg)
        return board_json(cfg)

    @app.get("/v1/leaderboards/{board}", tags=["boards"])
    async def get_board(board: BoardId) -> dict[str, Any]:
        """One leaderboard's configuration and version."""
        cfg = await board_cfg(board)
        client: aioredis.Redis = need("client")
        period = await current_period(client, cfg)
        snap = await read_top(client, cfg, period, 0, 0)
        return {**board_json(cfg), "version": snap.version, "period": period, "count": snap.count}

    @app.patch("/v1/leaderboards/{board}", tags=["boards"])
    async def patch_board(board: BoardId, body: BoardPatchIn, key: ApiKey = None) -> dict[str, Any]:
        """Close (or reopen) a leaderboard or change its watched top-N size (admin)."""
        check_key(key, admin_keys, "admin")
        cfg = await board_cfg(board)
        if body.status is None and body.watch_top_n is None:
            raise ApiError(400, "nothing to change: give status and/or watch_top_n")
        now = _now_ms()
        changes: dict[str, Any] = {"configured_at": now}
        if body.watch_top_n is not None:
            changes["watch_top_n"] = body.watch_top_n
        if body.status is BoardStatus.CLOSED and cfg.status is not BoardStatus.CLOSED:
            changes |= {"status": BoardStatus.CLOSED, "closed_at": now}
        elif body.status is BoardStatus.ACTIVE:
            changes |= {"status": BoardStatus.ACTIVE, "closed_at": None}
        new = dataclasses.replace(cfg, **changes)
        await publish_config(new)
        return board_json(new)

    # ------------------------------------------------------------------ scores
    @app.post(
        "/v1/leaderboards/{board}/scores",
        status_code=202,
        tags=["scores"],
        responses={200: {"description": "with wait=true: the applied result"}},
    )
    async def submit_score(
        board: BoardId,
        body: ScoreIn,
        response: Response,
        wait: Annotated[bool, Query(description="wait until the projection applied it")] = False,
        key: ApiKey = None,
    ) -> dict[str, Any]:
        """Publish one participant's score; 202 with its event id (200 with ranks if wait)."""
        check_key(key, write_keys, "write")
        cfg = await board_cfg(board)
        if cfg.status is BoardStatus.CLOSED:
            raise ApiError(409, f"leaderboard {board!r} is closed")
        retry = limiter.take(f"{board}\x00{body.participant_id}")
        if retry:
            raise ApiError(
                429,
                f"too many scores for {body.participant_id!r}: at most {submit_rate:g}/s",
                headers={"Retry-After": str(max(1, round(retry + 0.5)))},
            )
        producer: LeaderboardProducer = need("producer")
        feed: RankFeed = need("feed")
        event_id = producer.submit_score(
            board,
            body.participant_id,
            body.score,
            at=body.timestamp,
            operator=body.operator,
            match_id=body.match_id,
            metadata=body.metadata or None,
        )
        fut = feed.wait_for(event_id) if wait else None
        try:
            await asyncio.get_running_loop().run_in_executor(None, producer.flush, 10.0)
        except LeaderboardError as exc:
            if fut is not None:
                feed.forget(event_id, fut)
            raise ApiError(503, f"could not publish the score: {exc}") from None
        submitted.inc()
        if fut is None:
            return {"event_id": event_id, "status": "accepted"}
        try:
            change = await asyncio.wait_for(fut, wait_timeout_s)
        except TimeoutError:
            raise ApiError(
                504,
                f"score {event_id} published but not applied within {wait_timeout_s:g}s "
                "(it may still be applied, or was rejected to the dead-letter topic)",
            ) from None
        finally:
            feed.forget(event_id, fut)
        response.status_code = 200
        return {
            "event_id": event_id,
            "status": "applied",
            "participant_id": change.participant_id,
            "period": change.period,
            "version": change.version,
            "rank": change.new_rank,
            "previous_rank": change.old_rank,
            "score": change.new_score,
            "previous_score": change.old_score,
        }

    # ------------------------------------------------------------------ reads
    @app.get("/v1/leaderboards/{board}/rankings", tags=["rankings"])
    async def rankings(
        board: BoardId,
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
        cfg = await board_cfg(board)
        client: aioredis.Redis = need("client")
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

    @app.get("/v1/leaderboards/{board}/participants/{participant}", tags=["rankings"])
    async def participant(
        board: BoardId,
        participant: Annotated[str, PathParam(min_length=1, max_length=128)],
        neighbours: Annotated[int, Query(ge=0, le=50)] = 2,
        period: PeriodQ = None,
    ) -> dict[str, Any]:
        """One participant's rank and score with neighbours above and below."""
        cfg = await board_cfg(board)
        client: aioredis.Redis = need("client")
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
            "score": mine["score"],
            "above": [e for e in snap.entries if e["rank"] < mine["rank"]],
            "below": [e for e in snap.entries if e["rank"] > mine["rank"]],
        }

    @app.get("/v1/leaderboards/{board}/history", tags=["rankings"])
    async def board_history(
        board: BoardId,
        period: PeriodQ = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    ) -> dict[str, Any]:
        """Final standings of a closed period (default: the latest closed one)."""
        await board_cfg(board)
        if history is None:
            raise ApiError(503, "history is not configured on this gateway")
        found = await history(board, period, limit, offset)
        if found is None:
            what = f"period {period!r}" if period else "any period"
            raise ApiError(404, f"{what} of {board!r} is not closed (no final standings)")
        return {"leaderboard_id": board, **found}

    # ------------------------------------------------------------------ live push
    @app.websocket("/v1/leaderboards/{board}/subscribe")
    async def subscribe(ws: WebSocket, board: str) -> None:
        """Live deltas of the top N or of one participant (see docs/gateway.md)."""
        await ws.accept()
        feed: RankFeed | None = st.feed

        async def fail(code: str, message: str, close: int) -> None:
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "error", "error": {"code": code, "message": message}})
                await ws.close(close)

        if feed is None:
            await fail("unavailable", "gateway is starting", 1013)
            return
        try:
            first = await asyncio.wait_for(ws.receive_text(), 10)
            req = SubscribeIn.model_validate_json(first)
        except TimeoutError:
            await fail("timeout", "send a subscribe message within 10 s", 1008)
            return
        except WebSocketDisconnect:
            return
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            msg = _validation_message(errors()) if callable(errors) else "invalid subscribe message"
            await fail("bad_request", msg, 1008)
            return
        if req.mode == "track" and req.participant_id is None:
            await fail("bad_request", "mode track needs participant_id", 1008)
            return
        try:
            await board_cfg(board)
        except ApiError as exc:
            await fail(exc.code, str(exc.detail), 4404)
            return
        sub = Subscriber(
            board, req.mode, n=req.n, participant_id=req.participant_id, queue_size=subscriber_queue
        )
        feed.subscribe(sub, req.since_version)
        last_heard = time.monotonic()
        answers_pings = False

        async def send(msg: dict[str, Any]) -> None:
            await ws.send_text(json.dumps(msg, separators=(",", ":")))

        async def receive() -> None:
            nonlocal last_heard, answers_pings
            while True:
                text = await ws.receive_text()
                last_heard = time.monotonic()
                with contextlib.suppress(ValueError):
                    if json.loads(text).get("type") == "pong":
                        answers_pings = True

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(ping_interval_s)
                if answers_pings and time.monotonic() - last_heard > 3 * ping_interval_s:
                    log.info("subscriber %s stopped answering pings", sub.describe())
                    return
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait({"type": "ping", "version": sub.version})

        tasks = [
            asyncio.create_task(feed.serve(sub, send)),
            asyncio.create_task(receive()),
            asyncio.create_task(heartbeat()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                err = task.exception()
                if err is not None and not isinstance(err, WebSocketDisconnect | TimeoutError):
                    log.warning("subscriber %s ended: %r", sub.describe(), err)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            feed.unsubscribe(sub)
            if ws.application_state is not WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()

    return app
