"""Ports: what the processors need from the outside world, as small structural Protocols.

Only what existing code calls (processors/workers/projector.py, processors/replay.py and the
readers in processors/). The Redis stores (projections/store.py, projections/sharded.py) and
the in-memory store (projections/memory.py) satisfy them; so do the fakes in streams/testing.py.

The store's value types (SourceRecord, BoardOutcome, Entry) live with the store, and streams/
imports nothing of ours outside streams/, so the store Protocols are generic in them:
``RankingWriter[SourceRecord, BoardOutcome]`` and ``RankingReader[Entry]`` (aliases of these
are in projections/memory.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, TypeVar

from streams.events import Event, LeaderboardConfigured, SortOrder

RecordT = TypeVar("RecordT", contravariant=True)
OutcomeT = TypeVar("OutcomeT")
EntryT = TypeVar("EntryT")


class RankingWriter(Protocol[RecordT, OutcomeT]):
    """The projection's write side: an idempotent batch apply and its outbox."""

    async def apply(
        self, batches: Sequence[tuple[LeaderboardConfigured, Sequence[RecordT]]]
    ) -> list[OutcomeT]:
        """Apply each board's records in log order; one outcome per (board, records) pair.

        A record at or below the board's watermark for its partition changes nothing and
        yields its stored result again until ``acknowledge`` drops it.
        """
        ...

    async def acknowledge(self, outcomes: Sequence[OutcomeT]) -> None:
        """Drop published results from the outbox."""
        ...

    async def watermark(self, board: str, partition: int) -> int:
        """Offset of the last record applied from ``partition`` (-1 if none)."""
        ...

    async def clear(self, board: str) -> int:
        """Delete everything of the board; returns how many keys (or parts) were dropped."""
        ...


class RankingRebuilder(RankingWriter[RecordT, OutcomeT], Protocol[RecordT, OutcomeT]):
    """A writer whose boards can be replaced atomically by a shadow rebuilt from the log."""

    async def swap_from(self, shadow: Self, board: str, partition: int) -> bool:
        """Replace ``board`` by the shadow's; False (nothing changed) while the shadow lags."""
        ...


class RankingReader(Protocol[EntryT]):
    """The projection's read side: standings, ranks and versions of a board's periods."""

    async def version(self, board: str) -> int:
        """The board's version (0 if it has no applied change)."""
        ...

    async def count(self, board: str, period: str) -> int:
        """Participants in one period's standings."""
        ...

    async def top(
        self, board: str, period: str, sort: SortOrder, *, limit: int = 10, offset: int = 0
    ) -> list[EntryT]:
        """Rows ``offset+1 .. offset+limit`` of the standings, best first."""
        ...

    async def rank(self, board: str, period: str, sort: SortOrder, pid: str) -> EntryT | None:
        """Rank and score of one participant, or None if not on the board."""
        ...

    async def around(
        self, board: str, period: str, sort: SortOrder, pid: str, k: int = 5
    ) -> list[EntryT]:
        """The participant with up to ``k`` neighbours above and below; [] if absent."""
        ...

    async def standings(
        self, board: str, period: str, sort: SortOrder, *, chunk: int = 10_000
    ) -> list[EntryT]:
        """The whole standings, best first."""
        ...

    async def checksum(self, board: str, period: str, sort: SortOrder) -> tuple[str, int]:
        """SHA-256 of the standings and their participant count."""
        ...

    async def periods(self, board: str) -> list[str]:
        """Every period of the board that has standings, sorted."""
        ...


class Publisher(Protocol):
    """What the projector sends to Kafka: output events, dead letters, and a flush."""

    def publish(self, topic: str, key: str | bytes | None, event: Event) -> None:
        """Encode ``event`` and send it to the full topic name ``topic`` under ``key``."""
        ...

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
        """Park an unprocessable record, bytes unchanged, with the reason.

        ``index``: the value is submission ``index`` of the coalesced record at ``offset``,
        re-encoded as its own one-entry match.
        """
        ...

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything sent is delivered (raise if any was lost)."""
        ...


class ConfigLookup(Protocol):
    """Board configurations by id, with a way to catch up on recent ones."""

    def get(self, board: str) -> LeaderboardConfigured | None:
        """The board's latest configuration, or None if unknown (so far)."""
        ...

    async def sync(self, wait_s: float = 10.0) -> bool:
        """Wait until every configuration present now is known; False on time-out."""
        ...

    def snapshot(self) -> dict[str, LeaderboardConfigured]:
        """Every known board's configuration, by id."""
        ...


__all__ = [
    "ConfigLookup",
    "EntryT",
    "OutcomeT",
    "Publisher",
    "RankingReader",
    "RankingRebuilder",
    "RankingWriter",
    "RecordT",
]
