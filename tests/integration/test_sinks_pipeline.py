"""The sinks worker through the real broker: audit rows, month-end snapshot, PostgreSQL outage."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
import redis.asyncio as aioredis

from processors.bootstrap import audit_writer, get_codec, migrate_database
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.workers.sinks import RawRecord, SinkProcessor
from projections.store import RankingStore
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    PeriodClosed,
    RankChange,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.partitioning import partition_for
from streams.settings import Settings
from tests.integration.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def match(board: str, at: int, *entries: tuple[str, int]) -> MatchResultSubmitted:
    return MatchResultSubmitted(
        uuid.uuid4().hex, "m", board, at, tuple(ScoreEntry(p, s) for p, s in entries)
    )


def live_checksum(settings: Settings, board: str, period: str) -> tuple[str, int]:
    async def read() -> tuple[str, int]:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await RankingStore(client).checksum(board, period, SortOrder.DESC)
        finally:
            await client.aclose()

    return asyncio.run(read())


def scalar(dsn: str, sql: str, *args: object) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, args).fetchone()
        return None if row is None else row[0]


def project(
    settings: Settings,
    cfg: LeaderboardConfigured,
    matches: list[MatchResultSubmitted],
    first_offset: int,
) -> int:
    """Run the real projection in-process; publish rank changes uncompressed; return entries."""
    from processors.workers.projector import Projector
    from processors.workers.projector import RawRecord as ScoreRecord

    codec = get_codec(settings)
    key = cfg.leaderboard_id.encode()
    part = partition_for(cfg.leaderboard_id, settings.partitions)

    async def run() -> int:
        client = aioredis.Redis.from_url(settings.redis_url)
        store = RankingStore(client, grace_ms=settings.period_grace_ms)
        # aiokafka (under Faust) may lack lz4: publish rank changes uncompressed here
        with LeaderboardProducer(settings, config={"compression.type": "none"}) as prod:
            proj = Projector(settings, store, lambda b: cfg, codec, prod)
            stats = await proj.process(
                [
                    ScoreRecord(part, first_offset + i, key, codec.encode(m))
                    for i, m in enumerate(matches)
                ]
            )
        await client.aclose()
        return stats.entries_applied

    return asyncio.run(run())


def test_month_boundary_snapshot_and_audit(pipeline: Pipeline) -> None:
    """A month boundary closes October with the live checksum; every entry is audited once."""
    s = pipeline.settings
    migrate_database(s.postgres_dsn)
    board = f"sink-{uuid.uuid4().hex[:8]}"
    cfg = LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST, ResetPeriod.MONTHLY)
    with LeaderboardProducer(s, config={"compression.type": "none"}) as prod:
        prod.configure(cfg)
    pipeline.start_worker("sinks")
    october = ms(2026, 10, 20)
    oct_matches = [
        match(board, october + i * 60_000, (f"p{i % 7}", (i * 37) % 101)) for i in range(40)
    ]
    entries = project(s, cfg, oct_matches, 0)
    at_boundary = live_checksum(s, board, "2026-10")
    assert at_boundary[1] == 7
    # a November event past the grace ends October
    late = [match(board, ms(2026, 11, 1) + s.period_grace_ms + 1, ("p0", 5), ("p9", 3))]
    entries += project(s, cfg, late, 40)
    assert entries == 42
    closed_sql = (
        "SELECT checksum FROM closed_periods WHERE leaderboard_id = %s AND period = '2026-10'"
    )
    closed = wait_until(lambda: scalar(s.postgres_dsn, closed_sql, board), timeout=90)
    assert closed == at_boundary[0]
    count_sql = "SELECT count(*) FROM score_audit WHERE leaderboard_id = %s"
    wait_until(lambda: scalar(s.postgres_dsn, count_sql, board) == entries, timeout=60)
    codec = get_codec(s)
    published = wait_until(
        lambda: [
            codec.decode_as(m.value(), PeriodClosed)
            for m in read_to_end(s, s.topic(s.periods_topic))
            if m.key() == board.encode()
        ],
        timeout=30,
    )
    assert [(p.period, p.checksum, p.participant_count) for p in published][:1] == [
        ("2026-10", at_boundary[0], 7)
    ]

    async def ttl() -> int:
        client = aioredis.Redis.from_url(s.redis_url)
        try:
            return int(await client.ttl(RankingStore(client).keys(board).zset("2026-10")))
        finally:
            await client.aclose()

    assert 0 < asyncio.run(ttl()) <= s.closed_period_retention_s
    out = subprocess.run(
        [sys.executable, "-m", "processors", "history", board, "--period", "2026-10"],
        capture_output=True,
        text=True,
        env={**os.environ, "LEADERBOARD_POSTGRES_DSN": s.postgres_dsn},
        check=True,
    )
    assert at_boundary[0] in out.stdout
    assert len([ln for ln in out.stdout.splitlines() if ln.strip()[:1].isdigit()]) == 7


class FakeProducer:
    """Records what would be published (fakes over mocks)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, object, object]] = []
        self.dead: list[tuple[str, str]] = []

    def publish(self, topic: str, key: object, event: object) -> None:
        self.published.append((topic, key, event))

    def send_dead_letter(self, topic: str, p: int, o: int, k: object, v: object, r: str) -> None:
        self.dead.append((topic, r))

    def flush(self, timeout: float = 30.0) -> None:
        return None


class Proxy:
    """A TCP proxy in front of PostgreSQL that can be cut (an outage others do not see)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.conns: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.conns:
            w.close()
        self.conns.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)
        self.conns += [writer, up_w]

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))


def changes(board: str, first: int, n: int, at: int) -> RankChanged:
    cs = tuple(
        RankChange(
            v, "2026-10", f"p{v % 50}", None, 1, None, v, v, "best", f"e{v}", "m", 0, at + v, 0, v
        )
        for v in range(first, first + n)
    )
    return RankChanged(board, first, first + n - 1, cs)


@pytest.mark.faults
async def test_postgres_outage_loses_and_duplicates_nothing(stack: Settings) -> None:
    """PostgreSQL unreachable for 20 s mid-stream: the sink retries, then catches up exactly."""
    migrate_database(stack.postgres_dsn)
    host, port = "127.0.0.1", stack.postgres_port
    proxy = Proxy(host, port)
    await proxy.start()
    dsn = f"postgresql://leaderboard:leaderboard@127.0.0.1:{proxy.port}/leaderboard"
    board = f"fault-{uuid.uuid4().hex[:8]}"
    codec = get_codec(stack)
    proc = SinkProcessor(
        stack,
        writer=audit_writer(dsn, connect_timeout=2),
        producer=FakeProducer(),  # type: ignore[arg-type]
        max_delay=2.0,
    )
    at = ms(2026, 10, 3)
    batches = [
        [
            RawRecord(
                0,
                i * 10 + j,
                board.encode(),
                codec.encode(changes(board, (i * 10 + j) * 20 + 1, 20, at)),
            )
            for j in range(10)
        ]
        for i in range(10)
    ]
    total = 10 * 10 * 20
    done = 0
    for i, batch in enumerate(batches):
        if i == 4:
            await proxy.stop()  # outage starts
            task = asyncio.create_task(proc.handle_rank_changes(batch))
            await asyncio.sleep(20)
            assert not task.done(), "the write must wait for PostgreSQL, not give up"
            proxy.port = proxy.port  # same port again
            await proxy.start()
            stats = await asyncio.wait_for(task, 30)
        else:
            stats = await proc.handle_rank_changes(batch)
        done += stats.inserted
        if i == 6:  # at-least-once: a batch is redelivered after the recovery
            done += (await proc.handle_rank_changes(batches[5])).inserted
    await proc.writer.close()
    await proxy.stop()
    assert done == total
    n = scalar(
        stack.postgres_dsn, "SELECT count(*) FROM score_audit WHERE leaderboard_id = %s", board
    )
    distinct = scalar(
        stack.postgres_dsn,
        "SELECT count(DISTINCT version) FROM score_audit WHERE leaderboard_id = %s",
        board,
    )
    assert (n, distinct) == (total, total)


async def test_undecodable_and_foreign_records_are_dead_lettered(stack: Settings) -> None:
    """Bad bytes and a wrong event type go to the dead-letter topic; the rest is written."""
    migrate_database(stack.postgres_dsn)
    board = f"dlq-{uuid.uuid4().hex[:8]}"
    codec = get_codec(stack)
    fake = FakeProducer()
    proc = SinkProcessor(stack, producer=fake)  # type: ignore[arg-type]
    good = codec.encode(changes(board, 1, 5, ms(2026, 10, 3)))
    foreign = codec.encode(LeaderboardConfigured(board))
    stats = await proc.handle_rank_changes(
        [
            RawRecord(0, 1, None, b"\x00garbage"),
            RawRecord(0, 2, None, good),
            RawRecord(0, 3, None, foreign),
            RawRecord(0, 4, None, None),
        ]
    )
    await proc.close()
    assert (stats.inserted, stats.dead_lettered) == (5, 3)
    assert [t for t, _ in fake.dead] == [stack.rank_changes_topic] * 3
    assert "unexpected event type LeaderboardConfigured" in fake.dead[1][1]


async def test_fast_audit_decode_stores_the_rows_of_the_codec_path(stack: Settings) -> None:
    """The worker's audit decode (sinks/audit_decode.py) and the codec's full decode store the
    same rows: one board through ``handle_rank_changes`` (current schema: the fast path; an
    older writer schema in the same batch: the codec path), the same events on a second board
    through ``AuditWriter.write``; every stored column is compared."""
    import io
    import json

    from fastavro import schemaless_writer

    from streams.codec import SCHEMA_DIR, SINGLE_OBJECT_MARKER

    migrate_database(stack.postgres_dsn)
    fast_board, full_board = (f"fast-{uuid.uuid4().hex[:8]}", f"full-{uuid.uuid4().hex[:8]}")
    codec = get_codec(stack)
    at = ms(2026, 10, 3)

    def events(board: str) -> list[RankChanged]:
        first = changes(board, 1, 30, at)
        mixed = tuple(
            RankChange(
                31 + i,
                "2026-10",
                f"q{i}",
                i or None,
                i + 1,
                None if i % 2 else -(2**62) + i,
                2**62 - i,
                i - 7,
                ("set", "incr", "decr", "best")[i % 4],
                str(uuid.UUID(int=i + 1)) if i % 3 else "not-a-uuid",
                "m" if i % 2 else str(uuid.UUID(int=i + 1)),
                i,
                at + i,
                i % 6,
                1000 + i,
                None if i % 2 else at - i,
            )
            for i in range(20)
        )
        return [first, RankChanged(board, 31, 50, mixed)]

    old = json.loads((SCHEMA_DIR / "history" / "RankChanged.v1.avsc").read_text())
    writer = codec.store.parse_writer(old, "test")
    legacy = RankChanged(
        fast_board,
        51,
        51,
        (RankChange(51, "2026-10", "z", None, 1, None, 9, 9, "best", "e51", "m", 0, at, 1, 51),),
    )
    body = io.BytesIO()
    schemaless_writer(body, writer.parsed, legacy.to_avro())
    values = [codec.encode(ev) for ev in events(fast_board)]
    values.append(SINGLE_OBJECT_MARKER + writer.fingerprint + body.getvalue())
    proc = SinkProcessor(stack, producer=FakeProducer())  # type: ignore[arg-type]
    stats = await proc.handle_rank_changes([RawRecord(0, i, None, v) for i, v in enumerate(values)])
    reference = [*events(full_board), RankChanged(full_board, 51, 51, legacy.changes)]
    assert await proc.writer.write(reference) == 51
    await proc.close()
    assert (stats.inserted, stats.dead_lettered) == (51, 0)
    with psycopg.connect(stack.postgres_dsn) as conn:
        stored = [
            conn.execute(
                "SELECT * FROM score_audit WHERE leaderboard_id = %s ORDER BY version", (board,)
            ).fetchall()
            for board in (fast_board, full_board)
        ]
    assert len(stored[0]) == 51
    assert [row[1:] for row in stored[0]] == [row[1:] for row in stored[1]]


async def test_registry_agent_upserts_and_feeds_period_close(stack: Settings) -> None:
    """Configs land in the registry; a restarted processor learns them from the table."""
    migrate_database(stack.postgres_dsn)
    board = f"reg-{uuid.uuid4().hex[:8]}"
    codec = get_codec(stack)
    cfg = LeaderboardConfigured(
        board, SortOrder.ASC, reset_period=ResetPeriod.DAILY, configured_at=5
    )
    proc = SinkProcessor(stack, producer=FakeProducer())  # type: ignore[arg-type]
    assert await proc.handle_configs([RawRecord(0, 0, board.encode(), codec.encode(cfg))]) == 1
    await proc.close()
    again = SinkProcessor(stack, producer=FakeProducer())  # type: ignore[arg-type]
    assert await again.load_registry() >= 1
    assert again.configs[board] == cfg
    await again.close()


async def test_close_period_is_repeatable(stack: Settings) -> None:
    """Closing twice writes once and publishes the stored checksum both times."""
    migrate_database(stack.postgres_dsn)
    board = f"cls-{uuid.uuid4().hex[:8]}"
    cfg = LeaderboardConfigured(board, SortOrder.DESC, reset_period=ResetPeriod.MONTHLY)
    client = aioredis.Redis.from_url(stack.redis_url)
    store = RankingStore(client, grace_ms=stack.period_grace_ms)
    codec = get_codec(stack)
    from processors.workers.projector import Projector
    from processors.workers.projector import RawRecord as ScoreRecord

    fake = FakeProducer()
    proj = Projector(stack, store, lambda b: cfg, codec, fake)  # type: ignore[arg-type]
    at = ms(2026, 9, 10)
    recs = [
        ScoreRecord(
            partition_for(board, stack.partitions),
            i,
            board.encode(),
            codec.encode(match(board, at + i, (f"q{i}", i * 10))),
        )
        for i in range(5)
    ]
    await proj.process(recs)
    proc = SinkProcessor(stack, store=store, producer=fake)  # type: ignore[arg-type]
    proc.configs[board] = cfg
    expected = await store.checksum(board, "2026-09", SortOrder.DESC)
    assert await proc.close_period(board, "2026-09", 5)
    assert not await proc.close_period(board, "2026-09", 5)
    closed = [e for t, _, e in fake.published if isinstance(e, PeriodClosed)]
    assert [(e.checksum, e.participant_count) for e in closed] == [expected, expected]
    await proc.close()
    await client.aclose()
