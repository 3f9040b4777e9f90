"""The projector on fakes: what it publishes and dead-letters for batches of raw records.

No service: the in-memory store (projections.memory) and the fakes of streams.testing stand in
for Redis, Kafka and the configuration topic; the Projector is built by its constructor.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processors.workers.projector import RECORD_CHUNK, Projector, RawRecord
from projections.memory import MemoryStore
from projections.store import SourceRecord
from streams.codec import SingleObjectCodec
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    ParticipantsNotified,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
)
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.testing import RecordingPublisher, StaticConfigs

CODEC = SingleObjectCodec()
SETTINGS = Settings()
RANK_TOPIC = SETTINGS.topic(SETTINGS.rank_changes_topic)
NOTIFY_TOPIC = SETTINGS.topic(SETTINGS.notifications_topic)
SCORES_TOPIC = SETTINGS.topic(SETTINGS.scores_topic)
OCT = int(datetime(2026, 10, 10, tzinfo=UTC).timestamp() * 1000)
NOV = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)  # past October's grace

MONTHLY = LeaderboardConfigured("b", reset_period=ResetPeriod.MONTHLY, watch_top_n=1)


class Rig:
    """A projector on a memory store, a recording publisher and static configurations."""

    def __init__(self, *configs: LeaderboardConfigured, publish: bool = True) -> None:
        self.store = MemoryStore(grace_ms=SETTINGS.period_grace_ms)
        self.publisher = RecordingPublisher()
        self.configs = StaticConfigs(configs)
        self.projector = Projector(
            SETTINGS,
            self.store,
            self.configs,
            CODEC,
            self.publisher if publish else None,
        )
        self.offset = 0

    def raw(
        self,
        event: MatchResultSubmitted | None,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        log_time: int | None = None,
    ) -> RawRecord:
        """The next record (encoded ``event``, or ``value`` as is), keyed and placed as a
        producer with Kafka's partitioner would, unless ``key`` / ``partition`` say otherwise."""
        data = CODEC.encode(event) if event is not None else value
        board = event.leaderboard_id if event is not None else "b"
        if key is None:
            key = board.encode()
        if partition is None:
            partition = partition_for(board, SETTINGS.partitions)
        record = RawRecord(partition, self.offset, key, data, log_time)
        self.offset += 1
        return record

    def rank_changed(self) -> list[RankChanged]:
        return self.publisher.events(RANK_TOPIC, RankChanged)

    def notified(self) -> list[ParticipantsNotified]:
        return self.publisher.events(NOTIFY_TOPIC, ParticipantsNotified)


def match(eid: str, at: int, *entries: tuple[str, int], board: str = "b") -> MatchResultSubmitted:
    return MatchResultSubmitted(eid, "m", board, at, tuple(ScoreEntry(p, s) for p, s in entries))


async def test_big_batches_are_chunked_with_contiguous_versions() -> None:
    rig = Rig(MONTHLY)
    sizes = [100] * 40 + [17]
    batch, k = [], 0
    for i, size in enumerate(sizes):  # every entry a new leader: entered + left notices
        entries = [(f"p{k + j}", k + j) for j in range(size)]
        batch.append(rig.raw(match(f"e{i}", OCT + i, *entries)))
        k += size
    batch.append(rig.raw(match("nov", NOV, ("q", 1))))  # ends October
    n = k + 1

    stats = await rig.projector.process(batch)

    ranks = rig.rank_changed()
    assert len(ranks) == 3 and stats.rank_changed_records == 3
    assert [c.version for r in ranks for c in r.changes] == list(range(1, n + 1))
    assert [(r.version_from, r.version_to) for r in ranks] == [
        (1, RECORD_CHUNK),
        (RECORD_CHUNK + 1, 2 * RECORD_CHUNK),
        (2 * RECORD_CHUNK + 1, n),
    ]
    assert [r.periods_ended for r in ranks] == [(), (), ("2026-10",)]
    assert stats.periods_ended == [("b", "2026-10")]
    notes = rig.notified()
    assert all(len(x.notices) <= RECORD_CHUNK for x in notes)
    assert sum(len(x.notices) for x in notes) == stats.notifications == 2 * k - 1 + 1
    for x in notes:
        assert (x.version_from, x.version_to) == (x.notices[0].version, x.notices[-1].version)
    assert stats.entries_applied == n and stats.dead_lettered == 0
    # applied in calls of about APPLY_CHUNK_ENTRIES entries, each published and acked on its own
    assert rig.publisher.flushes == 3  # 2,000 + 2,000 + 18 entries: one flush per apply call
    assert await rig.store.version("b") == n


async def test_a_refused_match_moves_no_time() -> None:
    """A match refused whole does not end October; the next valid one does, at version 1."""
    rig = Rig(MONTHLY)
    await rig.projector.process([rig.raw(match("e1", OCT, ("a", 7)))])
    stats = await rig.projector.process([rig.raw(match("e2", NOV, ("", 1), ("b", 2)))])
    assert all(not r.periods_ended for r in rig.rank_changed())
    assert (stats.dead_lettered, stats.entries_applied) == (1, 0)
    (dead,) = rig.publisher.dead_letters
    assert (dead.offset, dead.reason) == (1, "entries[0]: empty participant_id")
    await rig.projector.process([rig.raw(match("e3", NOV, ("b", 2)))])
    last = rig.rank_changed()[-1]
    assert last.periods_ended == ("2026-10",) and last.version_to == 2


async def test_bad_records_are_dead_lettered_with_their_reason() -> None:
    rig = Rig(LeaderboardConfigured("b"))
    batch = [
        rig.raw(None),  # tombstone
        rig.raw(None, value=b"not avro"),
        rig.raw(match("e1", OCT, ("a", 1), board="nowhere")),
        rig.raw(match("e2", OCT, ("", 1), ("b", 2**53), ("c", 3))),
        rig.raw(match("e2", OCT + 1, ("d", 4))),  # e2 was refused whole: its id is free
        rig.raw(match("e2", OCT + 2, ("f", 6))),  # now a duplicate event id
        rig.raw(match("e3", OCT + 3, ("e", 5))),
    ]
    stats = await rig.projector.process(batch)
    reasons = {d.offset: d.reason for d in rig.publisher.dead_letters}
    assert reasons[0] == "empty record (tombstone) on the score topic"
    assert reasons[1]  # the decoder's message
    assert reasons[2] == "unknown leaderboard 'nowhere'"
    assert reasons[3] == (
        "entries[0]: empty participant_id; "
        "entries[1]: score 9007199254740992 outside the exact range |score| < 2^53"
    )
    assert reasons[5] == "duplicate event id e2"
    assert set(reasons) == {0, 1, 2, 3, 5} and stats.dead_lettered == 5
    assert {d.source_topic for d in rig.publisher.dead_letters} == {SCORES_TOPIC}
    assert stats.entries_applied == 2
    assert [
        (e.participant_id, e.score)
        for e in await rig.store.standings("b", "all", MONTHLY.sort_order)
    ] == [
        ("e", 5),
        ("d", 4),
    ]


async def test_redelivered_batch_publishes_nothing_new() -> None:
    rig = Rig(LeaderboardConfigured("b"))
    batch = [rig.raw(match(f"e{i}", OCT + i, (f"p{i}", i))) for i in range(3)]
    await rig.projector.process(batch)
    published = len(rig.publisher.published)
    stats = await rig.projector.process(batch)
    assert stats.entries_applied == 0
    assert len(rig.publisher.published) == published
    assert await rig.store.version("b") == 3


async def test_replay_keeps_results_the_live_worker_has_not_published() -> None:
    """``ack_from``: outbox results at or above the live group's offset stay for it."""
    rig = Rig(LeaderboardConfigured("b"), publish=False)  # replay publishes nothing
    raws = [rig.raw(match(f"e{i}", OCT + i, (f"p{i}", i))) for i in range(4)]
    decoded = [(r, CODEC.decode_as(r.value or b"", MatchResultSubmitted)) for r in raws]
    await rig.projector.apply_decoded(decoded, ack_from={raws[0].partition: 2})
    (again,) = await rig.store.apply(
        [(LeaderboardConfigured("b"), [SourceRecord(r.partition, r.offset, e) for r, e in decoded])]
    )
    assert again.offsets == [2, 3]
    assert [c.version for c in again.changes] == [3, 4]


@pytest.mark.parametrize("known", [True, False])
async def test_configs_come_from_the_lookup(known: bool) -> None:
    rig = Rig(*([LeaderboardConfigured("b")] if known else []))
    stats = await rig.projector.process([rig.raw(match("e1", OCT, ("a", 1)))])
    assert stats.entries_applied == int(known)
    assert stats.dead_lettered == int(not known)


async def test_records_replay_could_not_find_are_dead_lettered() -> None:
    """A record keyed by another board, or placed by another partitioner, is refused."""
    rig = Rig(LeaderboardConfigured("b"))
    home = partition_for("b", SETTINGS.partitions)
    batch = [
        rig.raw(match("e1", OCT, ("a", 1)), key=b"other"),
        rig.raw(match("e2", OCT, ("a", 2)), partition=(home + 1) % SETTINGS.partitions),
        rig.raw(match("e3", OCT, ("a", 3))),
    ]
    stats = await rig.projector.process(batch)
    reasons = {d.offset: d.reason for d in rig.publisher.dead_letters}
    assert reasons[0] == "record key 'other' is not its leaderboard id 'b'"
    assert reasons[1].startswith(
        f"record of 'b' is on partition {(home + 1) % SETTINGS.partitions}"
    )
    assert 2 not in reasons
    assert stats.entries_applied == 1


async def test_a_time_ahead_of_the_broker_cannot_end_a_period() -> None:
    """13 h ahead of the broker's append time: refused, and October stays open."""
    rig = Rig(MONTHLY)
    broker = OCT + 1000
    batch = [
        rig.raw(match("e1", OCT, ("a", 1)), log_time=broker),
        rig.raw(match("e2", broker + 13 * 3_600_000, ("b", 2)), log_time=broker),
        rig.raw(match("e3", NOV, ("c", 3)), log_time=NOV),  # honest: November has come
    ]
    stats = await rig.projector.process(batch)
    reasons = {d.offset: d.reason for d in rig.publisher.dead_letters}
    assert reasons == {
        1: "event time is 46,800 s ahead of the log's time (at most 60 s of clock skew is accepted)"
    }
    assert stats.entries_applied == 2
