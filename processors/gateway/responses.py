"""The gateway's answers as OpenAPI schemas: one named model per response body.

The routes build plain dicts (one shape, built once, no second validation pass on the hot
path); these models describe those bodies in /openapi.json (``responses={code: {"model": …}}``)
and a test checks real answers against them. Fields a row may carry only sometimes (``metadata``,
``profile``) are optional; boards may add fields in later versions (``extra="allow"``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ETAG_HEADER",
    "WEBSOCKET_TAGS",
    "AppliedOut",
    "BoardOut",
    "BoardStateOut",
    "BoardsOut",
    "ErrorOut",
    "HealthOut",
    "HistoryOut",
    "ListedOut",
    "ModerationOut",
    "OpsDataOut",
    "ParticipantOut",
    "PlacementsOut",
    "ProfileOut",
    "ProfileSetOut",
    "RankingsOut",
    "ReadyOut",
    "SubmittedOut",
    "document_errors",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Out):
    """What went wrong."""

    code: str = Field(description="machine-readable: bad_request, not_found, conflict, …")
    message: str = Field(description="one line: what was wrong and what to do")


class ErrorOut(_Out):
    """Every 4xx/5xx answer of the gateway."""

    error: ErrorDetail


class HealthOut(_Out):
    """Liveness."""

    status: str = Field(description="always ok")


class ReadyOut(_Out):
    """Readiness of each dependency (503 with an ``error`` when one does not answer)."""

    status: str = Field(description="ready")
    checks: dict[str, str] = Field(description="kafka, redis, postgres: ok or failed: …")


class OpsDataOut(_Out):
    """Samples for the operations page (throughput, consumer lag, latency)."""

    points: list[dict[str, Any]] = Field(description="samples, oldest first")
    targets: list[dict[str, Any]] = Field(description="metric endpoints and whether they answered")


class BoardOut(_Out):
    """A board's configuration (the ``LeaderboardConfigured`` event's fields)."""

    leaderboard_id: str
    sort_order: str = Field(description="desc or asc")
    operator: str = Field(description="best, set, incr or decr")
    reset_period: str = Field(description="none, daily, weekly or monthly")
    status: str = Field(description="active or closed")


class BoardsOut(_Out):
    """Every known board."""

    leaderboards: list[BoardOut]


class BoardStateOut(BoardOut):
    """A board's configuration with its current version, period and participant count."""

    version: int
    period: str
    count: int


class ModerationOut(_Out):
    """A moderation written to the board's score log."""

    event_id: str
    status: str = Field(description="accepted")
    action: str = Field(description="participant_removed, match_voided, participant_banned, …")
    target: str = Field(description="the participant or the voided event id")
    issued_by: str = Field(description="who (a digest of the API key), for the audit")


class SubmittedOut(_Out):
    """A score on the log (202)."""

    event_id: str
    status: str = Field(description="accepted")


class AppliedOut(_Out):
    """A score applied by the projector (``wait=true``, 200)."""

    event_id: str
    status: str = Field(description="applied")
    participant_id: str
    period: str
    version: int
    rank: int
    previous_rank: int | None
    score: int
    previous_score: int | None


class Row(_Out):
    """One row of the standings."""

    rank: int = Field(description="1-based, unique")
    participant_id: str
    score: int
    metadata: dict[str, str] | None = Field(None, description="latest entry metadata, if any")
    profile: dict[str, Any] | None = Field(None, description="the participant's profile, if set")


class RankingsOut(_Out):
    """A page of the standings, read atomically with the board version."""

    leaderboard_id: str
    period: str
    version: int
    count: int = Field(description="participants in the period")
    offset: int
    entries: list[Row]
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= for the rows after this page; null on the last"
    )


class ListedOut(_Out):
    """The rows of listed participants ("me and my friends"), best first."""

    leaderboard_id: str
    period: str
    version: int
    count: int
    entries: list[Row]
    missing: list[str] = Field(description="listed ids not on the board")


class ParticipantOut(_Out):
    """One participant's rank and score with neighbours."""

    leaderboard_id: str
    period: str
    version: int
    count: int
    participant_id: str
    rank: int
    percentile: float = Field(description="share at or above this rank, in percent")
    score: int
    profile: dict[str, Any] | None = None
    above: list[Row]
    below: list[Row]


class Placement(_Out):
    """Where a participant finished in one closed period."""

    leaderboard_id: str
    period: str
    rank: int
    score: int
    participant_count: int
    percentile: float
    period_start: str
    closed_at: str


class PlacementsOut(_Out):
    """Placements in closed periods, newest first."""

    participant_id: str
    placements: list[Placement]


class HistoryRow(_Out):
    """One row of a closed period's final standings."""

    rank: int
    participant_id: str
    score: int


class HistoryOut(_Out):
    """Final standings of a closed period (PostgreSQL)."""

    leaderboard_id: str
    period: str
    period_start: str
    period_end: str
    participant_count: int
    checksum: str
    version: int
    closed_at: str
    offset: int
    entries: list[HistoryRow]


class ProfileOut(_Out):
    """A participant's current profile (only the fields that are set)."""

    participant_id: str
    profile: dict[str, Any]


class ProfileSetOut(ProfileOut):
    """A profile on the participants topic (202); the sinks worker projects it."""

    status: str = Field(description="accepted")


#: The ``ETag`` header of conditional reads.
ETAG_HEADER = {
    "ETag": {
        "description": 'W/"<board version>-<period>-p<profiles version>": send it back as'
        " If-None-Match for a 304 while nothing shown has changed",
        "schema": {"type": "string"},
    }
}


#: The WebSocket endpoints, which OpenAPI cannot describe as operations: their tag says how.
WEBSOCKET_TAGS = [
    {
        "name": "live",
        "description": "WebSocket `/v1/leaderboards/{board}/subscribe`: send one message within"
        ' 10 s, `{"type":"subscribe","mode":"top","n":100,"since_version":…}`,'
        ' `{"type":"subscribe","mode":"track","participant_id":…}` or'
        ' `{"type":"subscribe","mode":"around","participant_id":…,"n":5}`. The server sends a'
        " `snapshot` (rows with `metadata` and `profile`), then versioned `delta` messages"
        ' `{"type":"delta","version","period","changes":[…]}`, a fresh snapshot when a delta'
        " cannot apply, and a `ping` every 15 s (answer `pong`). Errors: an `error` message,"
        " then close 1008 (bad subscribe message), 4404 (unknown board), 4401 / 4403 (token)."
        " Full protocol: docs/gateway.md.",
    },
    {
        "name": "notifications",
        "description": "WebSocket `/v1/participants/{participant}/notifications?leaderboards=a,b`"
        " (an X-API-Key, or a player token of that participant; else close 4401 / 4403): a"
        " `subscribed` message, then one"
        ' `{"type":"notification","kind":"overtaken"|"entered_top_n"|"left_top_n",…}` per'
        " notice from the `notifications` topic. Full protocol: docs/gateway.md.",
    },
]


def document_errors(app: FastAPI) -> None:
    """Make /openapi.json say what the gateway answers on bad input: 400 with ``ErrorOut``
    (request validation is turned into 400 ``bad_request``, never FastAPI's 422 body), and
    list the WebSocket endpoints under their tags."""
    app.openapi_tags = [*(app.openapi_tags or []), *WEBSOCKET_TAGS]
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas.update(_error_schemas())
        error = {"$ref": "#/components/schemas/ErrorOut"}
        for ops in doc.get("paths", {}).values():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                if "HTTPValidationError" in str(responses.get("422", "")):
                    del responses["422"]
                responses.setdefault(
                    "400", {"description": "bad input (one line in error.message)"}
                )
                for code, answer in responses.items():
                    if code[0] in "45" and "content" not in answer:
                        answer["content"] = {"application/json": {"schema": error}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _error_schemas() -> dict[str, Any]:
    """ErrorOut and ErrorDetail as OpenAPI component schemas."""
    schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"ErrorOut": schema, **defs}
