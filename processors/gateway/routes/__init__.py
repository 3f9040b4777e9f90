"""The gateway's routers, in the order the app includes them (it fixes the OpenAPI order)."""

from __future__ import annotations

from fastapi import APIRouter

from processors.gateway.routes import (
    boards,
    docs,
    live,
    moderation,
    ops,
    pages,
    reads,
    scores,
)

__all__ = ["ROUTERS"]

#: Pages, docs, ops (health, readiness, metrics), boards, moderation, scores, reads, then live
#: push.
ROUTERS: tuple[APIRouter, ...] = (
    pages.router,
    docs.router,
    ops.router,
    boards.router,
    moderation.router,
    scores.router,
    reads.router,
    live.router,
)
