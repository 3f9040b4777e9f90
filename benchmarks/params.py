"""Benchmark sizes (the ``full`` and ``quick`` presets) and the scenarios ``--only`` accepts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes of every scenario; ``full()`` and ``quick()`` are the only two presets."""

    name: str
    reps: int
    ingest_records: int
    entries_per_record: int
    boards: int
    players: int
    latency_rate: int
    latency_low_rate: int
    latency_seconds: float
    naive_entries: int
    zadd_ops: int
    big_board: int
    query_samples: int
    http_clients: int
    http_requests: int
    profile_records: int
    audit_rows: int = 200_000
    #: seconds of wrk load per HTTP query kind and run
    http_seconds: float = 5.0
    hot_seconds: float = 10.0
    hot_connections: int = 16
    hot_records: int = 30_000
    wait_rate: int = 1_000
    rebuild_boards: int = 10
    rebuild_entries: int = 100_000
    #: single-entry SDK records coalesced this many to a record (0: one record each)
    coalesce: int = 0
    #: ws: the viewer counts tried in order (until one fails) and the seconds each measures
    ws_steps: tuple[int, ...] = (500, 1_000, 2_000, 3_000)
    ws_seconds: float = 20.0

    @classmethod
    def full(cls) -> Params:
        """The full run (≤ 30 min on the 2-core dev machine)."""
        return cls(
            name="full",
            reps=3,
            ingest_records=50_000,
            entries_per_record=10,
            boards=20,
            players=100_000,
            latency_rate=10_000,
            latency_low_rate=2_000,
            latency_seconds=30.0,
            naive_entries=3_000,
            zadd_ops=1_000_000,
            big_board=1_000_000,
            query_samples=2_000,
            http_clients=16,
            http_requests=1_000,
            profile_records=10_000,
            audit_rows=1_000_000,
            hot_seconds=20.0,
            hot_connections=16,
            hot_records=60_000,
            wait_rate=1_000,
        )

    @classmethod
    def quick(cls) -> Params:
        """A smoke run (≤ 5 min): same scenarios, smaller sizes, fewer repetitions."""
        return cls(
            name="quick",
            reps=2,
            ingest_records=10_000,
            entries_per_record=10,
            boards=20,
            players=100_000,
            latency_rate=10_000,
            latency_low_rate=2_000,
            latency_seconds=8.0,
            naive_entries=500,
            zadd_ops=200_000,
            big_board=100_000,
            query_samples=300,
            http_clients=8,
            http_requests=300,
            http_seconds=3.0,
            profile_records=2_000,
            hot_seconds=6.0,
            hot_connections=16,
            hot_records=10_000,
            wait_rate=1_000,
            rebuild_boards=10,
            rebuild_entries=10_000,
            ws_steps=(250, 1_000, 2_000),
            ws_seconds=8.0,
        )


#: Scenario names accepted by ``--only`` with the parameters each one reports.
SCENARIOS: dict[str, str] = {
    "ingest": "pre-produced backlog of N match records (10 entries each, 20 boards, 100k "
    "players, uniform), then 1 projector + 1 sinks worker started; entries/s to Redis "
    "(sum of board versions) and to PostgreSQL (audit rows); Kafka raw consume of the same "
    "records as the limit",
    "latency": "fixed 10,000 entries/s (1,000 records/s), then 2,000 entries/s, with projector, "
    "sinks and gateway running, from a producer warmed by one acknowledged record; produce → "
    "rank change published (after the Redis apply), and produce → WebSocket delta of a "
    "tracked probe participant (10 probes/s)",
    "baselines": "naive synchronous design (per entry ZINCRBY + ZREVRANK + INSERT committed, "
    "one client); redis-benchmark ZADD pipelined (8 clients, pipeline 64)",
    "queries": "one board of 1,000,000 participants loaded through RankingStore.apply (Lua, "
    "500 records = 5,000 entries per call); top 100, rank with 5 neighbours, page of 100 at "
    "offset 500,000; Redis direct (1 client, sequential) and HTTP gateway (wrk, concurrent "
    "connections, 1 and 2 gateway processes)",
    "replay": "replay_board of the 1,000,000-entry board from Kafka and from PostgreSQL (audit "
    "rows written with AuditWriter COPY from the load's rank changes)",
    "rebuild": "rebuild --all of 10 boards x 100,000 entries (10,000 in --quick) after Redis "
    "lost them (the live group's offsets committed at the end of the log), --parallel 2 and "
    "--parallel 1 (with the rebuilding process's CPU per entry); and the bulk loader's "
    "pipelined ZADD alone (10,000 members per command)",
    "memory": "MEMORY USAGE (SAMPLES 0) summed over every key of the 1,000,000-entry board",
    "hot": "one hot board: HTTP single-score submits driven by wrk (every request a new "
    "participant, 2 threads x 16 connections) with projector, sinks and gateway running, until "
    "every accepted one is applied to Redis and the audit table; then POST ?wait=true paced at "
    "1,000/s by wrk (1 thread, 100 connections), then at 100/s; and N pre-produced "
    "single-entry SDK records to one board drained end to end",
    "audit": "N audit rows of one board (10 entries per record) written with AuditWriter into "
    "a month of their own; bytes per row of that partition (table + indexes), AuditWriter and "
    "raw binary COPY rows/s in, the replay read (_postgres_records) and raw COPY out",
    "ws": "one hot board with projector, sinks and ONE gateway process: 2,000 entries/s "
    "background and a probe score every 200 ms; N top-10 viewers (Node `ws` clients, installed "
    "from npm into the stack directory) for each N of the ladder until one fails; the largest "
    "N with push p99 ≤ 500 ms, every probe delivered to every viewer and none closed",
    "profile": "pyinstrument of Projector.process (batches of 500 records) and of replay_board",
}
