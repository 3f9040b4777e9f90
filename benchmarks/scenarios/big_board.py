"""Scenarios 3-5 on one big board: load, Redis queries, replay and memory.

One board of ``Params.big_board`` participants is loaded through ``RankingStore.apply`` (with
the audit rows COPYed by ``AuditWriter``), then measured: Redis bytes per entry, direct query
latencies (and the HTTP gateway's, see scenarios/http.py), and ``replay_board`` rebuilds from
Kafka and from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import Namespace, Say
from benchmarks.params import Params
from benchmarks.scenarios.http import http_scenario, query_slug
from benchmarks.scenarios.profile import has_profiler, profile_text
from benchmarks.stats import percentile
from benchmarks.workload import now_ms
from processors.bootstrap import audit_writer, redis_at
from processors.kafka.producer import LeaderboardProducer
from processors.replay import replay_board
from projections.keys import BoardKeys
from projections.store import RankingStore, SourceRecord
from streams.events import LeaderboardConfigured, MatchResultSubmitted, RankChanged, ScoreEntry
from streams.partitioning import partition_for
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The scenarios that need the big board.
BIG_BOARD_SCENARIOS = frozenset({"queries", "replay", "memory"})


def _big_board_matches(board: str, n: int, k: int, start_ms: int) -> list[MatchResultSubmitted]:
    """``n`` entries in matches of ``k`` distinct players, log-normal scores, 1 ms apart."""
    rng = random.Random(3)
    out = []
    for i in range(n // k):
        entries = tuple(
            ScoreEntry(f"u{i * k + j:07d}", int(rng.lognormvariate(9.0, 1.5)) + 1) for j in range(k)
        )
        eid = str(uuid.uuid4())
        out.append(MatchResultSubmitted(eid, eid, board, start_ms + i, entries))
    return out


async def load_big_board(
    settings: Settings, cfg: LeaderboardConfigured, matches: Sequence[MatchResultSubmitted]
) -> tuple[float, float]:
    """Apply ``matches`` with RankingStore.apply (500 records per call) and COPY the audit.

    Returns (Redis entries/s, audit COPY rows/s).
    """
    client = redis_at(settings.redis_url)
    store = RankingStore(client, overtaken_limit=0)
    part = partition_for(cfg.leaderboard_id, settings.partitions)
    redis_s = pg_s = 0.0
    entries = 0
    try:
        async with audit_writer(settings) as writer:
            for start in range(0, len(matches), 500):
                recs = [
                    SourceRecord(part, start + i, m)
                    for i, m in enumerate(matches[start : start + 500])
                ]
                t0 = time.perf_counter()
                (out,) = await store.apply([(cfg, recs)])
                await store.acknowledge([out])
                t1 = time.perf_counter()
                entries += len(out.changes)
                versions = [c.version for c in out.changes]
                await writer.write(
                    [
                        RankChanged(
                            cfg.leaderboard_id, min(versions), max(versions), tuple(out.changes)
                        )
                    ]
                )
                redis_s += t1 - t0
                pg_s += time.perf_counter() - t1
    finally:
        await client.aclose()
    return entries / redis_s, entries / pg_s


async def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Latencies (ms) of ``n`` sequential awaits of ``fn()``."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def direct_queries(
    settings: Settings, cfg: LeaderboardConfigured, size: int, samples: int
) -> dict[str, list[float]]:
    """Latencies (ms) of top 100, rank with 5 neighbours, page at offset size/2, via Redis."""
    client = redis_at(settings.redis_url)
    store = RankingStore(client)
    rng = random.Random(4)
    board, period, sort = cfg.leaderboard_id, "all", cfg.sort_order
    try:
        await store.top(board, period, sort, limit=100)  # connect
        return {
            "top 100": await _timed(lambda: store.top(board, period, sort, limit=100), samples),
            "rank + 5 neighbours": await _timed(
                lambda: store.around(board, period, sort, f"u{rng.randrange(size):07d}", 5),
                samples,
            ),
            f"page of 100 at offset {size // 2:,}": await _timed(
                lambda: store.top(board, period, sort, limit=100, offset=size // 2), samples
            ),
        }
    finally:
        await client.aclose()


async def board_memory(settings: Settings, board: str) -> dict[str, int]:
    """MEMORY USAGE (SAMPLES 0) of every key of ``board``, by key suffix (the buckets of a
    participant index summed as ``m:<period>:*``, those of the event ids as ``ev:*:*``)."""
    client = redis_at(settings.redis_url)
    keys = BoardKeys(board)
    try:
        out: dict[str, int] = defaultdict(int)
        async for raw in client.scan_iter(match=keys.pattern, count=1000):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            used = await client.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
            out[_kind(name[len(keys.base) + 1 :])] += int(used or 0)
        return dict(out)
    finally:
        await client.aclose()


def _kind(suffix: str) -> str:
    """A key suffix with a participant-index or event-id bucket replaced by ``*`` (and an
    event-id bucket's day too)."""
    parts = suffix.split(":")
    if parts[0] == "m" and len(parts) == 3:
        return f"m:{parts[1]}:*"
    if parts[0] == "ev" and len(parts) == 3:
        return "ev:*:*"
    return suffix


async def _info_used(settings: Settings) -> int:
    """Redis INFO used_memory, in bytes."""
    client = redis_at(settings.redis_url)
    try:
        info: dict[str, Any] = await client.info("memory")
        return int(info.get("used_memory", 0))
    finally:
        await client.aclose()


def run_big_board(
    base: Settings, p: Params, want: set[str], report: Report, logs: Path, say: Say
) -> None:
    """Run the big-board scenarios in ``want``; a failure is noted and the rest kept."""
    if not want & BIG_BOARD_SCENARIOS:
        return
    try:
        asyncio.run(big_board_scenarios(base, p, want, report, logs, say))
    except Exception as exc:  # a shared stack may restart under us: keep the rest
        log.exception("big-board scenarios failed")
        report.details["big-board scenarios failed"] = repr(exc)[:300]
        say(f"  big-board scenarios failed: {exc!r}")


async def big_board_scenarios(
    base: Settings, p: Params, want: set[str], report: Report, logs: Path, say: Say
) -> None:
    """Load one big board, then measure memory, queries and replay on it as ``want`` asks."""
    ns = Namespace(base, "big", logs)
    cfg = LeaderboardConfigured(f"{ns.tag}-big", configured_at=now_ms())
    ns.boards = [cfg.leaderboard_id]
    try:
        used = await _load(ns, p, cfg, report, say)
        if "memory" in want:
            await _memory_figures(ns, p, cfg, report, used)
        if "queries" in want:
            await _query_figures(ns, p, cfg, report, say)
            await http_scenario(ns, p, cfg, p.big_board, report, say)
        if "replay" in want:
            await _replay_figures(ns, p, cfg, report, say)
            if "profile" in want and has_profiler():
                await _profile_replay(ns, p, cfg, report)
    finally:
        ns.cleanup()


async def _load(
    ns: Namespace, p: Params, cfg: LeaderboardConfigured, report: Report, say: Say
) -> int:
    """Produce the board's log, load it into Redis + audit: used_memory growth in bytes."""
    size = p.big_board
    k = p.entries_per_record
    say(f"[big board] producing {size:,} entries")
    matches = _big_board_matches(cfg.leaderboard_id, size, k, now_ms() - 3_600_000)
    with LeaderboardProducer(ns.settings) as prod:
        prod.configure(cfg)
        for m in matches:
            prod.submit(m)
    mem0 = int(await _info_used(ns.settings))
    say("[big board] loading through RankingStore.apply + AuditWriter")
    load_rate, copy_rate = await load_big_board(ns.settings, cfg, matches)
    mem1 = int(await _info_used(ns.settings))
    del matches
    report.add(
        Figure(
            "3 queries",
            "board load via RankingStore.apply (Lua), entries/s",
            "entries/s",
            [load_rate],
            f"{size:,} participants, 500 records \u00d7 {k} entries per call, one client",
            key="queries.load_entries_per_s",
        )
    )
    report.add(
        Figure(
            "4 replay",
            "audit COPY via AuditWriter, rows/s",
            "rows/s",
            [copy_rate],
            "one RankChanged of 5,000 changes per write",
            key="audit.copy_rows_per_s",
        )
    )
    return mem1 - mem0


async def _memory_figures(
    ns: Namespace, p: Params, cfg: LeaderboardConfigured, report: Report, used: int
) -> None:
    """Bytes per entry of the board's keys (and the used_memory growth of the load)."""
    size = p.big_board
    k = p.entries_per_record
    usage = await board_memory(ns.settings, cfg.leaderboard_id)
    total = sum(usage.values())
    report.add(
        Figure(
            "5 memory",
            f"Redis bytes per entry at {size:,} entries (all board keys)",
            "B/entry",
            [total / size],
            f"MEMORY USAGE SAMPLES 0 summed over {len(usage)} keys; "
            f"{size // k:,} records of {k} entries (event-id set included)",
            Target(150, False, "≤ 150 B/entry"),
            key="memory.per_entry",
        )
    )
    report.details["memory by key (bytes per entry)"] = {
        key: round(v / size, 1) for key, v in sorted(usage.items())
    }
    report.details["memory: INFO used_memory delta per entry"] = round(used / size, 1)


async def _query_figures(
    ns: Namespace, p: Params, cfg: LeaderboardConfigured, report: Report, say: Say
) -> None:
    """p50/p99 of the direct Redis queries, ``p.reps`` runs."""
    size = p.big_board
    say("[queries] Redis direct")
    direct: dict[str, list[list[float]]] = {}
    for _ in range(p.reps):
        for name, lat in (await direct_queries(ns.settings, cfg, size, p.query_samples)).items():
            direct.setdefault(name, []).append(lat)
    for name, runs in direct.items():
        tgt = Target(5, False, "≤ 5 ms") if name in ("top 100", "rank + 5 neighbours") else None
        for q in (50, 99):
            report.add(
                Figure(
                    "3 queries",
                    f"Redis direct: {name}, p{q}",
                    "ms",
                    [percentile(x, q) for x in runs],
                    f"{size:,} participants; RankingStore (redis.asyncio), 1 client, "
                    f"{p.query_samples:,} sequential queries per run",
                    tgt if q == 99 else None,
                    key=f"redis.{query_slug(name)}_p{q}",
                )
            )


async def _replay_figures(
    ns: Namespace, p: Params, cfg: LeaderboardConfigured, report: Report, say: Say
) -> None:
    """Rebuild rates from Kafka and from PostgreSQL, ``p.reps`` runs each."""
    size = p.big_board
    k = p.entries_per_record
    for source in ("kafka", "postgres"):
        rates = []
        for i in range(p.reps):
            say(f"[replay] {source} run {i + 1}/{p.reps}")
            rep = await replay_board(ns.settings, cfg, source=source)
            rates.append(rep.rate)
            say(f"  {rep.entries:,} entries in {rep.seconds:.1f}s: {rep.rate:,.0f}/s")
        report.add(
            Figure(
                "4 replay",
                f"rebuild from {'Kafka' if source == 'kafka' else 'PostgreSQL'}, entries/s",
                "entries/s",
                rates,
                f"replay_board of {size:,} entries ({size // k:,} records) into shadow "
                "keys, no verify",
                Target(100_000, True, "≥ 100,000 entries/s")
                if source == "kafka"
                else Target(80_000, True, "≥ 80,000 entries/s"),
                key=f"replay.{source}",
            )
        )


async def _profile_replay(
    ns: Namespace, p: Params, cfg: LeaderboardConfigured, report: Report
) -> None:
    """One replay from Kafka under pyinstrument; its text goes to the report's profiles."""
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="enabled")
    profiler.start()
    rep = await replay_board(ns.settings, cfg, source="kafka")
    profiler.stop()
    report.profiles[
        f"replay_board from Kafka ({p.big_board:,} entries, {rep.rate:,.0f} entries/s under "
        "the profiler)"
    ] = profile_text(profiler)
