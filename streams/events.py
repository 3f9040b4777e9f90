"""Events that cross a topic: immutable, past-tense, one Avro schema each (see schemas/)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar


class SortOrder(StrEnum):
    """Ranking direction."""

    DESC = "desc"
    ASC = "asc"


class Operator(StrEnum):
    """How an entry combines with the stored score."""

    BEST = "best"
    SET = "set"
    INCR = "incr"
    DECR = "decr"


class ResetPeriod(StrEnum):
    """UTC calendar period by event time; the board restarts empty each period."""

    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class BoardStatus(StrEnum):
    """Lifecycle state of a leaderboard."""

    ACTIVE = "active"
    CLOSED = "closed"


class TimeSource(StrEnum):
    """Which time ranks a board's records (periods, window, ties)."""

    #: the broker's append time of the record: no producer controls it (the default)
    LOG = "log"
    #: the producer's claimed ``occurred_at``: for trusted backfills of past matches
    CLIENT = "client"


class NotificationKind(StrEnum):
    """What a ParticipantNotified tells."""

    OVERTAKEN = "overtaken"
    ENTERED_TOP_N = "entered_top_n"
    LEFT_TOP_N = "left_top_n"


@dataclass(frozen=True, slots=True)
class ScoreEntry:
    """One participant's score in a match."""

    participant_id: str
    score: int
    operator: Operator | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MatchResultSubmitted:
    """A game service reported a match result: one or more entries on one board."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.MatchResultSubmitted"

    event_id: str
    match_id: str
    leaderboard_id: str
    occurred_at: int
    entries: tuple[ScoreEntry, ...]

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return {
            "event_id": self.event_id,
            "match_id": self.match_id,
            "leaderboard_id": self.leaderboard_id,
            "occurred_at": self.occurred_at,
            "entries": [
                {
                    "participant_id": e.participant_id,
                    "score": e.score,
                    "operator": e.operator.value if e.operator else None,
                    "metadata": dict(e.metadata),
                }
                for e in self.entries
            ],
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> MatchResultSubmitted:
        """Build from a decoded Avro dict."""
        return cls(
            event_id=d["event_id"],
            match_id=d["match_id"],
            leaderboard_id=d["leaderboard_id"],
            occurred_at=_millis(d["occurred_at"]),
            # positional, operators looked up: decoded for every score the projector applies
            entries=tuple(
                ScoreEntry(
                    e["participant_id"],
                    e["score"],
                    _operator(e.get("operator")),
                    dict(md) if (md := e.get("metadata")) else {},
                )
                for e in d["entries"]
            ),
        )


#: Most submissions one ScoresSubmitted may carry: the index is five digits of the tie-break.
MAX_SUBMISSIONS = 10_000


@dataclass(frozen=True, slots=True)
class ScoreSubmission:
    """One participant's single score inside a coalesced ``ScoresSubmitted`` record.

    ``index`` is not on the wire (there it is the position in ``submissions``): it is set only
    where a record is rebuilt with gaps (replay from the audit, which holds applied ones only).
    """

    event_id: str
    match_id: str
    occurred_at: int
    participant_id: str
    score: int
    operator: Operator | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    index: int | None = None


@dataclass(frozen=True, slots=True)
class ScoresSubmitted:
    """Independent single-score submissions to one board, coalesced into one record.

    Each submission is applied as if it were its own one-entry match at position
    (offset, index): its own event id, time, refusal and result (see ``unpack``).
    """

    SCHEMA: ClassVar[str] = "io.leaderboard.events.ScoresSubmitted"

    leaderboard_id: str
    submissions: tuple[ScoreSubmission, ...]

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return {
            "leaderboard_id": self.leaderboard_id,
            "submissions": [
                {
                    "event_id": s.event_id,
                    "match_id": s.match_id,
                    "occurred_at": s.occurred_at,
                    "participant_id": s.participant_id,
                    "score": s.score,
                    "operator": s.operator.value if s.operator else None,
                    "metadata": dict(s.metadata),
                }
                for s in self.submissions
            ],
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ScoresSubmitted:
        """Build from a decoded Avro dict."""
        return cls(
            leaderboard_id=d["leaderboard_id"],
            submissions=tuple(
                ScoreSubmission(
                    s["event_id"],
                    s["match_id"],
                    at if type(at := s["occurred_at"]) is int else _millis(at),
                    s["participant_id"],
                    s["score"],
                    _operator(s.get("operator")),
                    dict(md) if (md := s.get("metadata")) else {},
                )
                for s in d["submissions"]
            ),
        )

    def unpack(self) -> list[tuple[int, MatchResultSubmitted]]:
        """Each submission as (its index, the one-entry match it stands for)."""
        return [
            (
                i if s.index is None else s.index,
                MatchResultSubmitted(
                    s.event_id,
                    s.match_id,
                    self.leaderboard_id,
                    s.occurred_at,
                    (ScoreEntry(s.participant_id, s.score, s.operator, s.metadata),),
                ),
            )
            for i, s in enumerate(self.submissions)
        ]


@dataclass(frozen=True, slots=True)
class LeaderboardConfigured:
    """A leaderboard was created or reconfigured (latest record per board wins)."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.LeaderboardConfigured"

    leaderboard_id: str
    sort_order: SortOrder = SortOrder.DESC
    operator: Operator = Operator.BEST
    reset_period: ResetPeriod = ResetPeriod.NONE
    configured_at: int = 0
    starts_at: int | None = None
    ends_at: int | None = None
    watch_top_n: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    status: BoardStatus = BoardStatus.ACTIVE
    closed_at: int | None = None
    time_source: TimeSource = TimeSource.LOG
    #: tournament limits per period (None: no limit); see rules.limit_reason
    max_attempts: int | None = None
    max_participants: int | None = None
    #: keep every applied entry per participant and period, so matches can be voided exactly
    retain_entries: bool = False
    #: each period instance starts this long after its UTC calendar start (rules.board_period)
    reset_offset_ms: int = 0

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        d = asdict(self)
        for k in ("sort_order", "operator", "reset_period", "status", "time_source"):
            d[k] = str(d[k])
        return d

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> LeaderboardConfigured:
        """Build from a decoded Avro dict."""
        return cls(
            leaderboard_id=d["leaderboard_id"],
            sort_order=SortOrder(d["sort_order"]),
            operator=Operator(d["operator"]),
            reset_period=ResetPeriod(d["reset_period"]),
            configured_at=_millis(d["configured_at"]),
            starts_at=_millis_opt(d.get("starts_at")),
            ends_at=_millis_opt(d.get("ends_at")),
            watch_top_n=int(d.get("watch_top_n") or 0),
            metadata=dict(d.get("metadata") or {}),
            status=BoardStatus(d.get("status") or "active"),
            closed_at=_millis_opt(d.get("closed_at")),
            time_source=TimeSource(d.get("time_source") or "log"),
            max_attempts=d.get("max_attempts"),
            max_participants=d.get("max_participants"),
            retain_entries=bool(d.get("retain_entries") or False),
            reset_offset_ms=int(d.get("reset_offset_ms") or 0),
        )


class ModerationAction(StrEnum):
    """What a LeaderboardModerated did."""

    PARTICIPANT_REMOVED = "participant_removed"
    MATCH_VOIDED = "match_voided"
    PARTICIPANT_BANNED = "participant_banned"
    PARTICIPANT_UNBANNED = "participant_unbanned"


@dataclass(frozen=True, slots=True)
class LeaderboardModerated:
    """An operator moderated a board (remove, void, ban, unban): a record of the scores topic,
    on the board's partition, so it applies in exact order with the scores."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.LeaderboardModerated"

    event_id: str
    leaderboard_id: str
    action: ModerationAction
    issued_by: str
    reason: str
    occurred_at: int
    participant_id: str | None = None
    voided_event_id: str | None = None
    period: str | None = None

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        d = asdict(self)
        d["action"] = self.action.value
        return d

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> LeaderboardModerated:
        """Build from a decoded Avro dict."""
        return cls(
            **{
                **d,
                "action": ModerationAction(d["action"]),
                "occurred_at": _millis(d["occurred_at"]),
            }
        )

    @property
    def target(self) -> str:
        """The participant or voided event id the action is about."""
        if self.action is ModerationAction.MATCH_VOIDED:
            return self.voided_event_id or ""
        return self.participant_id or ""


@dataclass(frozen=True, slots=True)
class RankChange:
    """One applied score entry and what it did to the standings."""

    version: int
    period: str
    participant_id: str
    old_rank: int | None
    new_rank: int
    old_score: int | None
    new_score: int
    submitted_score: int
    operator: str
    event_id: str
    match_id: str
    entry_index: int
    occurred_at: int
    source_partition: int
    source_offset: int
    #: the producer's claimed time when it is not ``occurred_at`` (the ranking time)
    claimed_at: int | None = None


@dataclass(frozen=True, slots=True)
class RankChanged:
    """Everything one applied batch did to one board (consecutive versions)."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.RankChanged"

    leaderboard_id: str
    version_from: int
    version_to: int
    changes: tuple[RankChange, ...]
    periods_ended: tuple[str, ...] = ()

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return {
            "leaderboard_id": self.leaderboard_id,
            "version_from": self.version_from,
            "version_to": self.version_to,
            "changes": [
                {
                    "version": c.version,
                    "period": c.period,
                    "participant_id": c.participant_id,
                    "old_rank": c.old_rank,
                    "new_rank": c.new_rank,
                    "old_score": c.old_score,
                    "new_score": c.new_score,
                    "submitted_score": c.submitted_score,
                    "operator": c.operator,
                    "event_id": c.event_id,
                    "match_id": c.match_id,
                    "entry_index": c.entry_index,
                    "occurred_at": c.occurred_at,
                    "source_partition": c.source_partition,
                    "source_offset": c.source_offset,
                    "claimed_at": c.claimed_at,
                }
                for c in self.changes
            ],
            "periods_ended": list(self.periods_ended),
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> RankChanged:
        """Build from a decoded Avro dict."""
        return cls(
            leaderboard_id=d["leaderboard_id"],
            version_from=d["version_from"],
            version_to=d["version_to"],
            # positional, in field order: a dict merge and keyword call per change cost as
            # much as fastavro's read of it (the audit sink and the gateway decode every one)
            changes=tuple(
                RankChange(
                    c["version"],
                    c["period"],
                    c["participant_id"],
                    c["old_rank"],
                    c["new_rank"],
                    c["old_score"],
                    c["new_score"],
                    c["submitted_score"],
                    c["operator"],
                    c["event_id"],
                    c["match_id"],
                    c["entry_index"],
                    at if type(at := c["occurred_at"]) is int else _millis(at),
                    c["source_partition"],
                    c["source_offset"],
                    None if (claimed := c.get("claimed_at")) is None else _millis(claimed),
                )
                for c in d["changes"]
            ),
            periods_ended=tuple(d.get("periods_ended") or ()),
        )


@dataclass(frozen=True, slots=True)
class ParticipantNotified:
    """A participant should hear about a change that concerns them."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.ParticipantNotified"

    leaderboard_id: str
    period: str
    participant_id: str
    kind: NotificationKind
    rank: int
    version: int
    by_participant_id: str | None = None
    top_n: int = 0
    omitted: int = 0

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return {
            "leaderboard_id": self.leaderboard_id,
            "period": self.period,
            "participant_id": self.participant_id,
            "kind": self.kind.value,
            "rank": self.rank,
            "version": self.version,
            "by_participant_id": self.by_participant_id,
            "top_n": self.top_n,
            "omitted": self.omitted,
        }

    def notice(self) -> dict[str, Any]:
        """This notification as one item of a ParticipantsNotified batch."""
        return {
            "period": self.period,
            "participant_id": self.participant_id,
            "kind": self.kind.value,
            "rank": self.rank,
            "by_participant_id": self.by_participant_id,
            "top_n": self.top_n,
            "omitted": self.omitted,
            "version": self.version,
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ParticipantNotified:
        """Build from a decoded Avro dict."""
        return cls(**{**d, "kind": NotificationKind(d["kind"])})


@dataclass(frozen=True, slots=True)
class ParticipantsNotified:
    """Every notice one applied batch produced for one board (one record, not one per notice)."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.ParticipantsNotified"

    leaderboard_id: str
    version_from: int
    version_to: int
    notices: tuple[ParticipantNotified, ...]

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return {
            "leaderboard_id": self.leaderboard_id,
            "version_from": self.version_from,
            "version_to": self.version_to,
            "notices": [n.notice() for n in self.notices],
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ParticipantsNotified:
        """Build from a decoded Avro dict."""
        board = d["leaderboard_id"]
        return cls(
            leaderboard_id=board,
            version_from=d["version_from"],
            version_to=d["version_to"],
            notices=tuple(
                ParticipantNotified(
                    leaderboard_id=board, **{**n, "kind": NotificationKind(n["kind"])}
                )
                for n in d["notices"]
            ),
        )


@dataclass(frozen=True, slots=True)
class PeriodClosed:
    """The final standings of one period were written to PostgreSQL."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.PeriodClosed"

    leaderboard_id: str
    period: str
    participant_count: int
    checksum: str
    version: int

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return asdict(self)

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> PeriodClosed:
        """Build from a decoded Avro dict."""
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ParticipantProfileUpdated:
    """A participant's profile was set (the whole profile: the latest record per participant
    wins, so the compacted ``participants`` topic keeps every participant's current profile)."""

    SCHEMA: ClassVar[str] = "io.leaderboard.events.ParticipantProfileUpdated"

    participant_id: str
    updated_at: int
    display_name: str | None = None
    avatar_url: str | None = None
    country: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    #: who set it: ``service`` (an API key or the CLI) or ``player`` (the participant's token)
    updated_by: str = "service"

    def to_avro(self) -> dict[str, Any]:
        """Plain dict in the shape of the Avro schema."""
        return {
            "participant_id": self.participant_id,
            "updated_at": self.updated_at,
            "display_name": self.display_name,
            "avatar_url": self.avatar_url,
            "country": self.country,
            "metadata": dict(self.metadata),
            "updated_by": self.updated_by,
        }

    def profile(self) -> dict[str, Any]:
        """The profile as reads return it: only the fields that are set."""
        out: dict[str, Any] = {}
        for name in ("display_name", "avatar_url", "country"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ParticipantProfileUpdated:
        """Build from a decoded Avro dict."""
        return cls(
            participant_id=d["participant_id"],
            updated_at=_millis(d["updated_at"]),
            display_name=d.get("display_name"),
            avatar_url=d.get("avatar_url"),
            country=d.get("country"),
            metadata=dict(d.get("metadata") or {}),
            updated_by=d.get("updated_by") or "service",
        )


#: Key and leaderboard id of clock marks on the score topic (no leaderboard id can hold "~").
CLOCK_KEY = b"~clock"
CLOCK_BOARD = "~clock"


def clock_mark(issued_by: str, issued_at: int) -> MatchResultSubmitted:
    """A clock mark: a match result of no board and no entry, keyed ``CLOCK_KEY``.

    Projectors write one every few seconds to each score partition they own. Nothing in it is
    trusted: its broker append time moves the time-bound boards of the partition, so periods
    and tournament windows end on time without score traffic, and replay, reading the same
    marks, ends them at the same versions. It is an ordinary ``MatchResultSubmitted`` so that
    every reader of the topic decodes it with the one published schema.
    """
    return MatchResultSubmitted(f"clock:{issued_by}:{issued_at}", "", CLOCK_BOARD, issued_at, ())


def is_clock_mark(event: MatchResultSubmitted) -> bool:
    """True if ``event`` is a clock mark (see ``clock_mark``)."""
    return event.leaderboard_id == CLOCK_BOARD


Event = (
    MatchResultSubmitted
    | ScoresSubmitted
    | LeaderboardConfigured
    | RankChanged
    | ParticipantNotified
    | ParticipantsNotified
    | PeriodClosed
    | ParticipantProfileUpdated
    | LeaderboardModerated
)

#: What the scores topic carries: match results (clock marks among them), coalesced single
#: submissions and moderations.
ScoreTopicEvent = MatchResultSubmitted | ScoresSubmitted | LeaderboardModerated

#: Full Avro name → event class.
EVENT_TYPES: dict[str, type[Any]] = {
    cls.SCHEMA: cls
    for cls in (
        MatchResultSubmitted,
        ScoresSubmitted,
        LeaderboardConfigured,
        RankChanged,
        ParticipantNotified,
        ParticipantsNotified,
        PeriodClosed,
        ParticipantProfileUpdated,
        LeaderboardModerated,
    )
}


def _millis(value: Any) -> int:
    """fastavro may decode timestamp-millis to datetime; keep exact UTC milliseconds."""
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - _EPOCH) // timedelta(milliseconds=1))


#: Operators by their wire value: a dict lookup, not ``Operator(value)`` (an Enum call costs
#: about 2 µs, paid per decoded entry).
_OPERATORS: dict[str, Operator] = {}


def _operator(value: str | None) -> Operator | None:
    """The operator an entry names (None when it names none, i.e. the board's)."""
    if not value:
        return None
    found = _OPERATORS.get(value)
    if found is None:
        found = _OPERATORS[value] = Operator(value)  # an unknown value raises ValueError here
    return found


def _millis_opt(value: Any) -> int | None:
    return None if value is None else _millis(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
