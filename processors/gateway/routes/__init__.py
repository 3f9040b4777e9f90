"""The gateway's routers, in the order the app includes them (it fixes the OpenAPI order)."""

from __future__ import annotations

from fastapi import APIRouter

from processors.gateway.routes import boards, live, ops, pages, reads, scores

__all__ = ["ROUTERS"]

#: Pages, ops (health, readiness, metrics), boards, scores, reads, then live push.
ROUTERS: tuple[APIRouter, ...] = (
    pages.router,
    ops.router,
    boards.router,
    scores.router,
    reads.router,
    live.router,
)
