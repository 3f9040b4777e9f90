"""Random and adversarial records through the real projector and sinks worker (hypothesis).

Extreme and future times, times in seconds, bad and hidden-character ids, out-of-range scores,
incr overflows, duplicate event ids, wrong keys and partitions: whatever arrives, the workers
never stall, the live standings equal the pure model of the log as replay reads it, every
rejected record is dead-lettered exactly once, and the audit holds every applied entry once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.bootstrap import get_codec
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import replay_board
from projections.store import RankingStore
from streams import rules
from streams.events import (
    CLOCK_KEY,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.model import ModelBoard
from streams.partitioning import partition_for
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration

HOUR = 3_600_000
NOW = int(time.time() * 1000)
RECENT = st.integers(NOW - 2 * HOUR, NOW)
TIMES = st.one_of(
    RECENT,
    RECENT,
    RECENT,
    RECENT,
    st.integers(NOW - 30 * 24 * HOUR, NOW),  # backfills: late events, the dedup horizon
    st.sampled_from(
        [
            NOW + 13 * HOUR,  # far ahead of the broker's time
            NOW // 1000,  # seconds, not milliseconds
            253_402_214_400_000,  # 9999-12-31
            -5,
            rules.MIN_EVENT_MS,
        ]
    ),
)
GOOD = ["ann", "bob", "cy", "dee", "team/eve", "zoë"]
PIDS = st.sampled_from(GOOD * 15 + ["", "x" * 129, "adm\u200bin", "tab\tid", "e\u0301"])
SMALL = st.integers(-1000, 1000)
SCORES = st.one_of(SMALL, SMALL, SMALL, SMALL, st.sampled_from([2**53 - 2, 2**53, 2**62]))
ENTRY = st.builds(
    ScoreEntry, PIDS, SCORES, st.sampled_from([None, None, Operator.INCR, Operator.SET])
)


@dataclass(frozen=True)
class Sent:
    """One record as produced: the event, and how it was keyed and placed."""

    event: MatchResultSubmitted
    key: str
    wrong_partition: bool


def records(board: str) -> st.SearchStrategy[list[Sent]]:
    one = st.builds(
        Sent,
        st.builds(
            MatchResultSubmitted,
            st.sampled_from([f"e{i}" for i in range(30)]),  # some duplicates
            st.just("m"),
            st.just(board),
            TIMES,
            st.lists(ENTRY, min_size=1, max_size=4).map(tuple),
        ),
        st.sampled_from([board] * 9 + ["another-board"]),
        st.sampled_from([False] * 9 + [True]),
    )
    return st.lists(one, min_size=1, max_size=25)


CONFIGS = st.builds(
    lambda sort, op, period: (sort, op, period),
    st.sampled_from(list(SortOrder)),
    st.sampled_from([Operator.BEST, Operator.INCR, Operator.SET]),
    st.sampled_from([ResetPeriod.NONE, ResetPeriod.DAILY, ResetPeriod.MONTHLY]),
)


async def _live(p: Pipeline, cfg: LeaderboardConfigured) -> tuple[int, dict[str, list]]:
    client = aioredis.Redis.from_url(p.settings.redis_url)
    try:
        store = RankingStore(client)
        rows = {
            period: [
                (e.rank, e.participant_id, e.score)
                for e in await store.standings(cfg.leaderboard_id, period, cfg.sort_order)
            ]
            for period in await store.periods(cfg.leaderboard_id)
        }
        return await store.version(cfg.leaderboard_id), rows
    finally:
        await client.aclose()


def _audit_rows(p: Pipeline, board: str) -> int:
    with psycopg.connect(p.settings.postgres_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM score_audit WHERE leaderboard_id = %s", (board,)
        ).fetchone()
    return int(row[0]) if row else 0


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), shape=CONFIGS)
def test_adversarial_records_never_stall_and_match_the_model(
    pipeline: Pipeline, data: st.DataObject, shape: tuple[SortOrder, Operator, ResetPeriod]
) -> None:
    p = pipeline
    if not p.procs:
        p.start_worker()
        p.start_worker("sinks")
    sort, op, period = shape
    board = f"adv-{uuid.uuid4().hex[:8]}"
    cfg = LeaderboardConfigured(board, sort, op, period)
    sent = data.draw(records(board))
    codec = get_codec(p.settings)
    scores = p.settings.topic("scores")
    n = p.settings.partitions
    with LeaderboardProducer(p.settings) as prod:
        prod.configure(cfg)
        prod.flush()
        for s in sent:
            home = partition_for(s.key, n)
            prod.publish_raw(
                scores,
                s.key,
                codec.encode(s.event),
                partition=(home + 1) % n if s.wrong_partition else None,
            )
        prod.flush()

    # the reference: the log as replay reads it (the board's key, on its partition, and the
    # clock marks there: the projectors write them every few seconds)
    log = read_to_end(p.settings, scores)
    mine = [
        m
        for m in log
        if m.key() != CLOCK_KEY
        and codec.decode_as(m.value() or b"", MatchResultSubmitted).leaderboard_id == board
    ]
    assert len(mine) == len(sent)
    home = partition_for(board, n)
    # marks from the board's first record on (earlier ones found no state to move)
    first = min((m.offset() for m in mine if m.partition() == home), default=None)
    marks = [
        m
        for m in log
        if m.key() == CLOCK_KEY
        and m.partition() == home
        and first is not None
        and m.offset() > first
    ]
    model = ModelBoard(cfg, grace_ms=p.settings.period_grace_ms)
    rejected: set[tuple[int, int]] = set()
    for m in sorted(mine + marks, key=lambda m: (m.partition(), m.offset())):
        ev = codec.decode_as(m.value() or b"", MatchResultSubmitted)
        if m.key() == CLOCK_KEY:
            at = m.timestamp()[1]
            if rules.moved_by_mark(cfg, at, p.settings.period_grace_ms):
                model.tick(m.offset(), at)
            continue
        placed = m.key() == board.encode() and m.partition() == home
        why = model.apply(m.offset(), ev, m.timestamp()[1]) if placed else ["misplaced"]
        if why:
            rejected.add((m.partition(), m.offset()))
    want = (model.version, {k: model.standings(k) for k in model.scores})

    # every rejected record dead-lettered exactly once, with a reason
    dlq = p.settings.dlq("scores")

    def parked() -> list[tuple[int, int]]:
        out = []
        for msg in read_to_end(p.settings, dlq):
            h = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
            pos = (int(h["source.partition"]), int(h["source.offset"]))
            if pos in {(m.partition(), m.offset()) for m in mine}:
                assert h["reason"], h
                out.append(pos)
        return out

    wait_until(lambda: len(parked()) >= len(rejected), 90)
    wait_until(lambda: asyncio.run(_live(p, cfg))[0] >= want[0], 90)
    got = parked()
    assert sorted(got) == sorted(rejected), "each rejected record parked once, nothing else"
    assert asyncio.run(_live(p, cfg)) == want
    wait_until(lambda: _audit_rows(p, board) >= model.version, 90)
    assert _audit_rows(p, board) == model.version
    assert all(proc.poll() is None for proc in p.procs), "a worker died"
    # and the operator's check: rebuilt from the log and from the audit, the board is live's
    for source in ("kafka", "postgres"):
        report = asyncio.run(replay_board(p.settings, cfg, source=source, verify=True))
        assert report.verified and report.version == model.version, (source, report.diffs)
