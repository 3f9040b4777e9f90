"""The lean audit row (migration 0003) against the real database: upgrade, round trip, replay
read, size."""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from processors.bootstrap import audit_writer, migrate_database
from processors.replay import _audit_chunks, _count_postgres, _postgres_records
from sinks.audit import stored_event_id
from sinks.migrate import MIGRATIONS_DIR, migrate
from streams.events import (
    MatchResultSubmitted,
    Operator,
    RankChange,
    RankChanged,
    ScoreEntry,
    ScoresSubmitted,
)
from streams.settings import Settings

pytestmark = pytest.mark.integration

#: The readable columns (the view's, and the previous table's minus recorded_at).
COLUMNS = (
    "leaderboard_id, period, version, participant_id, operator, submitted_score, old_score, "
    "new_score, old_rank, new_rank, event_id, match_id, entry_index, source_partition, "
    "source_offset, occurred_at, claimed_at"
)


def ms(year: int, month: int, day: int = 1, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def dsn(stack: Settings) -> str:
    migrate_database(stack.postgres_dsn)
    return stack.postgres_dsn


@pytest.fixture
def board() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema of its own (dropped after): a DSN whose search_path points to it."""
    name = f"aud_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{dsn}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def changes_of(seed: int, n: int, *, occurred: int, eid: str, mid: str) -> list[RankChange]:
    """``n`` entries of one record with every optional field exercised."""
    ops = ["best", "set", "incr", "decr"]
    return [
        RankChange(
            version=seed * 100 + i,
            period="2026-10" if i % 2 else "all",
            participant_id=f"p{seed}-{i}",
            old_rank=None if i == 0 else i,
            new_rank=i + 1,
            old_score=None if i == 0 else -(2**62) + i,
            new_score=2**62 - i,
            submitted_score=seed * 7 - i,
            operator=ops[(seed + i) % 4],
            event_id=eid,
            match_id=mid,
            entry_index=i,
            occurred_at=occurred,
            source_partition=seed % 3,
            source_offset=1_000 + seed,
            claimed_at=None if i % 2 else occurred - 123,
        )
        for i in range(n)
    ]


EVENT_IDS = [
    (str(uuid.UUID(int=7)), str(uuid.UUID(int=7))),  # canonical UUID, match id = event id
    (str(uuid.uuid4()).upper(), "match-9"),  # upper-case UUID text stays text
    ("e-42", "e-42"),
    ("0123456789abcdef", "m"),  # 16 characters, not a UUID
    (str(uuid.uuid4()), "other-match"),
]


def written(board: str) -> list[RankChange]:
    out = []
    for seed, (eid, mid) in enumerate(EVENT_IDS, start=1):
        out += changes_of(seed, 3, occurred=ms(2026, 10, seed, 12), eid=eid, mid=mid)
    return out


def readable(conn: psycopg.Connection[Any], board: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT {COLUMNS} FROM score_audit WHERE leaderboard_id = %s "
        "ORDER BY source_partition, source_offset, entry_index",
        (board,),
    ).fetchall()


def expected_rows(board: str, changes: list[RankChange]) -> list[tuple[Any, ...]]:
    def ts(v: int | None) -> datetime | None:
        return None if v is None else datetime.fromtimestamp(v / 1000, tz=UTC)

    rows = [
        (
            board,
            c.period,
            c.version,
            c.participant_id,
            c.operator,
            c.submitted_score,
            c.old_score,
            c.new_score,
            c.old_rank,
            c.new_rank,
            c.event_id,
            c.match_id,
            c.entry_index,
            c.source_partition,
            c.source_offset,
            ts(c.occurred_at),
            ts(c.claimed_at),
        )
        for c in changes
    ]
    return sorted(rows, key=lambda r: (r[13], r[14], r[12]))


async def test_writer_round_trips_every_field(dsn: str, board: str) -> None:
    """What the writer stores reads back through the view exactly as the RankChange said."""
    changes = written(board)
    async with audit_writer(dsn) as writer:
        assert await writer.write([RankChanged(board, 1, 1, tuple(changes))]) == len(changes)
    with psycopg.connect(dsn) as conn:
        assert readable(conn, board) == expected_rows(board, changes)
        kinds = conn.execute(
            "SELECT count(event_uuid), count(event_text), count(match_id) FROM audit_entries a "
            "JOIN audit_boards b ON b.id = a.board_id WHERE b.name = %s",
            (board,),
        ).fetchone()
    # 2 canonical UUIDs of 5 records stored as 16 bytes; match ids kept only where they differ
    assert kinds == (6, 9, 9)


async def test_redelivered_batch_stores_the_same_fields_through_the_staged_path(
    dsn: str, board: str
) -> None:
    """A batch holding stored rows fails the direct COPY and takes the staged insert: the rows
    it adds read back exactly as a direct write stores them, and none twice."""
    changes = written(board)
    half = changes[: len(changes) // 2]
    async with audit_writer(dsn) as writer:
        assert await writer.write([RankChanged(board, 1, 1, tuple(half))]) == len(half)
        got = await writer.write([RankChanged(board, 1, 1, tuple(reversed(changes)))])
    assert got == len(changes) - len(half)
    with psycopg.connect(dsn) as conn:
        assert readable(conn, board) == expected_rows(board, changes)


@pytest.mark.parametrize(
    "event_id",
    [
        str(uuid.UUID(int=7)),
        "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012",
        "0B8E6F4C-2F7A-4C1E-9D3B-5A6C7E8F9012",
        "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f901",
        "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012\n",
        " 0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012",
        "0b8e6f4c2f7a4c1e9d3b5a6c7e8f9012",
        "{0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012}",
        "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f901g",
        "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f90\u0661\u0662",  # Arabic-Indic digits
        "e-42",
        "",
    ],
)
def test_writer_keeps_event_ids_by_the_migration_rule(dsn: str, event_id: str) -> None:
    """The writer's split of an event id (``stored_event_id``) is the SQL rule of migration
    0003 (``audit_event_uuid``), which stored every row written before it."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT audit_event_uuid(%s)", (event_id,)).fetchone()
    assert row is not None
    sql_uuid = None if row[0] is None else row[0].bytes
    assert stored_event_id(event_id) == (sql_uuid, None if sql_uuid else event_id)


async def test_same_entry_redelivered_with_any_version_is_one_row(dsn: str, board: str) -> None:
    """The unique key is the entry's source position: a redelivery never adds a row."""
    (first, *_) = changes_of(1, 1, occurred=ms(2026, 10, 3), eid="e1", mid="e1")
    again = dataclasses.replace(first, version=99)
    async with audit_writer(dsn) as writer:
        assert await writer.write([RankChanged(board, 1, 1, (first,))]) == 1
        assert await writer.write([RankChanged(board, 99, 99, (again, first))]) == 0


def old_row(board: str, c: RankChange) -> tuple[Any, ...]:
    ts = datetime.fromtimestamp(c.occurred_at / 1000, tz=UTC)
    claimed = None if c.claimed_at is None else datetime.fromtimestamp(c.claimed_at / 1000, UTC)
    return (
        board,
        c.period,
        c.version,
        c.participant_id,
        c.operator,
        c.submitted_score,
        c.old_score,
        c.new_score,
        c.old_rank,
        c.new_rank,
        c.event_id,
        c.match_id,
        c.entry_index,
        c.source_partition,
        c.source_offset,
        ts,
        claimed,
    )


def test_upgrade_from_the_previous_schema_keeps_every_row(schema: str, tmp_path: Path) -> None:
    """0001 + 0002 with rows in them, then 0003: the view shows the same rows, partitioned."""
    before = tmp_path / "before"
    before.mkdir()
    for f in sorted(MIGRATIONS_DIR.glob("*.sql"))[:2]:
        shutil.copy(f, before / f.name)
    boards = ["up-a", "up-b"]
    changes = {b: written(b) for b in boards}
    # a second month, so that the move creates two partitions
    changes["up-b"] += changes_of(9, 2, occurred=ms(2026, 11, 2), eid="late", mid="late")
    with psycopg.connect(schema, autocommit=True) as conn:
        assert migrate(conn, before) == ["0001", "0002"]
        conn.execute("SELECT ensure_audit_partitions(%s, %s)", (ms_dt(2026, 10), ms_dt(2026, 10)))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO score_audit ({COLUMNS}) VALUES ({', '.join(['%s'] * 17)})",
                [old_row(b, c) for b in boards for c in changes[b]],
            )
        old = {b: readable(conn, b) for b in boards}
        assert len(old["up-b"]) == len(changes["up-b"])

        assert migrate(conn)[0] == "0003"  # (and any later migration)
        for b in boards:
            assert readable(conn, b) == old[b] == expected_rows(b, changes[b])
        parts = conn.execute(
            "SELECT c.relname, count(*) FROM audit_entries a JOIN pg_class c "
            "ON c.oid = a.tableoid GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert parts == [("audit_entries_y2026m10", 30), ("audit_entries_y2026m11", 2)]
        assert conn.execute("SELECT to_regclass('score_audit_y2026m10')").fetchone() == (None,)


def ms_dt(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


async def test_replay_read_regroups_records_in_source_order(
    dsn: str, board: str, stack: Settings
) -> None:
    """``_postgres_records`` gives back each record's event and entries, in log order."""
    changes = written(board)
    async with audit_writer(dsn) as writer:
        # written out of order and in two batches: the read orders by source position
        await writer.write([RankChanged(board, 1, 1, tuple(changes[6:]))])
        await writer.write([RankChanged(board, 1, 1, tuple(changes[:6]))])
    got = [item async for chunk in _postgres_records(stack, board, None) for item in chunk]
    want = sorted({(c.source_partition, c.source_offset) for c in changes})
    assert [(raw.partition, raw.offset) for raw, _ in got] == want
    for raw, event in got:
        rows = [
            c
            for c in changes
            if (c.source_partition, c.source_offset) == (raw.partition, raw.offset)
        ]
        assert raw.key == board.encode()
        assert (event.event_id, event.match_id, event.leaderboard_id, event.occurred_at) == (
            rows[0].event_id,
            rows[0].match_id,
            board,
            rows[0].occurred_at,
        )
        assert event.entries == tuple(
            ScoreEntry(c.participant_id, c.submitted_score, Operator(c.operator)) for c in rows
        )
    assert await _count_postgres(stack, board) == len(want)
    since = [
        raw.offset
        async for chunk in _postgres_records(stack, board, ms(2026, 10, 3))
        for raw, _ in chunk
    ]
    assert since == sorted(c.source_offset for c in changes[6::3])


async def test_replay_read_in_a_second_process_gives_the_same_records(
    dsn: str, board: str, stack: Settings
) -> None:
    """A fold's audit read by an ``AuditProcess`` gives back the records of the read here:
    matches packed by the process, a coalesced record's rows regrouped by the parent."""
    changes = written(board)
    # a coalesced record: two submissions (event ids) at one source position
    coalesced = changes_of(30, 2, occurred=ms(2026, 10, 4), eid="c-1", mid="c-1")
    coalesced[1] = dataclasses.replace(coalesced[1], event_id="c-2", match_id="c-2")
    async with audit_writer(dsn) as writer:
        await writer.write([RankChanged(board, 1, 1, tuple(changes + coalesced))])
    for since in (None, ms(2026, 10, 3)):
        here = [x async for chunk in _postgres_records(stack, board, since, True) for x in chunk]
        there = [x async for chunk in _audit_chunks(stack, board, since) for x in chunk]
        assert there == here
        assert any(isinstance(ev, ScoresSubmitted) for _, ev in here)
        assert any(isinstance(ev, MatchResultSubmitted) for _, ev in here)


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _psql(dsn: str, command: str) -> None:
    _run("psql", dsn, "-v", "ON_ERROR_STOP=1", "-qc", command)


async def test_retention_detach_archive_drop_restore_attach(
    dsn: str, board: str, stack: Settings, tmp_path: Path
) -> None:
    """The commands of docs/operations-postgres.md, in order, on a month of a far year."""
    year = random.randint(4000, 4999)
    old_month, kept = f"audit_entries_y{year}m01", ms(year, 2, 10)
    first = changes_of(1, 3, occurred=ms(year, 1, 20), eid="jan", mid="jan")
    second = changes_of(2, 2, occurred=kept, eid="feb", mid="feb")
    async with audit_writer(dsn) as writer:
        assert await writer.write([RankChanged(board, 1, 1, tuple(first + second))]) == 5
    with psycopg.connect(dsn) as conn:
        everything = readable(conn, board)

    async def offsets() -> list[int]:
        return [
            raw.offset async for chunk in _postgres_records(stack, board, None) for raw, _ in chunk
        ]

    dump = tmp_path / f"audit_{year}-01.dump"
    try:
        _psql(dsn, f"ALTER TABLE audit_entries DETACH PARTITION {old_month};")
        _run("pg_dump", f"--table={old_month}", "--format=custom", f"--file={dump}", dsn)
        _psql(dsn, f"DROP TABLE {old_month};")
        # replay from PostgreSQL now sees only the months still attached
        assert await offsets() == [second[0].source_offset]
        with psycopg.connect(dsn) as conn:
            assert readable(conn, board) == everything[3:]

        _run("pg_restore", f"--dbname={dsn}", str(dump))
        _psql(
            dsn,
            f"ALTER TABLE audit_entries ATTACH PARTITION {old_month} "
            f"FOR VALUES FROM ('{year}-01-01 00:00:00+00') TO ('{year}-02-01 00:00:00+00');",
        )
        assert await offsets() == [first[0].source_offset, second[0].source_offset]
        with psycopg.connect(dsn) as conn:
            assert readable(conn, board) == everything
            # the restored month's unique key is the parent's again: redelivery still conflicts
            attached = conn.execute(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'audit_entries_source_key'::regclass "
                "AND c.relname LIKE %s",
                (f"{old_month}%",),
            ).fetchone()
            assert attached == (1,)
        async with audit_writer(dsn) as writer:
            assert await writer.write([RankChanged(board, 1, 1, tuple(first))]) == 0
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for m in (1, 2, 3):
                conn.execute(f"DROP TABLE IF EXISTS audit_entries_y{year}m{m:02d}")
