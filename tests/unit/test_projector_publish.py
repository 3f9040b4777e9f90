"""The projector's output records: chunked below Kafka's size limit, versions contiguous."""

from __future__ import annotations

from typing import Any

from processors.workers.projector import RECORD_CHUNK, BatchStats, Projector
from projections.store import BoardOutcome
from streams.events import (
    NotificationKind,
    ParticipantNotified,
    ParticipantsNotified,
    RankChange,
    RankChanged,
)
from streams.settings import Settings


class FakeProducer:
    """Collects what would be published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def publish(self, topic: str, key: str, event: Any) -> None:
        self.sent.append((topic, key, event))


def change(v: int) -> RankChange:
    return RankChange(v, "all", f"p{v}", None, 1, None, v, v, "best", "e", "m", 0, 0, 0, v)


def test_big_batches_are_chunked_with_contiguous_versions() -> None:
    n = RECORD_CHUNK * 2 + 17
    out = BoardOutcome("b", changes=[change(v) for v in range(1, n + 1)])
    out.periods_ended = [("2026-10", n)]
    out.notifications = [
        ParticipantNotified("b", "all", f"q{i}", NotificationKind.OVERTAKEN, 2, i + 1)
        for i in range(RECORD_CHUNK + 1)
    ]
    producer = FakeProducer()
    proj = Projector.__new__(Projector)
    proj.producer = producer  # type: ignore[assignment]
    proj.rank_topic, proj.notify_topic = "rank-changes", "notifications"
    proj.settings = Settings()
    stats = BatchStats()
    proj._publish([out], {}, stats)

    ranks = [e for t, _, e in producer.sent if t == "rank-changes"]
    assert all(isinstance(r, RankChanged) for r in ranks)
    assert len(ranks) == 3
    assert [c.version for r in ranks for c in r.changes] == list(range(1, n + 1))
    assert [(r.version_from, r.version_to) for r in ranks] == [
        (1, RECORD_CHUNK),
        (RECORD_CHUNK + 1, 2 * RECORD_CHUNK),
        (2 * RECORD_CHUNK + 1, n),
    ]
    assert [r.periods_ended for r in ranks] == [(), (), ("2026-10",)]
    notes = [e for t, _, e in producer.sent if t == "notifications"]
    assert all(isinstance(x, ParticipantsNotified) for x in notes)
    assert sum(len(x.notices) for x in notes) == RECORD_CHUNK + 1
    assert stats.entries_applied == n and stats.rank_changed_records == 3


def test_period_end_without_changes_still_published() -> None:
    out = BoardOutcome("b")
    out.periods_ended = [("2026-10", 7)]
    producer = FakeProducer()
    proj = Projector.__new__(Projector)
    proj.producer = producer  # type: ignore[assignment]
    proj.rank_topic, proj.notify_topic = "rank-changes", "notifications"
    proj._publish([out], {}, BatchStats())
    (rec,) = [e for _, _, e in producer.sent]
    assert rec.periods_ended == ("2026-10",) and rec.version_from == rec.version_to == 7
