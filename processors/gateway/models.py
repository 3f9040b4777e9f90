"""Request models and parameter types of the gateway's HTTP and WebSocket API."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from streams import rules
from streams.events import BoardStatus, LeaderboardConfigured
from streams.validation import ScoreEntryIn, parse_time

__all__ = [
    "PERIOD",
    "BoardId",
    "BoardPatchIn",
    "PeriodQ",
    "ScoreIn",
    "SubscribeIn",
    "board_json",
    "now_ms",
]

PERIOD = r"^[0-9A-Za-z-]{1,32}$"

#: A leaderboard id in the path.
BoardId = Annotated[str, PathParam(pattern=rules.BOARD_ID_PATTERN, description="leaderboard id")]
#: An optional period key in the query.
PeriodQ = Annotated[
    str | None, Query(pattern=PERIOD, description="period key (default: the current one)")
]


class ScoreIn(ScoreEntryIn):
    """A score submitted over HTTP: one participant's entry plus optional time and match id."""

    timestamp: int | None = Field(
        None,
        description="claimed event time: epoch milliseconds or ISO-8601 (default: now); it "
        "ranks the score only on time_source=client boards, the broker's time ranks the others",
    )
    match_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _time(cls, value: Any) -> int | None:
        return None if value is None else parse_time(value)


#: Most participants one "me and my friends" read may list.
MAX_LISTED = 1000


class ParticipantsIn(BaseModel):
    """The participants of a list read ("me and my friends")."""

    model_config = ConfigDict(extra="forbid")

    participants: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=MAX_LISTED
    )


class BoardPatchIn(BaseModel):
    """Changes to a board: close it (final), change its watched top-N size."""

    model_config = ConfigDict(extra="forbid")

    status: BoardStatus | None = None
    watch_top_n: int | None = Field(None, ge=0, le=10_000)


class SubscribeIn(BaseModel):
    """The first WebSocket message: what to follow and from which version."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe"] = "subscribe"
    mode: Literal["top", "track", "around"] = "top"
    #: rows of the top, or (around) neighbours above and below the participant
    n: StrictInt = Field(100, ge=1, le=1000)
    participant_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    since_version: StrictInt | None = Field(None, ge=0)


def board_json(cfg: LeaderboardConfigured) -> dict[str, Any]:
    """The JSON form of a board configuration."""
    return cfg.to_avro()


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (configuration times)."""
    return int(time.time() * 1000)
