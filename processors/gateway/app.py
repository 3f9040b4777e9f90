"""HTTP + WebSocket gateway: rankings, score submission, admin, live push, the live page.

``create_app`` assembles the app from the modules of this package: the state and its typed
dependencies (``deps``), errors (``errors``), guards (``guards``), metrics (``metrics``) and
the routers (``routes``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from processors.gateway.deps import (
    GatewayOptions,
    GatewayState,
    HistoryReader,
    PlacementsReader,
)
from processors.gateway.errors import ApiError, install_error_handlers
from processors.gateway.fastpath import FastPaths
from processors.gateway.guards import BodyLimit, ClientLimit, RateLimiter
from processors.gateway.metrics import MeasureRequests
from processors.gateway.rawsocket import SERVER_SEND
from processors.gateway.responses import document_errors
from processors.gateway.routes import ROUTERS
from processors.gateway.routes.docs import DOCS_ASSETS, DOCS_STATIC
from processors.gateway.routes.pages import STATIC_DIR
from processors.gateway.tracing import RequestId
from streams.settings import Settings

__all__ = ["ApiError", "HistoryReader", "PlacementsReader", "RateLimiter", "create_app"]


class _Gateway(FastAPI):
    """FastAPI with the hot calls' ASGI app (fastpath.py) in front of everything else: the
    framework's own per-request work (its telemetry check, error handler, body limit) and
    every middleware run only for the requests it passes on."""

    fast_paths: FastPaths | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve HTTP through the fast paths when configured; everything else as FastAPI."""
        fast = self.fast_paths
        if fast is not None and scope["type"] == "http":
            scope["app"] = self
            await fast(scope, receive, send)
            return
        if scope["type"] == "websocket":
            scope[SERVER_SEND] = send  # a view writes its shared frames below Starlette
        await super().__call__(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app without its fast paths (what they pass requests on to)."""
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    history: HistoryReader | None = None,
    placements: PlacementsReader | None = None,
    submit_rate: float = 5.0,
    submit_burst: int = 10,
    key_rate: float = 500.0,
    key_burst: int = 1000,
    wait_timeout_s: float = 5.0,
    max_body: int = 64 * 1024,
    cors_origins: Sequence[str] | None = None,
    client_rate: float | None = None,
    client_burst: int | None = None,
    access_log: bool = False,
    push_window_s: float = 0.05,
    ping_interval_s: float = 15.0,
    subscriber_queue: int = 256,
    coalesce_max: int = 64,
    coalesce_window_s: float = 0.002,
    coalesce_in_flight: int = 1,
    freeze_heap: bool = False,
) -> FastAPI:
    """The gateway app; Kafka, Redis and the config view are opened by its lifespan.

    Writes need an ``X-API-Key`` from ``settings.api_keys`` (or ``admin_keys``), admin calls
    one from ``settings.admin_keys`` (or ``api_keys`` if that is empty). With no key
    configured, they are refused unless ``settings.gateway_open``. CORS allows
    ``cors_origins`` (default: ``settings.cors_origins``, none). Write calls per client
    address are limited to ``client_rate``/s (default ``settings.rate_per_client``; 0 = no
    limit). Every request gets an ``X-Request-ID``; ``access_log`` logs one line per request.
    Concurrent submissions to one board are coalesced into one record, up to ``coalesce_max``
    (1 = off), waiting at most ``coalesce_window_s`` while ``coalesce_in_flight`` records of the
    board await Kafka. ``freeze_heap``: once the services are open, move the start-up heap out
    of the garbage collector's reach (gateway/heap.py; the server process does, a test's app
    need not).
    """
    if client_rate is None:
        client_rate = settings.rate_per_client
    if client_burst is None:
        client_burst = settings.rate_per_client_burst or max(1, round(2 * client_rate))
    if cors_origins is None:
        cors_origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    options = GatewayOptions(
        submit_rate=submit_rate,
        submit_burst=submit_burst,
        key_rate=key_rate,
        key_burst=key_burst,
        wait_timeout_s=wait_timeout_s,
        max_body=max_body,
        cors_origins=tuple(cors_origins),
        push_window_s=push_window_s,
        ping_interval_s=ping_interval_s,
        subscriber_queue=subscriber_queue,
        coalesce_max=coalesce_max,
        coalesce_window_s=coalesce_window_s,
        coalesce_in_flight=coalesce_in_flight,
        freeze_heap=freeze_heap,
    )
    state = GatewayState(settings, options, history, placements)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Open the services before serving, close them after."""
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = _Gateway(
        title="Leaderboard gateway",
        version="1",
        description="Rankings, score submission, live push (WebSocket) and admin of leaderboards.",
        lifespan=lifespan,
        docs_url=None,  # served by routes.docs from local assets (works offline)
        redoc_url=None,
    )
    app.state.gateway = state
    # in front: the hot calls served directly (fastpath.py), then the framework's error
    # handler and telemetry, then ours (the last added is the outermost): request id →
    # measure → client limit → body limit → CORS → the routes
    routes: dict[str, Any] = {}
    client_limit = RateLimiter(client_rate, client_burst) if client_rate > 0 else None
    app.fast_paths = FastPaths(
        app.framework,
        state,
        routes,
        client_limit=client_limit,
        max_body=options.max_body,
        access_log=access_log,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.cors_origins),
        allow_methods=["GET", "POST", "PATCH", "OPTIONS"],
        allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(BodyLimit, limit=options.max_body)
    if client_limit is not None:
        app.add_middleware(ClientLimit, rate=client_rate, burst=client_burst, limiter=client_limit)
    app.add_middleware(MeasureRequests, metrics=state.metrics)
    app.add_middleware(RequestId, access_log=access_log)
    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    document_errors(app)
    routes.update((r.path, r) for r in app.routes if isinstance(r, APIRoute))
    return app
