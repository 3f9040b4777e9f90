"""The audit write path's CPU per row: ``python -m benchmarks.audit_write [--rows N] [--batch B]``.

Writes N rank changes (20 boards, 10 entries per record, UUID event ids, the
``scenarios/audit.audit_changes`` rows) with the tree's ``AuditWriter``, B rows per write,
into a month of a far-future year that nobody else writes, and prints one JSON line: rows/s,
µs of CPU per row of this process (the writer: rows, COPY) and of PostgreSQL (the postmaster
and every server process, from ``/proc``), and WAL bytes per row. ``--redeliver`` writes every
batch a second time (a redelivered batch: no row may be added). The month's partitions are
dropped afterwards.

For an A/B of two trees, run this file with each tree first on the path, alternately::

    PYTHONPATH=<tree> python <this tree>/benchmarks/audit_write.py --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import psycopg

from benchmarks.machine_cpu import CpuSplit, us_per_unit
from benchmarks.scenarios.audit import _month_ms, audit_changes
from processors.bootstrap import audit_writer, migrate_database, pg_connect
from streams.events import RankChanged
from streams.settings import Settings

#: Boards of the run; each write holds one RankChanged per board (as the projector publishes).
BOARDS = 20


def _batches(n: int, batch: int, year: int) -> list[list[RankChanged]]:
    changes = audit_changes(n, _month_ms(year, 1) + 3_600_000)
    tag = random.randrange(10**6)
    out: list[list[RankChanged]] = []
    for i in range(0, n, batch):
        part = changes[i : i + batch]
        per = max(1, -(-len(part) // BOARDS))
        out.append(
            [
                RankChanged(f"bw{tag}b{j // per}", c[0].version, c[-1].version, tuple(c))
                for j in range(0, len(part), per)
                if (c := part[j : j + per])
            ]
        )
    return out


async def _write_all(
    settings: Settings, batches: list[list[RankChanged]], redeliver: bool
) -> tuple[int, float, float]:
    """(rows inserted, seconds, this process's CPU seconds) of writing every batch."""
    async with audit_writer(settings) as writer:
        first = batches[0]
        inserted = await writer.write(first)  # connect, dictionaries, partitions
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches[1:]:
            inserted += await writer.write(b)
            if redeliver:
                inserted += await writer.write(b)
        return inserted, time.perf_counter() - t0, time.process_time() - c0


def _one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args or None).fetchone()
    assert row is not None
    return row[0]


def main() -> None:
    """Write the rows, print the figures as one JSON line, drop the rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rank changes to write")
    ap.add_argument("--batch", type=int, default=1_000, help="rows per AuditWriter.write")
    ap.add_argument("--redeliver", action="store_true", help="write every batch twice")
    args = ap.parse_args()
    settings = Settings()
    migrate_database(settings)
    year = random.randint(3000, 3999)
    batches = _batches(args.rows, args.batch, year)
    measured = sum(len(c.changes) for b in batches[1:] for c in b)
    split = CpuSplit(settings, {})
    with pg_connect(settings, autocommit=True) as conn:
        lsn0 = _one(conn, "SELECT pg_current_wal_lsn()")
        first = split.snapshot()
        inserted, secs, cpu = asyncio.run(_write_all(settings, batches, args.redeliver))
        last = split.snapshot()
        wal = _one(conn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", lsn0)
        for m in (1, 2):
            conn.execute(f"DROP TABLE IF EXISTS audit_entries_y{year}m{m:02d}")
    cpu_split = us_per_unit(first, last, measured)
    print(
        json.dumps(
            {
                "rows": measured,
                "batch": args.batch,
                "redeliver": args.redeliver,
                "inserted": inserted - sum(len(c.changes) for c in batches[0]),
                "rows_per_s": round(measured / secs),
                "writer_cpu_us_per_row": round(1e6 * cpu / measured, 2),
                "postgres_cpu_us_per_row": round(cpu_split.get("postgres", float("nan")), 2),
                "wal_bytes_per_row": round(float(wal) / measured, 1),
                "other_us_per_row": round(cpu_split["other"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
