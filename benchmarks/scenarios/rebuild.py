"""Scenario 4b: ``rebuild --all`` after Redis lost every board, and the bulk-load limit.

``Params.rebuild_boards`` boards of ``Params.rebuild_entries`` entries each (matches of
``entries_per_record`` distinct players) are produced, and the live projector group's offsets
are committed at the end of the log (a projector that had applied and published everything
when Redis lost it). Then ``rebuild_all`` rebuilds and swaps every board, with ``--parallel 2``
and with ``--parallel 1``; and the same members go to Redis through the bulk loader's
pipelined ZADDs alone, the bound of the load step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import Namespace, Say
from benchmarks.params import Params
from benchmarks.scenarios.big_board import _big_board_matches
from benchmarks.workload import now_ms
from processors.bootstrap import kafka_consumer, redis_at
from processors.kafka.producer import LeaderboardProducer
from processors.replay import rebuild_all, worker_start_method
from projections import bulk
from projections.keys import BoardKeys
from streams import rules
from streams.events import LeaderboardConfigured
from streams.settings import Settings

log = logging.getLogger(__name__)


def run_rebuild(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> None:
    """Run the rebuild scenario; a failure is noted and the rest of the run kept."""
    try:
        asyncio.run(_rebuild_scenario(base, p, report, logs, say))
    except Exception as exc:  # a shared stack may restart under us: keep the rest
        log.exception("rebuild scenario failed")
        report.details["rebuild scenario failed"] = repr(exc)[:300]
        say(f"  rebuild scenario failed: {exc!r}")


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its children it has waited for."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _pid_cpu_s(pid: int | None) -> float:
    """CPU seconds of process ``pid`` (0 when unknown or not on this machine)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _redis_pid(settings: Settings) -> int | None:
    """The Redis server's process id, if it runs on this machine (else None)."""
    client = redis_at(settings.redis_url)
    try:
        pid = int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()
    return pid if _is_redis(pid) else None


def _is_redis(pid: int) -> bool:
    """Whether process ``pid`` of this machine is a Redis server (not one of another host)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("redis")
    except OSError:
        return False


def commit_at_end(settings: Settings) -> None:
    """Commit the live projector group's offsets at the end of every score partition."""
    topic = settings.topic(settings.scores_topic)
    consumer = kafka_consumer(settings, **{"group.id": settings.app_id})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        offsets = []
        for part in meta.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            offsets.append(TopicPartition(topic, part, high))
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


async def _rebuild_scenario(
    base: Settings, p: Params, report: Report, logs: Path, say: Say
) -> None:
    ns = Namespace(base, "rebuild", logs)
    k = p.entries_per_record
    n, size = p.rebuild_boards, p.rebuild_entries
    cfgs = {
        f"{ns.tag}-{i:02d}": LeaderboardConfigured(f"{ns.tag}-{i:02d}", configured_at=now_ms())
        for i in range(n)
    }
    ns.boards = list(cfgs)
    try:
        say(f"[rebuild] producing {n} boards x {size:,} entries")
        with LeaderboardProducer(ns.settings) as prod:
            for cfg in cfgs.values():
                prod.configure(cfg)
            for board in cfgs:
                for m in _big_board_matches(board, size, k, now_ms() - 3_600_000):
                    prod.submit(m)
        del prod  # its Kafka client's threads end: the rebuild's workers can then be forked
        await asyncio.to_thread(commit_at_end, ns.settings)
        # forked workers start with the project imported; spawned ones import it (~1.2 s each)
        report.details["rebuild workers started by"] = worker_start_method()
        cpu: list[float] = []
        machine: list[float] = []
        redis_pid = await _redis_pid(ns.settings)
        for parallel, key in ((2, "rebuild.all"), (1, "rebuild.all_serial")):
            rates = []
            for i in range(p.reps):
                say(f"[rebuild] --all --parallel {parallel}, run {i + 1}/{p.reps}")
                t0, c0 = time.perf_counter(), time.process_time()
                m0 = _own_cpu_s() + _pid_cpu_s(redis_pid)
                reps = await rebuild_all(ns.settings, dict(cfgs), parallel=parallel)
                seconds = time.perf_counter() - t0
                entries = sum(r.entries for r in reps)
                rates.append(entries / seconds)
                if parallel == 1 and entries:  # the boards ran in this process
                    cpu.append((time.process_time() - c0) / entries * 1e6)
                if parallel > 1 and entries and redis_pid:  # workers reaped by the pool
                    used = _own_cpu_s() + _pid_cpu_s(redis_pid) - m0
                    machine.append(used / entries * 1e6)
                say(f"  {entries:,} entries in {seconds:.1f}s: {entries / seconds:,.0f}/s")
            report.add(
                Figure(
                    "4 replay",
                    f"rebuild --all --parallel {parallel}, entries/s",
                    "entries/s",
                    rates,
                    f"{n} boards x {size:,} entries ({size // k:,} records each) on "
                    f"{ns.settings.partitions} partitions, Redis emptied of them before; fold "
                    "+ bulk load + check + swap, worker processes included",
                    Target(150_000, True, "\u2265 150,000 entries/s") if parallel > 1 else None,
                    key=key,
                )
            )
        report.add(
            Figure(
                "4 replay",
                "rebuild --all --parallel 1, CPU of the rebuilding process per entry",
                "µs/entry",
                cpu,
                f"{n} boards x {size:,} entries; process CPU time (threads of the Kafka "
                "client included, Redis not) ÷ entries: the figure a loaded machine leaves "
                "comparable between runs",
                key="rebuild.cpu_us_per_entry",
            )
        )
        if machine:
            report.add(
                Figure(
                    "4 replay",
                    "rebuild --all --parallel 2, CPU of the rebuild and of Redis per entry",
                    "µs/entry",
                    machine,
                    f"{n} boards x {size:,} entries; CPU time of this process, its worker "
                    "processes (and theirs) and the Redis server ÷ entries (Kafka's broker "
                    "not counted: about 1 µs more here, much of it its idle ticks): what one "
                    "entry costs the machine, comparable on a loaded one",
                    key="rebuild.all_cpu_us_per_entry",
                )
            )
        await _zadd_limit(ns, p, report, say)
    finally:
        ns.cleanup(audit=False)


async def _zadd_limit(ns: Namespace, p: Params, report: Report, say: Say) -> None:
    """Members/s of the bulk loader's pipelined ZADDs alone (10,000 members per command)."""
    size = p.rebuild_entries * 10
    rows = sorted(
        (
            -(i * 7919 % size),
            rules.member(1_790_000_000_000 + i // 10, i // 10, i % 10, f"u{i:07d}"),
        )
        for i in range(size)
    )
    client = redis_at(ns.settings.redis_url)
    rates = []
    try:
        for i in range(p.reps):
            key = BoardKeys(f"{ns.tag}-zadd{uuid.uuid4().hex[:4]}", "lbr").zset("all")
            say(f"[rebuild] bulk ZADD limit, run {i + 1}/{p.reps}")
            out = bulk.Sender(client)
            t0 = time.perf_counter()
            try:
                for start in range(0, size, bulk.CHUNK):
                    part = rows[start : start + bulk.CHUNK]
                    await out.send("ZADD", key, *[x for row in part for x in row])
                await out.flush()
            finally:
                await out.close()
            rates.append(size / (time.perf_counter() - t0))
            await client.unlink(key)
    finally:
        await client.aclose()
    report.add(
        Figure(
            "4 replay",
            "bulk-load limit: pipelined ZADD of 10,000 members per command, members/s",
            "members/s",
            rates,
            f"{size:,} (score, 26-character tie-break member) pairs into one sorted set, "
            f"hiredis-packed, {bulk.PIPELINE_ARGS:,} arguments per round trip; the sorted sets are "
            "one of the load's two per-participant writes (the member hash the other)",
            key="replay.bulk_zadd_members_per_s",
        )
    )
