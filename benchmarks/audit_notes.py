"""The audit section of BENCHMARKS.md: the lean audit row, change by change, and its figures.

The change-by-change table is the output of ``python -m benchmarks.audit_steps --rows 200000``
(a one-off measurement: it rebuilds the rows once per step, too slow for every bench run); the
figures below it quote this run's report by key.
"""

from __future__ import annotations

from benchmarks.figures import Report
from benchmarks.stats import fmt_value

#: ``python -m benchmarks.audit_steps --rows 200000`` on 2026-11-26 (this machine, loaded).
STEPS = """\
| change (200,000 rows, 10 per record, UUID event ids) | heap B/row | index B/row | total B/row |
|---|---:|---:|---:|
| previous schema as written (partition, live indexes) | 237 | 144 | 380 |
| previous row rebuilt: text ids, 3 btree indexes | 237 | 139 | 376 |
| drop the participant index (no query of the code uses it) | 237 | 118 | 356 |
| one unique source key replaces the version key and the replay index | 237 | 68 | 305 |
| board dictionary: integer board id | 220 | 50 | 270 |
| period dictionary: smallint period id | 212 | 50 | 262 |
| smallint operator (absorbed by alignment padding until the reorder) | 212 | 50 | 262 |
| event id as uuid (16 bytes) when canonical | 195 | 50 | 245 |
| match id only when it differs from the event id | 155 | 50 | 204 |
| drop recorded_at (the writer's clock, read by nothing) | 146 | 50 | 196 |
| columns by alignment, smallint partition and entry index (= audit_entries) | 138 | 50 | 188 |
| + BRIN on occurred_at | 138 | 50 | 188 |"""

#: Previous schema vs audit_entries, same 200,000 rows, interleaved runs on the loaded machine:
#: wall rows/s and rows per second of the client's CPU (the load-independent part).
AB = """\
| path (200,000 rows; 2 runs each, load average 10-12 on 2 cores) | previous | audit_entries |
|---|---:|---:|
| AuditWriter.write, wall rows/s | 13,816 - 14,715 | 15,150 - 17,567 |
| AuditWriter.write, rows per client CPU-second | 327,702 - 341,736 | 421,992 - 437,926 |
| replay read (`_postgres_records`), wall entries/s (6 runs) | 25,571 - 37,749 | 43,097 - 63,118 |
| replay read, entries per client CPU-second | 161,202 - 174,488 | 237,196 - 282,362 |"""


def _fig(report: Report, key: str) -> str:
    f = report.get(key)
    return f"{fmt_value(f.median, f.unit)} {f.unit}" if f is not None and f.runs else "n/a"


def audit_text(report: Report) -> str:
    """The section, quoting ``audit.*`` and ``replay.postgres*`` figures of ``report``."""
    if report.get("audit.bytes_per_row") is None:
        return ""
    return f"""
## The audit row (PostgreSQL)

Migration 0003 moved the audit to `audit_entries` (dictionary ids, uuid event ids, one unique
source key + BRIN; `score_audit` is now a view of the same rows, see docs/operations-postgres.md).
This run: **{_fig(report, "audit.bytes_per_row")}**, table + indexes
(`audit.bytes_per_row`, target ≤ 200); AuditWriter {_fig(report, "audit.write_rows_per_s")}
beside raw binary COPY in {_fig(report, "audit.raw_copy_in_rows_per_s")}; the replay read
{_fig(report, "replay.postgres_read")} (`replay.postgres_read`) beside raw binary COPY out
{_fig(report, "audit.raw_copy_out_rows_per_s")}. `replay.postgres` (the whole rebuild, through
the Redis apply) is bounded by the apply, not by the read.

Each change on its own (`python -m benchmarks.audit_steps`; every step rebuilt the same way, so
steps compare with each other):

{STEPS}

Previous schema and writer against the new ones, same rows, interleaved (wall figures follow
the machine's load; the client CPU figures do not):

{AB}

The read keeps up with ≥ 80,000 entries/s only where its process gets a core: it costs about
4-5 µs of client CPU per entry (half of it building the frozen `ScoreEntry` and
`MatchResultSubmitted` objects the fold takes), i.e. about
{_fig(report, "replay.postgres_read_per_cpu_s")} per CPU-second of the reader
(`replay.postgres_read_per_cpu_s`), and PostgreSQL streams the rows in the unique key's order
without a sort (raw binary COPY out is the server's limit above). Under a loaded machine the
wall rate is the reader's share of a core, not the code's limit. Next step if the wall rate must
hold under load too: build the entries in a second process (the fold's input is plain data).
"""
