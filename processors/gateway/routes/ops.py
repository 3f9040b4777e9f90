"""Operations: liveness, readiness (Kafka, Redis, PostgreSQL, the feed), Prometheus metrics and
the operations page (``/ops``) with its data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from processors import scrape_targets
from processors.bootstrap import pg_connect_async
from processors.gateway.deps import GatewayState, StateDep
from processors.gateway.metrics import CONTENT_TYPE_LATEST
from processors.gateway.responses import ErrorOut, HealthOut, OpsDataOut, ReadyOut
from processors.gateway.routes.pages import STATIC_DIR

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])


async def _kafka(state: GatewayState) -> None:
    loop = asyncio.get_running_loop()
    admin = state.require().admin
    await loop.run_in_executor(None, lambda: admin.list_topics(timeout=3))
    feed = state.require().feed
    if not feed.running:
        raise RuntimeError("rank-change reader is not running")


async def _redis(state: GatewayState) -> None:
    await asyncio.wait_for(state.require().redis.ping(), 3)


async def _postgres(state: GatewayState) -> None:
    conn = await pg_connect_async(state.settings, connect_timeout=3)
    async with conn:
        await conn.execute("SELECT 1")


_CHECKS: tuple[tuple[str, Callable[[GatewayState], Awaitable[None]]], ...] = (
    ("kafka", _kafka),
    ("redis", _redis),
    ("postgres", _postgres),
)


@router.get("/health", response_model=None, responses={200: {"model": HealthOut}})
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=None,
    responses={
        200: {"model": ReadyOut},
        503: {"model": ErrorOut, "description": "a dependency does not answer (with checks)"},
    },
)
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: Kafka, Redis and PostgreSQL answer and the rank-change reader runs."""
    checks: dict[str, str] = {}
    for name, check in _CHECKS:
        try:
            await asyncio.wait_for(check(state), 5)
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness: %s: %s", name, exc)
            checks[name] = f"failed: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    body = {"error": {"code": "not_ready", "message": "a dependency does not answer"}}
    return JSONResponse({**body, "checks": checks}, 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format"}},
)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/ops", include_in_schema=False)
async def ops_page() -> FileResponse:
    """The operations page: live charts of throughput, lag and latency (reads /ops/data)."""
    return FileResponse(STATIC_DIR / "ops.html")


@router.get("/ops/data", response_model=None, responses={200: {"model": OpsDataOut}})
async def ops_data(state: StateDep) -> dict[str, Any]:
    """Throughput, consumer lag and latency over the last minutes, for the operations page.

    Sampled (at most once a second) from this gateway's metrics and those of every worker
    announced under the stack dir; ``points`` are oldest first, ``targets`` tell which
    endpoints answered the last sample.
    """
    settings = state.settings
    sampler = state.metrics.ops(lambda: scrape_targets.targets(settings))
    return await sampler.sample()
