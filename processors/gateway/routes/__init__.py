"""The gateway's routers, in the order the app includes them (it fixes the OpenAPI order)."""

from __future__ import annotations

from fastapi import APIRouter

from processors.gateway.routes import (
    boards,
    docs,
    live,
    moderation,
    notify,
    ops,
    pages,
    profiles,
    reads,
    scores,
)

__all__ = ["ROUTERS"]

#: Pages, docs, ops (health, readiness, metrics), boards, moderation, scores, reads, profiles,
#: then live push and personal notifications.
ROUTERS: tuple[APIRouter, ...] = (
    pages.router,
    docs.router,
    ops.router,
    boards.router,
    moderation.router,
    scores.router,
    reads.router,
    profiles.router,
    live.router,
    notify.router,
)
