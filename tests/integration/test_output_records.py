"""The projector's output records written straight from the apply script's rows are, on the
real topics, byte for byte the records its events path writes, and decode to those events."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from processors.bootstrap import get_codec, redis_at
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.workers.projector import Projector, RawRecord
from projections.store import RankingStore
from streams.events import (
    Event,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ParticipantsNotified,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    ScoresSubmitted,
    ScoreSubmission,
    SortOrder,
)
from streams.partitioning import partition_for
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.integration


class EventsOnly:
    """The real producer without ``publish_raw``: the projector publishes events (as before
    its direct writers), and they are kept to compare with what the topics hold."""

    def __init__(self, producer: LeaderboardProducer) -> None:
        self.producer = producer
        self.codec = producer.codec
        self.events: list[Event] = []

    def publish(self, topic: str, key: str | bytes | None, event: Event) -> None:
        self.events.append(event)
        self.producer.publish(topic, key, event)

    def send_dead_letter(self, *args: Any, **kwargs: Any) -> None:
        self.producer.send_dead_letter(*args, **kwargs)

    def flush(self, timeout: float = 30.0) -> None:
        self.producer.flush(timeout)


def _records(p: Pipeline, boards: list[LeaderboardConfigured]) -> list[RawRecord]:
    """Matches of 10 (one board's batch over ``RECORD_CHUNK`` changes), coalesced single
    scores with a refused one, unicode ids, claimed times, negative and huge scores."""
    codec = get_codec(p.settings)
    rng = random.Random(17)
    now = int(time.time() * 1000)
    events: list[MatchResultSubmitted | ScoresSubmitted] = []
    for i in range(260):
        cfg = boards[0] if i < 210 else boards[i % len(boards)]
        pids = rng.sample(range(400), 10)
        entries = tuple(
            ScoreEntry(f"p{j}-ü€𝄞" if j % 7 == 0 else f"p{j}", rng.randint(-(2**40), 2**40))
            for j in pids
        )
        events.append(MatchResultSubmitted(f"e{i}", f"m-名{i}", cfg.leaderboard_id, now, entries))
    for cfg in boards:
        subs = [
            ScoreSubmission(
                uuid.uuid4().hex,
                "m",
                now - 1000 * k,  # claimed earlier than the broker's time
                f"s{rng.randrange(300)}",
                2**53 if k == 3 else rng.randint(0, 10**9),  # k = 3: refused by the script
                Operator.SET if k == 5 else None,
            )
            for k in range(40)
        ]
        events.append(ScoresSubmitted(cfg.leaderboard_id, tuple(subs)))
    offsets: dict[int, int] = {}
    raws = []
    for ev in events:
        part = partition_for(ev.leaderboard_id, p.settings.partitions)
        offsets[part] = offsets.get(part, -1) + 1
        value = codec.encode(ev)
        raws.append(RawRecord(part, offsets[part], ev.leaderboard_id.encode(), value, now))
    return raws


async def _project(
    p: Pipeline,
    boards: list[LeaderboardConfigured],
    raws: Sequence[RawRecord],
    wrap: Callable[[LeaderboardProducer], Any],
) -> Any:
    client = redis_at(p.settings.redis_url)
    producer = LeaderboardProducer(p.settings)
    publisher = wrap(producer)
    configs = {c.leaderboard_id: c for c in boards}
    store = RankingStore(client, prefix=f"lb-{p.tag}")
    projector = Projector(p.settings, store, configs.get, get_codec(p.settings), publisher)
    try:
        for start in range(0, len(raws), 300):  # the first batch holds 2,100 changes of b0
            await projector.process(raws[start : start + 300])
        return publisher
    finally:
        producer.close(10)
        await client.aclose()


def _topic(p: Pipeline, name: str) -> list[tuple[int, bytes, bytes]]:
    """The topic's records by partition, each partition's in log order (a stable sort: the
    partitions of one read-back interleave at random)."""
    read = [
        (m.partition(), m.key(), m.value()) for m in read_to_end(p.settings, p.settings.topic(name))
    ]
    return sorted(read, key=lambda r: r[0])


def test_output_records_written_from_rows_are_the_events_records(
    pipeline_factory: Callable[[], Pipeline],
) -> None:
    direct, events = pipeline_factory(), pipeline_factory()
    tag = uuid.uuid4().hex[:6]
    boards = [
        LeaderboardConfigured(f"out-{tag}-0", SortOrder.DESC, Operator.INCR, watch_top_n=10),
        LeaderboardConfigured(f"out-{tag}-1", SortOrder.ASC, Operator.BEST, ResetPeriod.DAILY),
        LeaderboardConfigured(f"out-{tag}-2", SortOrder.DESC, Operator.BEST, watch_top_n=100),
    ]
    raws = _records(direct, boards)
    asyncio.run(_project(direct, boards, raws, lambda prod: prod))
    recorded = asyncio.run(_project(events, boards, raws, EventsOnly))

    codec = get_codec(direct.settings)
    for name, cls in (("rank-changes", RankChanged), ("notifications", ParticipantsNotified)):
        got, want = _topic(direct, name), _topic(events, name)
        assert got == want  # the same records, byte for byte, in the same order
        sent = [ev for ev in recorded.events if isinstance(ev, cls)]
        assert len(got) == len(sent) > len(boards)
        # each partition's records in the order published: they decode to the events sent
        for part in {pt for pt, _, _ in got}:
            on_part = [codec.decode(v) for pt, _, v in got if pt == part]
            keys = {cfg.leaderboard_id for cfg in boards}
            assert on_part == [
                ev
                for ev in sent
                if ev.leaderboard_id in keys
                and partition_for(ev.leaderboard_id, direct.settings.partitions) == part
            ]
    changes = [ev for ev in recorded.events if isinstance(ev, RankChanged)]
    big = [ev for ev in changes if ev.leaderboard_id == boards[0].leaderboard_id]
    assert max(len(ev.changes) for ev in big) == 2000  # a batch split at RECORD_CHUNK
    assert any(c.claimed_at is not None for ev in changes for c in ev.changes)
