"""The projector's chunked, pipelined apply: how a batch is cut into apply calls, that the cut
changes nothing in what is applied and published, and that a failed publish loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processors.workers import projector as projector_module
from processors.workers.projector import Projector, RawRecord, apply_chunks
from projections.memory import MemoryStore
from projections.store import SourceRecord
from streams.codec import SingleObjectCodec
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    RankChange,
    RankChanged,
    ScoreEntry,
    ScoresSubmitted,
    ScoreSubmission,
)
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.testing import RecordingPublisher, StaticConfigs

CODEC = SingleObjectCodec()
SETTINGS = Settings()
RANK_TOPIC = SETTINGS.topic(SETTINGS.rank_changes_topic)
AT = int(datetime(2026, 10, 10, tzinfo=UTC).timestamp() * 1000)
BOARDS = (LeaderboardConfigured("a"), LeaderboardConfigured("b"))


def _match(board: str, offset: int, n: int) -> SourceRecord:
    entries = tuple(ScoreEntry(f"p{offset}-{j}", j) for j in range(n))
    return SourceRecord(0, offset, MatchResultSubmitted(f"e{offset}", "m", board, AT, entries))


def _coalesced(board: str, offset: int, n: int) -> list[SourceRecord]:
    return [
        SourceRecord(0, offset, _match(board, offset * 100 + i, 1).event, index=i) for i in range(n)
    ]


def test_chunks_are_bounded_ordered_and_never_split_an_offset() -> None:
    a, b = BOARDS
    work = [
        (a, [_match("a", o, 3) for o in range(6)]),
        (b, _coalesced("b", 10, 5) + _coalesced("b", 11, 2) + _coalesced("b", 12, 4)),
    ]
    chunks = apply_chunks(work, 4)
    # in order, nothing lost or repeated
    for cfg, recs in work:
        got = [r for chunk in chunks for c, part in chunk if c is cfg for r in part]
        assert got == recs
    # a chunk holds max_entries and at most the rest of the record (offset) that crossed it
    sizes = [sum(len(r.event.entries) for _, part in chunk for r in part) for chunk in chunks]
    assert sizes == [6, 6, 6, 5, 6]
    # the submissions of one coalesced record stay together: they share the board's watermark
    for chunk in chunks:
        for cfg, part in chunk:
            assert part, "no empty slice"
            offsets = {r.offset for r in part}
            others = {r.offset for c2 in chunks if c2 is not chunk for c, p in c2 for r in p}
            assert cfg is a or not offsets & others


def test_small_and_empty_work_is_one_call() -> None:
    a, b = BOARDS
    assert apply_chunks([], 2000) == [[]]
    work = [(a, [_match("a", 0, 10)]), (b, _coalesced("b", 1, 10))]
    assert apply_chunks(work, 2000) == [work]


class Rig:
    """A projector on the in-memory store with a recording publisher; records at offsets 0…"""

    def __init__(self, publisher: RecordingPublisher | None = None) -> None:
        self.store = MemoryStore(grace_ms=SETTINGS.period_grace_ms)
        self.publisher = publisher or RecordingPublisher()
        self.projector = Projector(
            SETTINGS, self.store, StaticConfigs(BOARDS), CODEC, self.publisher
        )

    def changes(self) -> list[tuple[str, int, RankChange]]:
        return [
            (r.leaderboard_id, c.version, c)
            for r in self.publisher.events(RANK_TOPIC, RankChanged)
            for c in r.changes
        ]


def _batch() -> list[RawRecord]:
    """Coalesced single scores to board a, matches to board b, interleaved in the log."""
    out: list[RawRecord] = []
    for offset in range(12):
        if offset % 3:
            subs = tuple(
                ScoreSubmission(f"s{offset}-{i}", f"m{offset}-{i}", AT + i, f"q{i * 7 % 13}", i)
                for i in range(9)
            )
            board, event = "a", CODEC.encode(ScoresSubmitted("a", subs))
        else:
            entries = tuple(ScoreEntry(f"r{(offset + j) % 5}", offset * j) for j in range(4))
            board = "b"
            event = CODEC.encode(MatchResultSubmitted(f"x{offset}", "m", "b", AT, entries))
        part = partition_for(board, SETTINGS.partitions)
        out.append(RawRecord(part, offset, board.encode(), event, AT + offset))
    return out


async def test_a_chunked_apply_publishes_what_one_call_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = Rig()
    await whole.projector.process(_batch())
    monkeypatch.setattr(projector_module, "APPLY_CHUNK_ENTRIES", 5)
    chunked = Rig()
    stats = await chunked.projector.process(_batch())

    assert chunked.changes() == whole.changes()
    assert stats.entries_applied == len(whole.changes()) == 8 * 9 + 4 * 4
    assert chunked.publisher.flushes > whole.publisher.flushes == 1
    for board in ("a", "b"):
        assert await chunked.store.version(board) == await whole.store.version(board)
        assert not chunked.store._boards[board].outbox  # every chunk acknowledged


class FailingOnce(RecordingPublisher):
    """Kafka refuses the ``fail_at``-th flush once (an outage while a chunk is published)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def flush(self, timeout: float = 30.0) -> None:
        super().flush(timeout)
        if self.flushes == self.fail_at:
            raise OSError("broker unavailable")


async def test_a_failed_publish_is_repeated_from_the_outbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projector_module, "APPLY_CHUNK_ENTRIES", 5)
    reference = Rig()
    await reference.projector.process(_batch())
    rig = Rig(FailingOnce(fail_at=3))

    with pytest.raises(OSError, match="broker unavailable"):
        await rig.projector.process(_batch())
    assert rig.store._boards["a"].outbox or rig.store._boards["b"].outbox  # kept for the retry
    await rig.projector.process(_batch())  # the redelivered batch: applied records are no-ops

    # every change published at least once, in order per board, none new on the retry
    seen = rig.changes()
    assert sorted(set(seen), key=lambda x: x[:2]) == sorted(
        reference.changes(), key=lambda x: x[:2]
    )
    for board in ("a", "b"):
        versions = [v for b, v, *_ in seen if b == board]
        assert sorted(set(versions)) == list(range(1, max(versions) + 1))
        assert await rig.store.version(board) == await reference.store.version(board)
        assert not rig.store._boards[board].outbox
