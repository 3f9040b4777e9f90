"""Scores: publish one participant's score, optionally waiting until the projection applied it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response
from fastapi.security import HTTPAuthorizationCredentials
from opentelemetry.trace import SpanKind

from processors import telemetry
from processors.gateway.cache import json_response
from processors.gateway.coalescer import PUBLISH_TIMEOUT_S, SubmitCoalescer
from processors.gateway.deps import CoalescerDep, FeedDep, GatewayState, ProducerDep, StateDep
from processors.gateway.errors import ApiError
from processors.gateway.feed import DeadLettered, RankFeed
from processors.gateway.guards import ApiKey, BearerToken, bearer_challenge, retry_after
from processors.gateway.models import BoardId, ScoreIn
from processors.gateway.responses import AppliedOut, SubmittedOut
from processors.kafka.producer import LeaderboardProducer, delivery_future, fresh_uuid
from projections.sharded import layout_of
from streams import rules
from streams.errors import LeaderboardError
from streams.events import BoardStatus, MatchResultSubmitted, RankChange, TimeSource

__all__ = ["applied_json", "router", "submit_once"]

router = APIRouter(tags=["scores"])


def applied_json(event_id: str, change: RankChange) -> dict[str, Any]:
    """The ``wait=true`` answer: the applied change's ranks and scores."""
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


#: The route, also the ``http.route`` of its trace span.
ROUTE = "/v1/leaderboards/{board}/scores"


@router.post(
    ROUTE,
    status_code=202,
    response_model=None,
    responses={
        202: {"model": SubmittedOut, "description": "on the log; the projector applies it"},
        200: {"model": AppliedOut, "description": "with wait=true: the applied result"},
        409: {"description": "with wait=true: a duplicate event id (dead-lettered)"},
        422: {"description": "with wait=true: refused by the worker, with its reason"},
    },
)
async def submit_score(
    board: BoardId,
    body: ScoreIn,
    state: StateDep,
    producer: ProducerDep,
    feed: FeedDep,
    coalescer: CoalescerDep,
    wait: Annotated[bool, Query(description="wait until the projection applied it")] = False,
    key: ApiKey = None,
    bearer: BearerToken = None,
) -> Response:
    """Publish one participant's score; 202 with its event id (200 with ranks if wait)."""
    if not telemetry.enabled():
        return await _submit(board, body, state, producer, feed, coalescer, wait, key, bearer)
    attributes: dict[str, str | bool] = {
        "http.route": ROUTE,
        "leaderboard.id": board,
        "leaderboard.wait": wait,
    }
    with telemetry.span("POST scores", kind=SpanKind.SERVER, attributes=attributes) as span:
        try:
            answer = await _submit(board, body, state, producer, feed, coalescer, wait, key, bearer)
        except ApiError as exc:
            if span is not None:
                span.set_attribute("http.response.status_code", exc.status_code)
            raise
        if span is not None:
            span.set_attribute("http.response.status_code", answer.status_code)
            span.set_attribute("leaderboard.event_id", orjson.loads(answer.body)["event_id"])
        return answer


async def submit_once(
    state: GatewayState,
    board: str,
    body: ScoreIn,
    wait: bool,
    key: str | None,
    bearer: HTTPAuthorizationCredentials | None = None,
) -> Response:
    """One submission, untraced, from a validated body (gateway/fastpath.py serves the plain
    calls through this, without the route's dependencies)."""
    services = state.require()
    return await _submit(
        board, body, state, services.producer, services.feed, services.coalescer, wait, key, bearer
    )


async def _submit(
    board: str,
    body: ScoreIn,
    state: GatewayState,
    producer: LeaderboardProducer,
    feed: RankFeed,
    coalescer: SubmitCoalescer,
    wait: bool,
    key: str | None,
    bearer: HTTPAuthorizationCredentials | None,
) -> Response:
    """The submission itself (traced or not by :func:`submit_score`)."""
    start = time.perf_counter()
    subject = state.keys.writer(key, bearer)
    if subject is not None and body.participant_id != subject:
        why = f"a player token for {subject!r} may not submit scores of {body.participant_id!r}"
        raise ApiError(403, why, headers=bearer_challenge("insufficient_scope", why))
    cfg = await state.board_cfg(board)
    if cfg.status is BoardStatus.CLOSED:
        raise ApiError(409, f"leaderboard {board!r} is closed")
    # the worker's window check, by the time that will rank the score (the edge's clock
    # stands in for the broker's on log-time boards)
    now = int(time.time() * 1000)
    at = body.timestamp if cfg.time_source is TimeSource.CLIENT and body.timestamp else now
    refused = rules.window_reason(cfg, at)
    if refused:
        raise ApiError(422, f"score refused: {refused}", code="refused")
    retry = state.submit_limiter.take(f"{board}\x00{body.participant_id}")
    if retry:
        raise ApiError(
            429,
            f"too many scores for {body.participant_id!r}: at most {state.options.submit_rate:g}/s",
            headers=retry_after(retry),
        )
    event_id = fresh_uuid()
    # the body was validated by its model (the entry's rules are the SDK's: ScoreEntryIn) and
    # the board id by its pattern; the coalescer (or the producer) checks the event's contract
    match = MatchResultSubmitted(
        event_id=event_id,
        match_id=body.match_id or event_id,
        leaderboard_id=board,
        occurred_at=body.timestamp if body.timestamp is not None else now,
        entries=(body.to_event(),),
    )
    loop = asyncio.get_running_loop()
    if layout_of(cfg) is None:
        # Concurrent submissions to the board share one record (gateway/coalescer.py); the
        # future ends when Kafka acknowledged that record, or fails after PUBLISH_TIMEOUT_S.
        delivered = coalescer.submit(match)
    else:  # sharded boards apply one record per submission
        delivered, on_delivery = delivery_future(loop)
        producer.submit(match, on_delivery=on_delivery)
        delivered = asyncio.ensure_future(asyncio.wait_for(delivered, PUBLISH_TIMEOUT_S))
    fut = feed.wait_for(event_id) if wait else None
    try:
        await delivered
    except (LeaderboardError, TimeoutError) as exc:
        if fut is not None:
            feed.forget(event_id, fut)
        why = str(exc) or f"not acknowledged by Kafka within {PUBLISH_TIMEOUT_S:g}s"
        raise ApiError(503, f"could not publish the score: {why}") from None
    state.metrics.submitted.inc()
    published = time.perf_counter()
    state.metrics.published.observe(published - start)
    if fut is None:
        # event ids are UUIDs: the answer is built without an encoder
        return json_response(b'{"event_id":"' + event_id.encode() + b'","status":"accepted"}', 202)
    timeout = state.options.wait_timeout_s
    # one timer, not asyncio.wait_for's task and callbacks: the feed resolves the future
    expiry = loop.call_later(timeout, _expire, fut)
    try:
        change = await fut
    except DeadLettered as exc:
        status = 409 if str(exc).startswith("duplicate event id") else 422
        raise ApiError(status, f"score {event_id} was refused: {exc}") from None
    except TimeoutError:
        raise ApiError(
            504,
            f"score {event_id} published but not applied within {timeout:g}s "
            "(it may still be applied, or was rejected to the dead-letter topic)",
        ) from None
    finally:
        expiry.cancel()
        feed.forget(event_id, fut)
    state.metrics.applied.observe(time.perf_counter() - published)
    return json_response(applied_json(event_id, change))


def _expire(fut: asyncio.Future[RankChange]) -> None:
    """End a ``wait=true`` submission's wait (its result did not come in time)."""
    if not fut.done():
        fut.set_exception(TimeoutError())
