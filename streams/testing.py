"""In-memory fakes of the ports (streams/ports.py), shipped with the package for tests.

Fakes, not mocks: they keep what they were given and answer like the real thing, so a test
asserts on outcomes (what was published, which records were dead-lettered) rather than on
calls. The in-memory ranking store is projections.memory.MemoryStore.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streams import rules
from streams.codec import Codec
from streams.errors import DecodeError
from streams.events import (
    CLOCK_KEY,
    Event,
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    is_clock_mark,
)
from streams.model import ModelBoard
from streams.partitioning import partition_for

#: Kafka's timestamp type of a broker's append time (librdkafka TIMESTAMP_LOG_APPEND_TIME).
LOG_APPEND_TIME = 2

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Published:
    """One event handed to ``RecordingPublisher.publish``."""

    topic: str
    key: str | bytes | None
    event: Event


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record handed to ``RecordingPublisher.send_dead_letter``."""

    source_topic: str
    partition: int
    offset: int
    key: str | bytes | None
    value: bytes | None
    reason: str
    #: the submission of a coalesced record this dead letter stands for (None: the record)
    index: int | None = None


@dataclass(slots=True)
class RecordingPublisher:
    """A Publisher that records everything in order; ``flush`` only counts."""

    published: list[Published] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    flushes: int = 0

    def publish(self, topic: str, key: str | bytes | None, event: Event) -> None:
        """Record ``event`` as sent to ``topic`` under ``key``."""
        self.published.append(Published(topic, key, event))

    def send_dead_letter(
        self,
        source_topic: str,
        partition: int,
        offset: int,
        key: str | bytes | None,
        value_bytes: bytes | None,
        reason: str,
        *,
        index: int | None = None,
    ) -> None:
        """Record a dead-lettered record with its reason."""
        self.dead_letters.append(
            DeadLetter(source_topic, partition, offset, key, value_bytes, reason, index)
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Nothing is in flight: count the call."""
        self.flushes += 1

    def events(self, topic: str, kind: type[E]) -> list[E]:
        """The events of type ``kind`` published to ``topic``, in order."""
        return [p.event for p in self.published if p.topic == topic and isinstance(p.event, kind)]


class StaticConfigs:
    """A ConfigLookup over a fixed set of board configurations (also callable: ``cfgs(board)``)."""

    def __init__(self, configs: Iterable[LeaderboardConfigured] = ()) -> None:
        self.boards: dict[str, LeaderboardConfigured] = {c.leaderboard_id: c for c in configs}
        self.syncs = 0

    @classmethod
    def of(cls, configs: Mapping[str, LeaderboardConfigured]) -> StaticConfigs:
        """A lookup over a board id → configuration mapping."""
        return cls(configs.values())

    def put(self, config: LeaderboardConfigured) -> None:
        """Add or replace a board's configuration (as a newer configuration record would)."""
        self.boards[config.leaderboard_id] = config

    def get(self, board: str) -> LeaderboardConfigured | None:
        """The board's configuration, or None if unknown."""
        return self.boards.get(board)

    __call__ = get

    def snapshot(self) -> dict[str, LeaderboardConfigured]:
        """Every board's configuration, by id."""
        return dict(self.boards)

    async def sync(self, wait_s: float = 10.0) -> bool:
        """Everything is known already: count the call."""
        self.syncs += 1
        return True


def fold_log(
    configs: Iterable[LeaderboardConfigured],
    messages: Iterable[Any],
    codec: Codec,
    partitions: int,
    grace_ms: int,
) -> dict[str, ModelBoard]:
    """The reference model of each board, fed the score topic as replay reads it.

    ``messages`` are Kafka messages (``key()``, ``value()``, ``partition()``, ``offset()``,
    ``timestamp()``). A board reads its own records (keyed by it, on its murmur2 partition)
    and the clock marks of that partition from its first record on (earlier ones found no
    state to move), each with the broker's append time; what cannot be decoded is skipped
    (the live worker dead-letters it).
    """
    models = {c.leaderboard_id: ModelBoard(c, grace_ms=grace_ms) for c in configs}
    homes = {board: partition_for(board, partitions) for board in models}
    rows: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    marks: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for msg in messages:
        kind, ms = msg.timestamp()
        log_time = int(ms) if kind == LOG_APPEND_TIME else None
        try:
            ev = codec.decode(msg.value() or b"")
        except DecodeError:
            continue
        if isinstance(ev, LeaderboardModerated):
            if ev.leaderboard_id in models:
                board = ev.leaderboard_id
                if msg.key() == board.encode() and msg.partition() == homes[board]:
                    rows[board].append((msg.offset(), (ev, log_time)))
            continue
        if not isinstance(ev, MatchResultSubmitted):
            continue
        if is_clock_mark(ev):
            if msg.key() == CLOCK_KEY and log_time is not None:
                marks[msg.partition()].append((msg.offset(), log_time))
        elif ev.leaderboard_id in models:
            board = ev.leaderboard_id
            if msg.key() == board.encode() and msg.partition() == homes[board]:
                rows[board].append((msg.offset(), (ev, log_time)))
    for board, model in models.items():
        own = rows.get(board, [])
        if not own:
            continue
        first = min(off for off, _ in own)
        cfg = model.config  # (the projector moves unsharded boards only)
        ticks = [
            (off, (None, at))
            for off, at in marks.get(homes[board], [])
            if off > first and rules.moved_by_mark(cfg, at, grace_ms)
        ]
        for off, (ev, at) in sorted(own + ticks, key=lambda r: r[0]):
            if ev is None:
                model.tick(off, at)
            elif isinstance(ev, LeaderboardModerated):
                model.moderate(off, ev, at)
            else:
                model.apply(off, ev, at)
    return models


__all__ = ["DeadLetter", "Published", "RecordingPublisher", "StaticConfigs", "fold_log"]
