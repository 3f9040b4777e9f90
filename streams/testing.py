"""In-memory fakes of the ports (streams/ports.py), shipped with the package for tests.

Fakes, not mocks: they keep what they were given and answer like the real thing, so a test
asserts on outcomes (what was published, which records were dead-lettered) rather than on
calls. The in-memory ranking store is projections.memory.MemoryStore.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from streams.events import Event, LeaderboardConfigured

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
    ) -> None:
        """Record a dead-lettered record with its reason."""
        self.dead_letters.append(
            DeadLetter(source_topic, partition, offset, key, value_bytes, reason)
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

    async def sync(self, wait_s: float = 10.0) -> bool:
        """Everything is known already: count the call."""
        self.syncs += 1
        return True


__all__ = ["DeadLetter", "Published", "RecordingPublisher", "StaticConfigs"]
