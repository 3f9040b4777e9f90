"""Scenario "audit": the PostgreSQL audit table's size per row, its write and read speeds.

N audit rows of one board (10 entries per record, UUID event ids, participants ``u0000123``,
monthly periods, a claimed time on every row) are written with ``AuditWriter`` into a month of
a far-future year that nobody else writes, so that month's partition holds exactly these rows.
Figures: bytes per row (table + indexes), AuditWriter rows/s, raw binary COPY in and out of
PostgreSQL (the limits), and the replay read (``_postgres_records``: rows to decoded records).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import Say
from benchmarks.params import Params
from processors.bootstrap import audit_writer, migrate_database, pg_connect
from processors.replay import _postgres_records
from streams.events import LeaderboardModerated, RankChange, RankChanged, ScoresSubmitted
from streams.settings import Settings

#: Rows per AuditWriter.write (what the sinks worker writes per batch at full speed).
BATCH = 5_000
#: Entries per record.
PER_RECORD = 10


def audit_changes(n: int, start_ms: int, seed: int = 5) -> list[RankChange]:
    """``n`` rank changes of one board in log order, 1 ms between records."""
    rng = random.Random(seed)
    out: list[RankChange] = []
    seen: set[int] = set()
    for i in range(n):
        rec, idx = divmod(i, PER_RECORD)
        at = start_ms + rec
        player = rng.randrange(n // 2)
        again = player in seen
        seen.add(player)
        eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        out.append(
            RankChange(
                version=i + 1,
                period="2999-01",
                participant_id=f"u{player:07d}",
                old_rank=rng.randrange(1, n) if again else None,
                new_rank=rng.randrange(1, n),
                old_score=rng.randrange(10**6) if again else None,
                new_score=rng.randrange(10**6),
                submitted_score=rng.randrange(10**6),
                operator="best",
                event_id=eid if idx == 0 else out[-1].event_id,
                match_id=eid if idx == 0 else out[-1].match_id,
                entry_index=idx,
                occurred_at=at,
                source_partition=3,
                source_offset=1_000_000 + rec,
                claimed_at=at - rng.randrange(1, 5_000),
            )
        )
    return out


def _month_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


async def _write(settings: Settings, board: str, changes: list[RankChange]) -> float:
    """AuditWriter rows/s over ``changes`` in batches of BATCH."""
    async with audit_writer(settings) as writer:
        t0 = time.perf_counter()
        for i in range(0, len(changes), BATCH):
            part = tuple(changes[i : i + BATCH])
            await writer.write([RankChanged(board, part[0].version, part[-1].version, part)])
        return len(changes) / (time.perf_counter() - t0)


async def _read(settings: Settings, board: str) -> tuple[int, float, float]:
    """(entries, entries/s, entries per CPU-second of this process) of one replay read."""
    t0, c0 = time.perf_counter(), time.process_time()
    entries = 0
    async for chunk in _postgres_records(settings, board, None):
        entries += sum(
            len(ev.submissions) if isinstance(ev, ScoresSubmitted) else len(ev.entries)
            for _, ev in chunk
            if not isinstance(ev, LeaderboardModerated)
        )
    return entries, entries / (time.perf_counter() - t0), entries / (time.process_time() - c0)


def _raw_copy_in(conn: psycopg.Connection[Any], partition: str, n: int) -> float:
    """Binary COPY rows/s of the partition's own rows into a like table without indexes."""
    cols = conn.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = 'audit_entries'::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum"
    ).fetchall()
    names = ", ".join(str(c[0]) for c in cols)
    rows = conn.execute(f"SELECT {names} FROM {partition}").fetchall()
    conn.execute("CREATE TEMP TABLE bench_raw_in (LIKE audit_entries)")
    t0 = time.perf_counter()
    with conn.cursor().copy(f"COPY bench_raw_in ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([str(c[1]) for c in cols])
        for row in rows:
            copy.write_row(row)
    rate = n / (time.perf_counter() - t0)
    conn.execute("DROP TABLE bench_raw_in")
    return rate


def _raw_copy_out(conn: psycopg.Connection[Any], partition: str, n: int) -> float:
    """Rows/s of a binary COPY TO STDOUT of the partition (bytes only, nothing decoded)."""
    t0 = time.perf_counter()
    with conn.cursor().copy(f"COPY {partition} TO STDOUT (FORMAT BINARY)") as copy:
        for _ in copy:
            pass
    return n / (time.perf_counter() - t0)


def run_audit(base: Settings, p: Params, report: Report, say: Say) -> None:
    """Write, measure and drop ``p.audit_rows`` audit rows of one board."""
    n = p.audit_rows
    year = random.randint(3000, 3999)
    partition = f"audit_entries_y{year}m01"
    board = f"benchaudit{uuid.uuid4().hex[:6]}"
    migrate_database(base.postgres_dsn)
    changes = audit_changes(n, _month_ms(year, 1) + 3_600_000)
    bytes_rows: list[float] = []
    write_rates: list[float] = []
    read_rates: list[float] = []
    read_cpu: list[float] = []
    raw_in: list[float] = []
    raw_out: list[float] = []
    try:
        say(f"[audit] AuditWriter: {n:,} rows in batches of {BATCH:,}")
        write_rates.append(asyncio.run(_write(base, board, changes)))
        with pg_connect(base, autocommit=True) as conn:
            conn.execute(f"VACUUM (ANALYZE) {partition}")
            size = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_relation_size(%s), count(*) FROM "
                + partition,
                (partition, partition),
            ).fetchone()
            assert size is not None and size[2] == n, f"{partition} holds {size}, not {n} rows"
            bytes_rows.append(size[0] / n)
            report.details["audit: heap bytes per row"] = round(size[1] / n, 1)
            report.details["audit: index bytes per row"] = round((size[0] - size[1]) / n, 1)
        for i in range(p.reps):
            say(f"[audit] replay read run {i + 1}/{p.reps}")
            got, rate, per_cpu = asyncio.run(_read(base, board))
            assert got == n, f"replay read {got} of {n} entries"
            read_rates.append(rate)
            read_cpu.append(per_cpu)
            with pg_connect(base) as conn:
                raw_out.append(_raw_copy_out(conn, partition, n))
                raw_in.append(_raw_copy_in(conn, partition, n))
    finally:
        with pg_connect(base, autocommit=True) as conn:
            for m in (1, 2):
                conn.execute(f"DROP TABLE IF EXISTS audit_entries_y{year}m{m:02d}")
            conn.execute("DELETE FROM audit_boards WHERE name = %s", (board,))
    rows = f"{n:,} rows of one board, {PER_RECORD} entries per record"
    report.add(
        Figure(
            "4 replay",
            "audit bytes per row (table + indexes)",
            "B/row",
            bytes_rows,
            f"{rows}; pg_total_relation_size of its monthly partition after VACUUM ÷ rows",
            Target(200, False, "≤ 200 B/row"),
            key="audit.bytes_per_row",
        )
    )
    report.add(
        Figure(
            "4 replay",
            "audit write via AuditWriter, rows/s",
            "rows/s",
            write_rates,
            f"{rows}; {BATCH:,} rows per write (COPY to staging, INSERT … ON CONFLICT)",
            key="audit.write_rows_per_s",
        )
    )
    report.add(
        Figure(
            "4 replay",
            "raw binary COPY into PostgreSQL (no indexes), rows/s",
            "rows/s",
            raw_in,
            f"{rows}; psycopg write_row into a temp table like audit_entries: the write limit",
            key="audit.raw_copy_in_rows_per_s",
        )
    )
    report.add(
        Figure(
            "4 replay",
            "replay read from PostgreSQL (rows to records), entries/s",
            "entries/s",
            read_rates,
            f"{rows}; _postgres_records: binary server-side cursor in source order, decoded "
            "and regrouped into MatchResultSubmitted records (no Redis); the issue's "
            "≥ 80,000 target is on the whole rebuild, replay.postgres",
            key="replay.postgres_read",
        )
    )
    report.add(
        Figure(
            "4 replay",
            "replay read from PostgreSQL, entries per CPU-second of the reader",
            "entries/s",
            read_cpu,
            f"{rows}; the same reads, entries ÷ the reading process's CPU time: what one core "
            "gives when the reader has it (the wall rate above shares the 2 cores)",
            key="replay.postgres_read_per_cpu_s",
        )
    )
    report.add(
        Figure(
            "4 replay",
            "raw binary COPY out of PostgreSQL, rows/s",
            "rows/s",
            raw_out,
            f"{rows}; COPY partition TO STDOUT (FORMAT BINARY), bytes only: the read limit",
            key="audit.raw_copy_out_rows_per_s",
        )
    )
