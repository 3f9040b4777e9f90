"""PostgreSQL sinks against the real database: migrations, audit COPY, snapshots, history."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from processors.bootstrap import audit_writer, migrate_database
from sinks import history, registry, snapshots
from sinks.migrate import MIGRATIONS_DIR
from streams import rules
from streams.events import (
    LeaderboardConfigured,
    RankChange,
    RankChanged,
    ResetPeriod,
    SortOrder,
)
from streams.settings import Settings

pytestmark = pytest.mark.integration


def ms(year: int, month: int, day: int = 1, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def change(version: int, occurred_at: int, *, pid: str = "p", offset: int = 0) -> RankChange:
    return RankChange(
        version=version,
        period=rules.period_key(ResetPeriod.MONTHLY, occurred_at),
        participant_id=pid,
        old_rank=None if version == 1 else 1,
        new_rank=1,
        old_score=None if version == 1 else version - 1,
        new_score=version,
        submitted_score=version,
        operator="best",
        event_id=f"e{version}",
        match_id=f"m{version}",
        entry_index=0,
        occurred_at=occurred_at,
        source_partition=0,
        source_offset=offset or version,
    )


def record(board: str, changes: list[RankChange]) -> RankChanged:
    return RankChanged(board, changes[0].version, changes[-1].version, tuple(changes))


@pytest.fixture(scope="module")
def dsn(stack: Settings) -> str:
    migrate_database(stack.postgres_dsn)
    return stack.postgres_dsn


@pytest.fixture
def board() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def far_year(dsn: str) -> Iterator[int]:
    """A year no one else writes to, so partition creation is observable; dropped after."""
    year = random.randint(2300, 2900)
    yield year
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("audit_entries", "period_standings"):
            for m in range(1, 13):
                conn.execute(f"DROP TABLE IF EXISTS {table}_y{year}m{m:02d}")
            conn.execute(f"DROP TABLE IF EXISTS {table}_y{year + 1}m01")


def audit_partitions(conn: psycopg.Connection, prefix: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_entries'::regclass AND c.relname LIKE %s",
        (prefix + "%",),
    ).fetchall()
    return {r[0] for r in rows}


def test_migrate_is_idempotent(dsn: str) -> None:
    assert migrate_database(dsn) == []
    assert migrate_database(dsn) == []


def test_migrate_concurrent_callers_on_fresh_schema(dsn: str) -> None:
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    scoped = f"{dsn}?options=-csearch_path%3D{schema}"
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate_database(scoped))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        # one caller applies every migration, the others find them applied
        total = len(list(MIGRATIONS_DIR.glob("*.sql")))
        assert sorted(len(r) for r in results) == [0, 0, 0, total]
        with psycopg.connect(scoped) as conn:
            n = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
            assert n == (total,)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_audit_partitions_for_every_month_including_new_month_mid_run(
    dsn: str, board: str, far_year: int
) -> None:
    async with audit_writer(dsn) as writer:
        first = [change(v, ms(far_year, 3, 1 + v)) for v in range(1, 11)]
        assert await writer.write([record(board, first)]) == 10
        # a new month appears mid-run, spanning two months within one batch
        second = [change(10 + v, ms(far_year, 4 + v % 2, 10)) for v in range(1, 11)]
        assert await writer.write([record(board, second)]) == 10
    with psycopg.connect(dsn) as conn:
        names = audit_partitions(conn, f"audit_entries_y{far_year}")
        assert {f"audit_entries_y{far_year}m03", f"audit_entries_y{far_year}m04"} <= names
        assert f"audit_entries_y{far_year}m05" in names
        in_default = conn.execute(
            "SELECT count(*) FROM audit_entries_default a JOIN audit_boards b "
            "ON b.id = a.board_id WHERE b.name = %s",
            (board,),
        ).fetchone()
        assert in_default == (0,)
        per_part = dict(
            conn.execute(
                "SELECT a.tableoid::regclass::text, count(*) FROM audit_entries a "
                "JOIN audit_boards b ON b.id = a.board_id WHERE b.name = %s GROUP BY 1",
                (board,),
            ).fetchall()
        )
        assert per_part == {
            f"audit_entries_y{far_year}m03": 10,
            f"audit_entries_y{far_year}m04": 5,
            f"audit_entries_y{far_year}m05": 5,
        }


async def test_redelivered_batch_adds_no_duplicates(dsn: str, board: str) -> None:
    base = ms(2026, 10, 5)
    records = [
        record(board, [change(v, base + v * 1000, offset=v) for v in range(i * 5 + 1, i * 5 + 6)])
        for i in range(6)
    ]
    async with audit_writer(dsn) as writer:
        assert await writer.write(records[:4]) == 20
        # redelivery: overlapping batch, and one record twice in the same batch
        assert await writer.write(records[2:] + records[5:]) == 10
        assert await writer.write(records) == 0
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT version), min(version), max(version) "
            "FROM score_audit WHERE leaderboard_id = %s",
            (board,),
        ).fetchone()
        assert rows == (30, 30, 1, 30)
        first = conn.execute(
            "SELECT occurred_at, old_score, old_rank, new_score FROM score_audit "
            "WHERE leaderboard_id = %s AND version = 1",
            (board,),
        ).fetchone()
        assert first is not None
        assert int(first[0].timestamp() * 1000) == base + 1000
        assert first[1:] == (None, None, 1)


async def test_audit_writer_reconnects_after_connection_loss(dsn: str, board: str) -> None:
    async with audit_writer(dsn) as writer:
        assert await writer.write([record(board, [change(1, ms(2026, 10, 1))])]) == 1
        conn = writer._conn
        assert conn is not None
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        await asyncio.sleep(0.1)
        from streams.errors import ServiceUnavailable

        with pytest.raises(ServiceUnavailable):
            await writer.write([record(board, [change(2, ms(2026, 10, 2))])])
        assert await writer.write([record(board, [change(2, ms(2026, 10, 2))])]) == 1


def test_write_period_idempotent_and_history(
    dsn: str, pg_conn: psycopg.Connection, board: str
) -> None:
    rows = [(1, "alice", 300), (2, "bob", 200), (3, "carol", 100)]
    checksum = rules.standings_checksum(rows)
    assert snapshots.write_period(
        pg_conn,
        LeaderboardConfigured(board, reset_period=ResetPeriod.MONTHLY),
        "2026-10",
        rows,
        checksum,
        42,
    )
    assert not snapshots.write_period(
        pg_conn,
        LeaderboardConfigured(board, reset_period=ResetPeriod.MONTHLY),
        "2026-10",
        [(1, "x", 1)],
        "other",
        43,
    )
    pg_conn.commit()
    got = history.period_standings(pg_conn, board, "2026-10", limit=10)
    assert [(r.rank, r.participant_id, r.score) for r in got] == rows
    assert rules.standings_checksum((r.rank, r.participant_id, r.score) for r in got) == checksum
    assert [r.rank for r in history.period_standings(pg_conn, board, "2026-10", 1, 1)] == [2]
    closed = history.closed_period(pg_conn, board, "2026-10")
    assert closed is not None
    assert (closed.participant_count, closed.checksum, closed.version) == (3, checksum, 42)
    assert closed.period_start == datetime(2026, 10, 1, tzinfo=UTC)
    assert history.period_standings(pg_conn, board, "2026-11") == []
    assert [c.period for c in history.closed_periods(pg_conn, board)] == ["2026-10"]


def test_weekly_period_and_placements(dsn: str, pg_conn: psycopg.Connection, board: str) -> None:
    who = f"player-{uuid.uuid4().hex[:8]}"
    other = f"{board}-b"
    snapshots.write_period(
        pg_conn,
        LeaderboardConfigured(board, reset_period=ResetPeriod.WEEKLY),
        "2026-W40",
        [(1, "z", 9), (2, who, 5)],
        "c1",
        1,
    )
    snapshots.write_period(
        pg_conn,
        LeaderboardConfigured(other, reset_period=ResetPeriod.DAILY),
        "2026-10-07",
        [(1, who, 7)],
        "c2",
        5,
    )
    pg_conn.commit()
    got = history.placements(pg_conn, who, limit=10)
    assert [(p.leaderboard_id, p.period, p.rank, p.score, p.participant_count) for p in got] == [
        (other, "2026-10-07", 1, 7, 1),
        (board, "2026-W40", 2, 5, 2),
    ]
    assert len(history.placements(pg_conn, who, limit=1)) == 1


def test_write_period_rejects_all_time(dsn: str, pg_conn: psycopg.Connection, board: str) -> None:
    from streams.errors import ValidationError

    cup = LeaderboardConfigured(board, starts_at=rules.MIN_EVENT_MS + 1, ends_at=2 * 10**12)
    assert snapshots.write_period(pg_conn, cup, "all", [(1, "a", 1)], "c", 1)  # a window ended
    with pytest.raises(ValidationError):
        snapshots.write_period(
            pg_conn, LeaderboardConfigured(board, reset_period=ResetPeriod.NONE), "all", [], "", 1
        )


def test_registry_upsert_latest_wins(dsn: str, pg_conn: psycopg.Connection, board: str) -> None:
    newer = LeaderboardConfigured(
        board,
        sort_order=SortOrder.ASC,
        reset_period=ResetPeriod.MONTHLY,
        configured_at=2_000,
        starts_at=ms(2026, 1),
        watch_top_n=10,
        metadata={"game": "chess"},
    )
    older = LeaderboardConfigured(board, configured_at=1_000)
    assert registry.upsert_board(pg_conn, newer)
    assert not registry.upsert_board(pg_conn, older)
    assert registry.upsert_board(pg_conn, newer)  # same record again: idempotent
    pg_conn.commit()
    assert registry.get_board(pg_conn, board) == newer
    assert newer in registry.list_boards(pg_conn)
    assert registry.get_board(pg_conn, board + "-missing") is None
