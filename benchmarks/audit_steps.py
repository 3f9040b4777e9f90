"""Audit row size, change by change: ``python -m benchmarks.audit_steps [--rows N]``.

Writes N benchmark audit rows (``scenarios/audit.audit_changes``) in the previous row shape
(migrations 0001 + 0002, in a schema of its own), then rebuilds them as plain tables one change
at a time and prints bytes per row (heap + indexes, after VACUUM) of each step, as a Markdown
table. Every step is built the same way (CREATE TABLE AS, then CREATE INDEX), so the steps
compare with each other; the figure of the live writer is ``audit.bytes_per_row``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from benchmarks.scenarios.audit import _month_ms, audit_changes
from processors.bootstrap import pg_connect
from sinks.migrate import MIGRATIONS_DIR, migrate
from streams.settings import Settings

_OLD = (
    "leaderboard_id, period, version, participant_id, operator, submitted_score, old_score, "
    "new_score, old_rank, new_rank, event_id, match_id, entry_index, source_partition, "
    "source_offset, occurred_at, claimed_at"
)
_UUID = "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
_OP = "(array_position(ARRAY['best','set','incr','decr'], operator) - 1)::smallint"

#: (change, SELECT list from ``src`` joined with boards b and periods p, indexes)
STEPS: list[tuple[str, str, list[str]]] = [
    (
        "previous row: text ids, 3 btree indexes",
        "s.*",
        [
            "UNIQUE (leaderboard_id, version, occurred_at)",
            "(leaderboard_id, source_partition, source_offset, entry_index)",
            "(participant_id)",
        ],
    ),
    (
        "drop the participant index (no query of the code uses it)",
        "s.*",
        [
            "UNIQUE (leaderboard_id, version, occurred_at)",
            "(leaderboard_id, source_partition, source_offset, entry_index)",
        ],
    ),
    (
        "one unique source key replaces the version key and the replay index",
        "s.*",
        ["UNIQUE (leaderboard_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "board dictionary: integer board id",
        "b.id AS board_id, s.period, s.version, s.participant_id, s.operator, "
        "s.submitted_score, s.old_score, s.new_score, s.old_rank, s.new_rank, s.event_id, "
        "s.match_id, s.entry_index, s.source_partition, s.source_offset, s.occurred_at, "
        "s.recorded_at, s.claimed_at",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "period dictionary: smallint period id",
        "b.id AS board_id, p.id AS period_id, s.version, s.participant_id, s.operator, "
        "s.submitted_score, s.old_score, s.new_score, s.old_rank, s.new_rank, s.event_id, "
        "s.match_id, s.entry_index, s.source_partition, s.source_offset, s.occurred_at, "
        "s.recorded_at, s.claimed_at",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "smallint operator",
        f"b.id AS board_id, p.id AS period_id, s.version, s.participant_id, {_OP} AS operator, "
        "s.submitted_score, s.old_score, s.new_score, s.old_rank, s.new_rank, s.event_id, "
        "s.match_id, s.entry_index, s.source_partition, s.source_offset, s.occurred_at, "
        "s.recorded_at, s.claimed_at",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "event id as uuid (16 bytes) when canonical",
        f"b.id AS board_id, p.id AS period_id, s.version, s.participant_id, {_OP} AS operator, "
        "s.submitted_score, s.old_score, s.new_score, s.old_rank, s.new_rank, "
        f"CASE WHEN s.event_id ~ {_UUID} THEN s.event_id::uuid END AS event_uuid, "
        f"CASE WHEN s.event_id !~ {_UUID} THEN s.event_id END AS event_text, "
        "s.match_id, s.entry_index, s.source_partition, s.source_offset, s.occurred_at, "
        "s.recorded_at, s.claimed_at",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "match id only when it differs from the event id",
        f"b.id AS board_id, p.id AS period_id, s.version, s.participant_id, {_OP} AS operator, "
        "s.submitted_score, s.old_score, s.new_score, s.old_rank, s.new_rank, "
        f"CASE WHEN s.event_id ~ {_UUID} THEN s.event_id::uuid END AS event_uuid, "
        f"CASE WHEN s.event_id !~ {_UUID} THEN s.event_id END AS event_text, "
        "NULLIF(s.match_id, s.event_id) AS match_id, s.entry_index, s.source_partition, "
        "s.source_offset, s.occurred_at, s.recorded_at, s.claimed_at",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "drop recorded_at (the writer's clock, read by nothing)",
        f"b.id AS board_id, p.id AS period_id, s.version, s.participant_id, {_OP} AS operator, "
        "s.submitted_score, s.old_score, s.new_score, s.old_rank, s.new_rank, "
        f"CASE WHEN s.event_id ~ {_UUID} THEN s.event_id::uuid END AS event_uuid, "
        f"CASE WHEN s.event_id !~ {_UUID} THEN s.event_id END AS event_text, "
        "NULLIF(s.match_id, s.event_id) AS match_id, s.entry_index, s.source_partition, "
        "s.source_offset, s.occurred_at, s.claimed_at",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "columns ordered by alignment, smallint partition and entry index (= audit_entries)",
        "s.version, s.submitted_score, s.new_score, s.old_score, s.source_offset, "
        "s.occurred_at, s.claimed_at, b.id AS board_id, s.new_rank, s.old_rank, "
        "p.id AS period_id, s.source_partition::smallint, s.entry_index::smallint, "
        f"{_OP} AS operator, s.participant_id, "
        f"CASE WHEN s.event_id ~ {_UUID} THEN s.event_id::uuid END AS event_uuid, "
        f"CASE WHEN s.event_id !~ {_UUID} THEN s.event_id END AS event_text, "
        "NULLIF(s.match_id, s.event_id) AS match_id",
        ["UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)"],
    ),
    (
        "+ BRIN on occurred_at",
        "s.version, s.submitted_score, s.new_score, s.old_score, s.source_offset, "
        "s.occurred_at, s.claimed_at, b.id AS board_id, s.new_rank, s.old_rank, "
        "p.id AS period_id, s.source_partition::smallint, s.entry_index::smallint, "
        f"{_OP} AS operator, s.participant_id, "
        f"CASE WHEN s.event_id ~ {_UUID} THEN s.event_id::uuid END AS event_uuid, "
        f"CASE WHEN s.event_id !~ {_UUID} THEN s.event_id END AS event_text, "
        "NULLIF(s.match_id, s.event_id) AS match_id",
        [
            "UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)",
            "USING brin (occurred_at)",
        ],
    ),
]


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _write_old(conn: psycopg.Connection[tuple[object, ...]], rows: int) -> int:
    """COPY ``rows`` benchmark rows into the previous ``score_audit``; the month's start ms."""
    start = _month_ms(3100, 1)
    month = _time(start)
    conn.execute("SELECT ensure_audit_partitions(%s, %s)", (month, month))
    changes = audit_changes(rows, start + 3_600_000)
    with conn.cursor().copy(f"COPY score_audit ({_OLD}) FROM STDIN") as copy:
        for c in changes:
            copy.write_row(
                (
                    "bench-audit-board",
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
                    _time(c.occurred_at),
                    None if c.claimed_at is None else _time(c.claimed_at),
                )
            )
    return start


def _size(
    conn: psycopg.Connection[tuple[object, ...]], table: str, rows: int
) -> tuple[float, float]:
    conn.execute(f"VACUUM (ANALYZE) {table}")
    got = conn.execute(
        "SELECT pg_relation_size(%s), pg_total_relation_size(%s)", (table, table)
    ).fetchone()
    assert got is not None
    heap, total = int(str(got[0])), int(str(got[1]))
    return heap / rows, (total - heap) / rows


def measure(dsn: str, rows: int) -> list[tuple[str, float, float]]:
    """(change, heap B/row, index B/row) of every step."""
    schema = f"audsteps_{uuid.uuid4().hex[:6]}"
    out = []
    with pg_connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        scoped = f"{dsn}?options=-csearch_path%3D{schema}"
        with pg_connect(scoped, autocommit=True) as conn, tempfile.TemporaryDirectory() as d:
            for f in sorted(MIGRATIONS_DIR.glob("*.sql"))[:2]:
                shutil.copy(f, Path(d) / f.name)
            migrate(conn, Path(d))
            _write_old(conn, rows)
            out.append(
                (
                    "previous schema as written (partition, live indexes)",
                    *_size(conn, "score_audit_y3100m01", rows),
                )
            )
            conn.execute("CREATE TABLE b AS SELECT 1 AS id, 'bench-audit-board'::text AS name")
            conn.execute("CREATE TABLE p AS SELECT 1::smallint AS id, '2999-01'::text AS period")
            for i, (change, select, indexes) in enumerate(STEPS):
                table = f"step{i}"
                conn.execute(
                    f"CREATE TABLE {table} AS SELECT {select} FROM score_audit_y3100m01 s "
                    "JOIN b ON b.name = s.leaderboard_id JOIN p ON p.period = s.period "
                    "ORDER BY s.source_partition, s.source_offset, s.entry_index"
                )
                for idx in indexes:
                    if idx.startswith("UNIQUE"):
                        conn.execute(f"ALTER TABLE {table} ADD {idx}")
                    else:
                        conn.execute(f"CREATE INDEX ON {table} {idx}")
                out.append((change, *_size(conn, table, rows)))
    finally:
        with pg_connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return out


def main() -> None:
    """Print the steps table for ``--rows`` rows against the configured PostgreSQL."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="audit rows to write (200,000)")
    args = ap.parse_args()
    steps = measure(Settings().postgres_dsn, args.rows)
    print(f"| change ({args.rows:,} rows) | heap B/row | index B/row | total B/row |")
    print("|---|---:|---:|---:|")
    for change, heap, index in steps:
        print(f"| {change} | {heap:.0f} | {index:.0f} | {heap + index:.0f} |")


if __name__ == "__main__":
    main()
