"""Producer-edge validation: pydantic models turning untrusted input into events or one error."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from streams import rules
from streams.errors import ValidationError
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    ModerationAction,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)

__all__ = [
    "MODERATION_ACTIONS",
    "BoardConfigIn",
    "MatchResultIn",
    "ModerationIn",
    "ScoreEntryIn",
    "check_match",
    "format_errors",
    "parse_board",
    "parse_match",
    "parse_moderation",
    "parse_time",
]

#: Event times must fit year 0001..9999 so that every period key is well formed.
_MAX_MS = 253_402_300_799_999
_BOARD_ID = re.compile(rules.BOARD_ID_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ParticipantId = Annotated[str, Field(min_length=1, max_length=128)]
Metadata = dict[
    Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=1024)]
]


def parse_time(value: Any) -> int:
    """UTC milliseconds from an int (ms), or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError(f"expected ISO-8601 or epoch milliseconds (got {value!r})")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        ms = (dt - _EPOCH) // _ONE_MS
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            ms = int(text)
        else:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text else "?")
            except ValueError:
                raise ValueError(
                    f"expected ISO-8601 (e.g. 2025-01-31T12:00:00Z) or epoch "
                    f"milliseconds (got {value!r})"
                ) from None
            dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
            ms = (dt - _EPOCH) // _ONE_MS
    else:
        raise ValueError(f"expected ISO-8601 or epoch milliseconds (got {value!r})")
    if not 0 <= ms <= _MAX_MS:
        raise ValueError(f"must be between 1970 and 9999 in UTC milliseconds (got {ms})")
    return ms


_ONE_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - _EPOCH


def _check_board_id(value: str) -> str:
    if not _BOARD_ID.fullmatch(value):
        raise ValueError(f"must be 1 to 64 characters of [A-Za-z0-9_.-] (got {value!r})")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ScoreEntryIn(_Strict):
    """One participant's score as a producer sends it."""

    participant_id: ParticipantId
    score: StrictInt
    operator: Operator | None = None
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("participant_id")
    @classmethod
    def _participant(cls, value: str) -> str:
        reason = rules.participant_reason(value)
        if reason:
            raise ValueError(reason.removeprefix("participant_id "))
        return value

    @field_validator("score")
    @classmethod
    def _score(cls, value: int) -> int:
        if abs(value) > rules.MAX_EXACT:
            raise ValueError(
                f"must satisfy |score| < 2^53, i.e. between {-rules.MAX_EXACT} and "
                f"{rules.MAX_EXACT} (got {value})"
            )
        return value

    def to_event(self) -> ScoreEntry:
        """The ScoreEntry this input describes."""
        return ScoreEntry(self.participant_id, self.score, self.operator, dict(self.metadata))


class MatchResultIn(_Strict):
    """A match result as a producer sends it (one JSON line of ``produce --file``)."""

    leaderboard_id: str
    entries: list[ScoreEntryIn] = Field(min_length=1, max_length=10_000)
    match_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    event_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    occurred_at: int | None = None

    @field_validator("leaderboard_id")
    @classmethod
    def _board(cls, value: str) -> str:
        return _check_board_id(value)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _time(cls, value: Any) -> int | None:
        return None if value is None else parse_time(value)

    def to_event(self, now_ms: int | None = None) -> MatchResultSubmitted:
        """The MatchResultSubmitted event; missing ids are generated, missing time is now."""
        event_id = self.event_id or str(uuid.uuid4())
        occurred = self.occurred_at
        if occurred is None:
            occurred = now_ms if now_ms is not None else _now_ms()
        return MatchResultSubmitted(
            event_id=event_id,
            match_id=self.match_id or event_id,
            leaderboard_id=self.leaderboard_id,
            occurred_at=occurred,
            entries=tuple(e.to_event() for e in self.entries),
        )


class BoardConfigIn(_Strict):
    """A leaderboard configuration as an operator sends it."""

    leaderboard_id: str
    sort_order: SortOrder = SortOrder.DESC
    operator: Operator = Operator.BEST
    reset_period: ResetPeriod = ResetPeriod.NONE
    watch_top_n: int = Field(0, ge=0, le=10_000)
    starts_at: int | None = None
    ends_at: int | None = None
    metadata: Metadata = Field(default_factory=dict)
    status: BoardStatus = BoardStatus.ACTIVE
    closed_at: int | None = None
    time_source: TimeSource = TimeSource.LOG
    max_attempts: int | None = Field(None, ge=1, le=2**31 - 1)
    max_participants: int | None = Field(None, ge=1, le=2**31 - 1)
    retain_entries: bool = False
    reset_offset_ms: int = 0

    @field_validator("leaderboard_id")
    @classmethod
    def _board(cls, value: str) -> str:
        return _check_board_id(value)

    @field_validator("starts_at", "ends_at", "closed_at", mode="before")
    @classmethod
    def _time(cls, value: Any) -> int | None:
        return None if value is None else parse_time(value)

    @model_validator(mode="after")
    def _window(self) -> BoardConfigIn:
        if self.starts_at is not None and self.ends_at is not None:
            if self.ends_at <= self.starts_at:
                raise ValueError("ends_at must be after starts_at")
        bad_offset = rules.reset_offset_reason(self.reset_period, self.reset_offset_ms)
        if bad_offset:
            raise ValueError(bad_offset)
        limits = self.max_attempts, self.max_participants
        if "shards" in self.metadata and (self.retain_entries or limits != (None, None)):
            raise ValueError(
                "max_attempts, max_participants and retain_entries need a plain board "
                "(no shards metadata)"
            )
        return self

    def to_event(self, configured_at: int | None = None) -> LeaderboardConfigured:
        """The LeaderboardConfigured event (configured_at defaults to now)."""
        return LeaderboardConfigured(
            leaderboard_id=self.leaderboard_id,
            sort_order=self.sort_order,
            operator=self.operator,
            reset_period=self.reset_period,
            configured_at=configured_at if configured_at is not None else _now_ms(),
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            watch_top_n=self.watch_top_n,
            metadata=dict(self.metadata),
            status=self.status,
            closed_at=self.closed_at,
            time_source=self.time_source,
            max_attempts=self.max_attempts,
            max_participants=self.max_participants,
            retain_entries=self.retain_entries,
            reset_offset_ms=self.reset_offset_ms,
        )


def _now_ms() -> int:
    return (datetime.now(UTC) - _EPOCH) // _ONE_MS


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "input"


def format_errors(exc: pydantic.ValidationError) -> str:
    """One line naming every broken field: ``entries[0].score: must satisfy ... (got ...)``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field (not allowed in this record)"
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "too_short":
            msg = str(err["msg"]).replace(" after validation", "")
        elif kind == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")
        else:
            value = err.get("input")
            shown = repr(value)
            if len(shown) > 40:
                shown = shown[:37] + "..."
            msg = f"{err['msg']} (got {shown})"
        parts.append(f"{_loc(loc)}: {msg}")
    return "; ".join(parts)


#: The operator's verbs (CLI, HTTP) and the event action each writes.
MODERATION_ACTIONS = {
    "remove": ModerationAction.PARTICIPANT_REMOVED,
    "void": ModerationAction.MATCH_VOIDED,
    "ban": ModerationAction.PARTICIPANT_BANNED,
    "unban": ModerationAction.PARTICIPANT_UNBANNED,
}


class ModerationIn(_Strict):
    """A moderation as an operator asks for it: remove / ban / unban a participant, or void
    one match by its event id; always with a reason."""

    action: Annotated[str, Field(pattern="^(remove|void|ban|unban)$")]
    participant_id: ParticipantId | None = None
    event_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="void: the event id of the match to void"
    )
    period: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        None, description="remove: the period (default: the current one)"
    )
    reason: Annotated[str, Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _target(self) -> ModerationIn:
        if self.action == "void":
            if self.event_id is None or self.participant_id is not None:
                raise ValueError("void takes the match's event_id (and no participant_id)")
        elif self.participant_id is None or self.event_id is not None:
            raise ValueError(f"{self.action} takes a participant_id (and no event_id)")
        if self.period is not None and self.action != "remove":
            raise ValueError("period applies to remove only")
        if self.participant_id is not None:
            bad = rules.participant_reason(self.participant_id)
            if bad:
                raise ValueError(bad)
        return self

    def to_event(self, board: str, issued_by: str, now_ms: int) -> LeaderboardModerated:
        """The LeaderboardModerated event, with a fresh event id."""
        return LeaderboardModerated(
            event_id=f"mod-{uuid.uuid4()}",
            leaderboard_id=board,
            action=MODERATION_ACTIONS[self.action],
            issued_by=issued_by,
            reason=self.reason,
            occurred_at=now_ms,
            participant_id=self.participant_id,
            voided_event_id=self.event_id,
            period=self.period,
        )


def parse_moderation(
    board: str, data: Mapping[str, Any], issued_by: str, now_ms: int
) -> LeaderboardModerated:
    """Validate one moderation request; raise streams.errors.ValidationError with one line."""
    try:
        model = ModerationIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(format_errors(exc)) from None
    if not _BOARD_ID.fullmatch(board):
        raise ValidationError(
            f"leaderboard_id: must be 1 to 64 characters of [A-Za-z0-9_.-] (got {board!r})"
        )
    return model.to_event(board, issued_by, now_ms)


def parse_match(data: Mapping[str, Any], now_ms: int | None = None) -> MatchResultSubmitted:
    """Validate one match result; raise streams.errors.ValidationError with one readable line."""
    try:
        model = MatchResultIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(format_errors(exc)) from None
    return model.to_event(now_ms)


def parse_board(data: Mapping[str, Any], configured_at: int | None = None) -> LeaderboardConfigured:
    """Validate one board configuration; raise streams.errors.ValidationError with one line."""
    try:
        model = BoardConfigIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(format_errors(exc)) from None
    return model.to_event(configured_at)


def check_match(event: MatchResultSubmitted, now_ms: int | None = None) -> None:
    """Fast contract check of an already-built event (SDK path); raise ValidationError.

    With ``now_ms`` (the edge's clock) an event time too far in the future is refused too.
    """
    problems = []
    if not _BOARD_ID.fullmatch(event.leaderboard_id):
        problems.append(
            f"leaderboard_id: must be 1 to 64 characters of [A-Za-z0-9_.-] "
            f"(got {event.leaderboard_id!r})"
        )
    if not event.entries:
        problems.append("entries: at least one entry is required")
    if not event.event_id:
        problems.append("event_id: must not be empty")
    bad_time = rules.event_time_reason(event.occurred_at, now_ms)
    if bad_time:
        problems.append(f"occurred_at: {bad_time}")
    for i, entry in enumerate(event.entries):
        bad_id = rules.participant_reason(entry.participant_id)
        if bad_id:
            problems.append(
                f"entries[{i}].participant_id: {bad_id.removeprefix('participant_id ')}"
            )
        if abs(entry.score) > rules.MAX_EXACT:
            problems.append(
                f"entries[{i}].score: must satisfy |score| < 2^53, i.e. between "
                f"{-rules.MAX_EXACT} and {rules.MAX_EXACT} (got {entry.score})"
            )
    if problems:
        raise ValidationError("; ".join(problems))
