"""Moderation (admin): remove, void, ban, unban, written as events on the board's score log."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from fastapi import APIRouter

from processors.gateway.deps import ProducerDep, StateDep
from processors.gateway.errors import ApiError
from processors.gateway.guards import ApiKey
from processors.gateway.models import BoardId, now_ms
from processors.gateway.responses import ModerationOut
from processors.kafka.producer import delivery_future
from streams import rules
from streams.errors import LeaderboardError
from streams.validation import ModerationIn

__all__ = ["key_id", "router"]

router = APIRouter(tags=["moderation"])

#: How long a moderation waits for Kafka's acknowledgement before answering 503.
PUBLISH_TIMEOUT_S = 10.0


def key_id(key: str | None) -> str:
    """Who an admin call is, for the audit: a short digest of its API key (never the key)."""
    if not key:
        return "gateway:open"
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


@router.post(
    "/v1/leaderboards/{board}/moderation",
    status_code=202,
    response_model=None,
    responses={
        202: {
            "model": ModerationOut,
            "description": "the moderation event was written to the board's score log",
        },
        400: {"description": "a malformed request (unknown action, missing target or reason)"},
        404: {"description": "unknown leaderboard"},
        422: {
            "description": "the board cannot take it (a void without retain_entries, a bad period)"
        },
    },
)
async def moderate(
    board: BoardId,
    body: ModerationIn,
    state: StateDep,
    producer: ProducerDep,
    key: ApiKey = None,
) -> dict[str, Any]:
    """Remove a participant's record, void a match, or ban / unban a participant (admin).

    The moderation is an event (``LeaderboardModerated``) on the board's partition of the
    scores topic, applied by the projector in order with the scores and kept by replay; the
    worker dead-letters it with the reason if it cannot apply (a participant without a record,
    a match unknown or already voided). Returns its event id once Kafka has it.
    """
    state.keys.admin(key)
    cfg = await state.board_cfg(board)
    event = body.to_event(board, key_id(key), now_ms())
    refused = rules.moderation_reason(cfg, event)  # what the worker would dead-letter at once
    if refused:
        raise ApiError(422, f"moderation refused: {refused}", code="refused")
    delivered, on_delivery = delivery_future(asyncio.get_running_loop())
    producer.moderate(event, on_delivery=on_delivery)
    try:
        await asyncio.wait_for(delivered, PUBLISH_TIMEOUT_S)
    except (LeaderboardError, TimeoutError) as exc:
        why = str(exc) or f"not acknowledged by Kafka within {PUBLISH_TIMEOUT_S:g}s"
        raise ApiError(503, f"could not publish the moderation: {why}") from None
    return {
        "event_id": event.event_id,
        "status": "accepted",
        "action": event.action.value,
        "target": event.target,
        "issued_by": event.issued_by,
    }
