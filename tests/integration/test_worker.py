"""The projector worker through the real broker: standings, rank changes, notifications."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from processors.bootstrap import get_codec, make_client
from processors.kafka.producer import LeaderboardProducer, read_to_end
from projections.store import RankingStore
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    NotificationKind,
    Operator,
    ParticipantNotified,
    ParticipantsNotified,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)
from streams.settings import Settings
from tests.integration.conftest import Pipeline, wait_until
from tests.integration.conftest_cluster import cluster_settings  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def match(
    board: str, at: int, *entries: tuple[str, int] | tuple[str, int, Operator]
) -> MatchResultSubmitted:
    return MatchResultSubmitted(
        event_id=uuid.uuid4().hex,
        match_id="m",
        leaderboard_id=board,
        occurred_at=at,
        entries=tuple(ScoreEntry(e[0], e[1], e[2] if len(e) > 2 else None) for e in entries),  # type: ignore[misc]
    )


def standings(p: Pipeline, board: str, period: str, sort: SortOrder) -> list[tuple[str, int]]:
    async def read() -> list[tuple[str, int]]:
        client = make_client(p.settings)
        rows = await RankingStore(client).standings(board, period, sort)
        await client.aclose()
        return [(e.participant_id, e.score) for e in rows]

    return asyncio.run(read())


def version(p: Pipeline, board: str) -> int:
    async def read() -> int:
        client = make_client(p.settings)
        v = await RankingStore(client).version(board)
        await client.aclose()
        return v

    return asyncio.run(read())


SCRIPT_AT = ms(2026, 10, 15, 12)


@pytest.mark.parametrize(
    "sort,operator,expected",
    [
        (SortOrder.DESC, Operator.BEST, [("carol", 30), ("bob", 20), ("alice", 20), ("dave", 5)]),
        (SortOrder.ASC, Operator.BEST, [("dave", 5), ("alice", 10), ("bob", 20), ("carol", 30)]),
        (SortOrder.DESC, Operator.SET, [("carol", 30), ("bob", 20), ("alice", 20), ("dave", 5)]),
        (SortOrder.DESC, Operator.INCR, [("alice", 30), ("carol", 30), ("bob", 20), ("dave", 5)]),
        (
            SortOrder.ASC,
            Operator.DECR,
            [("alice", -30), ("carol", -30), ("bob", -20), ("dave", -5)],
        ),
    ],
)
@pytest.mark.parametrize("backend", ["single", "cluster"])
def test_scripted_sequence(
    request: pytest.FixtureRequest,
    pipeline: Pipeline,
    backend: str,
    sort: SortOrder,
    operator: Operator,
    expected: list[tuple[str, int]],
) -> None:
    """The real worker through the real broker, on a single Redis node and on the cluster."""
    if backend == "cluster":
        cluster: Settings = request.getfixturevalue("cluster_settings")
        pipeline.settings = pipeline.settings.model_copy(
            update={"redis_cluster": True, "redis_cluster_url": cluster.redis_cluster_url}
        )
        pipeline.env["LEADERBOARD_REDIS_CLUSTER"] = "1"
        pipeline.env["LEADERBOARD_REDIS_CLUSTER_URL"] = cluster.redis_cluster_url
    board = f"b-{uuid.uuid4().hex[:6]}"
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(LeaderboardConfigured(board, sort, operator, ResetPeriod.NONE))
        prod.flush()
        pipeline.start_worker()
        t = SCRIPT_AT
        # alice 10 then 20 (reaches 20 at t+3); bob 20 at t+2 (first to 20); carol 30; dave 5
        prod.submit(match(board, t, ("alice", 10)))
        prod.submit(match(board, t + 2, ("bob", 20)))
        prod.submit(match(board, t + 3, ("alice", 20), ("carol", 30)))
        prod.submit(match(board, t + 4, ("dave", 5)))
    got = wait_until(
        lambda: (rows := standings(pipeline, board, "all", sort)) and len(rows) == 4 and rows,
        timeout=90,
    )
    wait_until(lambda: version(pipeline, board) == 5, timeout=30)
    assert standings(pipeline, board, "all", sort) == expected, got


def test_month_boundary_and_rank_changes(pipeline: Pipeline) -> None:
    board = f"m-{uuid.uuid4().hex[:6]}"
    last_ms = ms(2026, 10, 31, 23, 59, 59) + 999
    first_ms = ms(2026, 11, 1)
    codec = get_codec(pipeline.settings)
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(
            LeaderboardConfigured(  # ranked by the claimed times: a backfill board
                board,
                SortOrder.DESC,
                Operator.BEST,
                ResetPeriod.MONTHLY,
                watch_top_n=2,
                time_source=TimeSource.CLIENT,
            )
        )
        prod.flush()
        pipeline.start_worker()
        prod.submit(match(board, last_ms - 10, ("a", 10), ("b", 20)))
        prod.submit(match(board, last_ms, ("c", 15)))
        prod.submit(match(board, first_ms, ("a", 99)))
        prod.submit(match(board, last_ms - 5, ("a", 50)))  # still October, within the grace
    wait_until(lambda: version(pipeline, board) == 5, timeout=90)
    assert standings(pipeline, board, "2026-10", SortOrder.DESC) == [
        ("a", 50),
        ("b", 20),
        ("c", 15),
    ]
    assert standings(pipeline, board, "2026-11", SortOrder.DESC) == [("a", 99)]

    def read_changes() -> list[RankChanged]:
        return [
            codec.decode_as(m.value(), RankChanged)
            for m in read_to_end(pipeline.settings, pipeline.settings.topic("rank-changes"))
            if m.key() == board.encode()
        ]

    # the version moves at the Redis apply; the batch's records are published right after
    changes = wait_until(
        lambda: (rcs := read_changes()) and sum(len(rc.changes) for rc in rcs) >= 5 and rcs,
        timeout=30,
    )
    flat = [c for rc in changes for c in rc.changes]
    assert [c.version for c in flat] == [1, 2, 3, 4, 5]
    assert [(c.participant_id, c.old_rank, c.new_rank, c.new_score) for c in flat] == [
        ("a", None, 1, 10),
        ("b", None, 1, 20),
        ("c", None, 2, 15),
        ("a", None, 1, 99),
        ("a", 3, 1, 50),
    ]
    assert [c.period for c in flat] == ["2026-10"] * 3 + ["2026-11", "2026-10"]

    def read_notes() -> list[ParticipantNotified]:
        return [
            n
            for m in read_to_end(pipeline.settings, pipeline.settings.topic("notifications"))
            if m.key() == board.encode()
            for n in codec.decode_as(m.value(), ParticipantsNotified).notices
        ]

    # the notifications are other records, on another topic: their ack may come a little later
    # than the rank changes' (bounded wait; every notice checked below must be among them)
    notes = wait_until(
        lambda: (
            (ns := read_notes()) and any(n.kind is NotificationKind.LEFT_TOP_N for n in ns) and ns
        ),
        timeout=30,
    )
    got = [
        (n.kind, n.participant_id, n.rank, n.by_participant_id)
        for n in notes
        if n.period == "2026-10"
    ]
    assert (NotificationKind.OVERTAKEN, "b", 2, "a") in got
    assert (NotificationKind.OVERTAKEN, "c", 3, "a") in got
    assert (NotificationKind.ENTERED_TOP_N, "a", 1, None) in got
    assert (NotificationKind.LEFT_TOP_N, "c", 3, "a") in got
    assert [n.version for n in notes] == sorted(n.version for n in notes)
