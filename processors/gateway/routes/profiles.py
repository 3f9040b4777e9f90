"""Participant profiles: set one (an event on the participants topic) and read one."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from processors.gateway.deps import ClientDep, ProducerDep, StateDep
from processors.gateway.errors import ApiError
from processors.gateway.guards import ApiKey, BearerToken, bearer_challenge
from processors.gateway.responses import ProfileOut, ProfileSetOut
from processors.kafka.producer import delivery_future
from projections.profiles import profiles_key, read_profiles
from streams import rules
from streams.errors import LeaderboardError
from streams.profiles import ProfileIn

__all__ = ["router"]

router = APIRouter(tags=["participants"])

#: How long a profile change waits for Kafka's acknowledgement before answering 503.
PUBLISH_TIMEOUT_S = 10.0

ParticipantPath = Annotated[str, PathParam(min_length=1, max_length=128)]


@router.put(
    "/v1/participants/{participant:path}/profile",
    status_code=202,
    response_model=None,
    responses={
        202: {"model": ProfileSetOut, "description": "on the participants topic"},
        403: {"description": "a player token may set only its own profile"},
    },
)
async def set_profile(
    participant: ParticipantPath,
    body: ProfileIn,
    state: StateDep,
    producer: ProducerDep,
    key: ApiKey = None,
    bearer: BearerToken = None,
) -> dict[str, Any]:
    """Set a participant's whole profile (display name, avatar URL, country, metadata): a
    ``ParticipantProfileUpdated`` event on the participants topic, applied to reads by the
    sinks worker. A write: an API key (any participant) or the participant's player token."""
    subject = state.keys.writer(key, bearer)
    if subject is not None and participant != subject:
        why = f"a player token for {subject!r} may not set the profile of {participant!r}"
        raise ApiError(403, why, headers=bearer_challenge("insufficient_scope", why))
    reason = rules.participant_reason(participant)
    if reason:
        raise ApiError(400, reason)
    event = body.to_event(
        participant, int(time.time() * 1000), "service" if subject is None else "player"
    )
    delivered, on_delivery = delivery_future(asyncio.get_running_loop())
    topic = state.settings.topic(state.settings.participants_topic)
    producer.publish(topic, participant, event, on_delivery=on_delivery)
    try:
        await asyncio.wait_for(delivered, PUBLISH_TIMEOUT_S)
    except (LeaderboardError, TimeoutError) as exc:
        why = str(exc) or f"not acknowledged by Kafka within {PUBLISH_TIMEOUT_S:g}s"
        raise ApiError(503, f"could not publish the profile: {why}") from None
    return {"participant_id": participant, "status": "accepted", "profile": event.profile()}


@router.get(
    "/v1/participants/{participant:path}/profile",
    response_model=None,
    responses={200: {"model": ProfileOut}},
)
async def get_profile(
    participant: ParticipantPath, state: StateDep, client: ClientDep
) -> dict[str, Any]:
    """A participant's current profile, as rankings rows carry it (404 if none is set)."""
    found = await read_profiles(
        client, [participant], key=profiles_key(state.settings.topic_prefix)
    )
    if participant not in found:
        raise ApiError(404, f"participant {participant!r} has no profile")
    return {"participant_id": participant, "profile": found[participant]}
