"""Profiles: ``Projector.process`` in-process (no Faust) under pyinstrument, and its Lua cost.

Figures: in-process entries/s, the Redis time inside the apply script per entry (INFO
commandstats: wall time, which a loaded machine inflates), the Redis main thread's CPU per
entry (INFO cpu, which load distorts far less) and the Redis commands run per entry (INFO
commandstats calls: a count, which load does not change at all); the profile text goes into
BENCHMARKS.md.
pyinstrument is a dev extra: without it the scenario is reported as not run.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from benchmarks.figures import Figure, Report
from benchmarks.harness import Namespace, Say, topic_end
from benchmarks.params import Params
from benchmarks.workload import board_configs, match_stream, now_ms
from processors.bootstrap import get_codec, kafka_consumer, redis_at, sync_redis
from processors.kafka.producer import LeaderboardProducer
from processors.workers.projector import Projector, RawRecord
from projections.store import RankingStore
from streams.events import LeaderboardConfigured
from streams.settings import Settings


def has_profiler() -> bool:
    """True if pyinstrument (the dev extra) is installed."""
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return False
    return True


def profile_text(profiler: Any, keep: int = 45) -> str:
    """The first ``keep`` non-blank lines of a pyinstrument profile, as plain text."""
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[:keep])


def _evalsha_usec(r: redis.Redis) -> tuple[int, int]:
    """(calls, microseconds) of EVALSHA so far, from INFO commandstats."""
    stats: dict[str, Any] = r.info("commandstats")
    s = stats.get("cmdstat_evalsha") or {}
    return int(s.get("calls", 0)), int(s.get("usec", 0))


def _commands(r: redis.Redis) -> int:
    """Redis commands run so far except EVALSHA and INFO: the apply script's redis.call()s
    (INFO commandstats counts them) and the projector's own commands."""
    stats: dict[str, Any] = r.info("commandstats")
    skip = ("cmdstat_evalsha", "cmdstat_info")
    return sum(int(v.get("calls", 0)) for k, v in stats.items() if k not in skip)


def _redis_cpu_s(r: redis.Redis) -> float:
    """CPU seconds (user + system) of the Redis main thread so far, from INFO cpu."""
    cpu: dict[str, Any] = r.info("cpu")
    return float(cpu.get("used_cpu_user_main_thread", 0.0)) + float(
        cpu.get("used_cpu_sys_main_thread", 0.0)
    )


def _produce_halves(
    ns: Namespace, p: Params
) -> tuple[dict[str, LeaderboardConfigured], list[list[str]]]:
    """Produce ``p.profile_records`` records on each of two disjoint halves of the boards."""
    cfgs = {c.leaderboard_id: c for c in board_configs(ns.tag, 2 * p.boards)}
    ns.boards = list(cfgs)
    names = list(cfgs)
    halves = [names[: p.boards], names[p.boards :]]
    rng = random.Random(6)
    with LeaderboardProducer(ns.settings) as prod:
        for half in halves:
            for m in match_stream(
                rng, half, p.players, p.profile_records, p.entries_per_record, now_ms()
            ):
                prod.submit(m)
    return cfgs, halves


def _read_raw(settings: Settings) -> list[RawRecord]:
    """Every record of the score topic, read back from Kafka undecoded."""
    scores = settings.topic(settings.scores_topic)
    total, parts = topic_end(settings, scores)
    c = kafka_consumer(settings, **{"group.id": f"bp-{uuid.uuid4().hex[:6]}"})
    raws: list[RawRecord] = []
    try:
        c.assign([TopicPartition(scores, q, OFFSET_BEGINNING) for q in range(parts)])
        while len(raws) < total:
            for msg in c.consume(10_000, timeout=1.0):
                part, off = msg.partition(), msg.offset()
                if not msg.error() and part is not None and off is not None:
                    raws.append(RawRecord(part, off, msg.key(), msg.value()))
    finally:
        c.close()
    return raws


async def profile_projector(
    ns: Namespace, p: Params, say: Say
) -> tuple[float, float, float, float, float, str]:
    """Projector.process on batches of 500 raw records read back from Kafka.

    Returns (entries/s unprofiled, Redis Lua µs per entry, Redis main-thread CPU µs per entry,
    Redis commands per entry, profiled entries/s, profile text).
    """
    from pyinstrument import Profiler

    settings = ns.settings
    cfgs, halves = _produce_halves(ns, p)
    raws = _read_raw(settings)
    sets = [[x for x in raws if (x.key or b"").decode() in set(half)] for half in halves]
    client = redis_at(settings.redis_url)
    sync = sync_redis(url=settings.redis_url)
    producer = LeaderboardProducer(settings)
    proj = Projector(settings, RankingStore(client), cfgs.get, get_codec(settings), producer)
    results: list[float] = []
    lua = cpu = calls = 0.0
    text = ""
    try:
        for i, recs in enumerate(sets):
            profiler = Profiler(async_mode="enabled") if i == 1 else None
            _, usec0 = _evalsha_usec(sync)
            cpu0 = _redis_cpu_s(sync)
            calls0 = _commands(sync)
            entries = 0
            if profiler is not None:
                profiler.start()
            t0 = time.perf_counter()
            for s in range(0, len(recs), 500):
                stats = await proj.process(recs[s : s + 500])
                entries += stats.entries_applied
            dt = time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
                text = profile_text(profiler)
            _, usec1 = _evalsha_usec(sync)
            if i == 0:
                lua = (usec1 - usec0) / max(entries, 1)
                cpu = (_redis_cpu_s(sync) - cpu0) * 1e6 / max(entries, 1)
                calls = (_commands(sync) - calls0) / max(entries, 1)
            results.append(entries / dt)
        say(
            f"  Projector.process {results[0]:,.0f} entries/s in-process; Lua "
            f"{lua:.1f} µs/entry (Redis CPU {cpu:.1f} µs/entry, {calls:.2f} commands/entry); "
            f"profiled {results[1]:,.0f} "
            "entries/s"
        )
    finally:
        producer.close(10)
        await client.aclose()
        sync.close()
    return results[0], lua, cpu, calls, results[1], text


def run_profile(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> None:
    """Profile Projector.process and add its figures and profile text (or why it did not run)."""
    if not has_profiler():
        report.profiles["Projector.process"] = (
            "not run: pyinstrument missing (pip install -e '.[dev]')"
        )
        return
    say("[profile] Projector.process")
    ns = Namespace(base, "prof", logs)
    try:
        proc_rate, lua, cpu, calls, prate, text = asyncio.run(profile_projector(ns, p, say))
    finally:
        ns.cleanup()
    report.add(
        Figure(
            "profile",
            "Projector.process in-process (no Faust), entries/s",
            "entries/s",
            [proc_rate],
            f"{p.profile_records:,} records \u00d7 {p.entries_per_record} entries, batches of "
            "500, real Redis + producer",
            key="profile.projector_entries_per_s",
        )
    )
    report.add(
        Figure(
            "profile",
            "Redis time inside the apply Lua script, µs per entry",
            "µs",
            [lua],
            "INFO commandstats cmdstat_evalsha usec delta / entries",
            key="profile.lua_us_per_entry",
        )
    )
    report.add(
        Figure(
            "profile",
            "Redis main-thread CPU while Projector.process applies, µs per entry",
            "µs",
            [cpu],
            "INFO cpu used_cpu_user/sys_main_thread delta / entries (the apply script and the "
            "outbox acknowledgements; CPU time, which a loaded machine distorts less)",
            key="profile.redis_cpu_us_per_entry",
        )
    )
    report.add(
        Figure(
            "profile",
            "Redis commands per entry while Projector.process applies",
            "commands",
            [calls],
            "INFO commandstats calls delta / entries, EVALSHA and INFO left out: the apply "
            "script's redis.call()s and the projector's own commands (a count: load-free)",
            key="profile.redis_commands_per_entry",
        )
    )
    report.profiles[
        f"Projector.process ({p.profile_records:,} records, {prate:,.0f} entries/s under "
        "the profiler)"
    ] = text
