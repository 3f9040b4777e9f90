"""Scenario 1, ingest: drain a pre-produced backlog through the projector and sinks workers.

Figures: entries/s applied to Redis, audit rows/s written to PostgreSQL, and end to end (first
applied entry to last audit row). The raw Kafka consume rate of the same records is measured
here too and reported as a baseline.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import (
    Namespace,
    Say,
    audit_rows,
    board_versions,
    kafka_consume_rate,
    retry,
    topic_end,
)
from benchmarks.machine_cpu import BENCH, SERVICES, CpuSnapshot, CpuSplit, describe, us_per_unit
from benchmarks.params import Params
from benchmarks.workload import board_configs, match_stream, now_ms
from processors.bootstrap import pg_connect, sync_redis
from processors.kafka.producer import LeaderboardProducer
from streams.settings import Settings

#: (perf_counter time, count) of the first observation of progress.
_First = tuple[float, int]


@dataclass(slots=True)
class IngestRun:
    """One drain of a pre-produced backlog."""

    entries: int
    produce_s: float
    redis_rate: float
    pg_rate: float
    e2e_rate: float
    rank_records: int
    kafka_raw_rate: float
    kafka_decode_rate: float
    complete: bool
    #: process CPU (user + system) per entry while draining: projector, sinks worker (µs)
    projector_cpu_us: float = float("nan")
    sinks_cpu_us: float = float("nan")
    #: the machine's CPU per entry by process group (µs) from the first applied entry to the
    #: last audit row (machine_cpu.us_per_unit), and while the backlog was produced
    drain_split: dict[str, float] = field(default_factory=dict)
    produce_split: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Drain:
    """What the drain watcher saw: first progress and completion, in Redis and PostgreSQL."""

    first_a: _First | None = None
    first_g: _First | None = None
    done_a: float | None = None
    done_g: float | None = None
    #: CPU seconds of each worker process at its first progress and at its completion
    cpu_first: dict[str, float] = field(default_factory=dict)
    cpu_done: dict[str, float] = field(default_factory=dict)
    #: every process group's CPU at the first applied entry and once both stores are complete
    split_first: CpuSnapshot | None = None
    split_done: CpuSnapshot | None = None


def ingest_once(base: Settings, p: Params, logs: Path, say: Say) -> IngestRun:
    """Pre-produce the backlog, start the workers, time the drain into Redis and PostgreSQL."""
    ns = Namespace(base, "ing", logs)
    try:
        total = p.ingest_records * p.entries_per_record
        split = CpuSplit(ns.settings, {})
        before = split.snapshot()
        produce_s = _produce_backlog(ns, p)
        produce_split = us_per_unit(before, split.snapshot(), total)
        scores = ns.settings.topic(ns.settings.scores_topic)
        raw_n, raw_s = kafka_consume_rate(ns.settings, scores, decode=False)
        dec_n, dec_s = kafka_consume_rate(ns.settings, scores, decode=True)
        say(f"  backlog {total:,} entries produced in {produce_s:.1f}s; workers starting")
        ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
        ns.spawn("sinks", ["worker", "--role", "sinks", "--loglevel", "warning"])
        split = CpuSplit(ns.settings, {"projector": ns.procs[0].pid, "sinks": ns.procs[1].pid})
        drain = _watch_drain(ns, total, logs, say, split)
        rank_records = topic_end(ns.settings, ns.settings.topic(ns.settings.rank_changes_topic))[0]
        run = IngestRun(
            total,
            produce_s,
            _rate(total, drain.first_a, drain.done_a),
            _rate(total, drain.first_g, drain.done_g),
            _e2e_rate(total, drain),
            rank_records,
            raw_n * p.entries_per_record / raw_s if raw_s else float("nan"),
            dec_n * p.entries_per_record / dec_s if dec_s else float("nan"),
            drain.done_a is not None and drain.done_g is not None,
            _cpu_us(drain, "projector", total, drain.first_a),
            _cpu_us(drain, "sinks", total, drain.first_g),
            _drain_split(drain, total),
            produce_split,
        )
        if not run.complete:
            raise RuntimeError("the drain did not complete (a worker failed or timed out)")
        say(
            f"  redis {run.redis_rate:,.0f}/s, audit {run.pg_rate:,.0f}/s, e2e "
            f"{run.e2e_rate:,.0f}/s, {rank_records:,} rank-change records; kafka raw "
            f"{run.kafka_raw_rate:,.0f} entries/s; CPU/entry projector "
            f"{run.projector_cpu_us:.1f} µs, sinks {run.sinks_cpu_us:.1f} µs"
        )
        say(f"  machine CPU/entry while draining: {describe(run.drain_split)}")
        say(f"  machine CPU/entry while producing: {describe(run.produce_split)}")
        return run
    finally:
        ns.cleanup()


def _produce_backlog(ns: Namespace, p: Params) -> float:
    """Configure the namespace's boards and produce the backlog: seconds the records took."""
    cfgs = board_configs(ns.tag, p.boards)
    ns.boards = [c.leaderboard_id for c in cfgs]
    rng = random.Random(8)
    with LeaderboardProducer(ns.settings) as prod:
        for cfg in cfgs:
            prod.configure(cfg)
        t0 = time.perf_counter()
        stream = match_stream(
            rng, ns.boards, p.players, p.ingest_records, p.entries_per_record, now_ms()
        )
        if p.coalesce > 1 and p.entries_per_record == 1:
            with prod.coalescer(max_submissions=p.coalesce) as co:
                for m in stream:
                    co.submit(m)
        else:
            for m in stream:
                prod.submit(m)
        prod.flush(120)
        return time.perf_counter() - t0


def _watch_drain(ns: Namespace, total: int, logs: Path, say: Say, split: CpuSplit) -> _Drain:
    """Poll board versions and audit rows until both reach ``total`` (or a worker dies);
    ``split`` is read at the first applied entry and once both are complete."""
    r = sync_redis(url=ns.settings.redis_url)
    conn = pg_connect(ns.settings, autocommit=True)
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    if backend:
        split.count_as_bench(int(backend[0]))
    drain = _Drain()
    deadline = time.monotonic() + max(180.0, total / 2_000)
    last_pg = 0.0
    try:
        while time.monotonic() < deadline and (drain.done_a is None or drain.done_g is None):
            now = time.perf_counter()
            a = board_versions(r, ns.boards)
            if a and drain.first_a is None:
                drain.first_a = (now, a)
                drain.split_first = split.snapshot()
                _cpu_mark(drain.cpu_first, "projector", ns.procs[0].pid)
            if a >= total and drain.done_a is None:
                drain.done_a = now
                _cpu_mark(drain.cpu_done, "projector", ns.procs[0].pid)
            if now - last_pg >= 0.5 or drain.done_a is not None:
                last_pg = now
                g = audit_rows(conn, ns.boards)
                if g and drain.first_g is None:
                    drain.first_g = (now, g)
                    _cpu_mark(drain.cpu_first, "sinks", ns.procs[1].pid)
                if g >= total and drain.done_g is None:
                    drain.done_g = now
                    _cpu_mark(drain.cpu_done, "sinks", ns.procs[1].pid)
            if drain.done_a is not None and drain.done_g is not None:
                drain.split_done = split.snapshot()
            if any(proc.poll() is not None for proc in ns.procs):
                say("  a worker exited early: see its log under " + str(logs))
                break
            time.sleep(0.2)
    finally:
        r.close()
        conn.close()
    return drain


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a live process used so far, from /proc (None if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # after the command: state is field 3, utime and stime are fields 14 and 15 (man proc)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_mark(marks: dict[str, float], name: str, pid: int) -> None:
    cpu = process_cpu_s(pid)
    if cpu is not None:
        marks[name] = cpu


def _cpu_us(drain: _Drain, name: str, total: int, first: _First | None) -> float:
    """µs of a worker's CPU per entry from its first progress to completion (NaN if unseen)."""
    if name not in drain.cpu_first or name not in drain.cpu_done or first is None:
        return float("nan")
    done = total - first[1]
    return 1e6 * (drain.cpu_done[name] - drain.cpu_first[name]) / done if done else float("nan")


def _drain_split(drain: _Drain, total: int) -> dict[str, float]:
    """µs of CPU per entry by process group over the end-to-end window (empty if unseen)."""
    if drain.split_first is None or drain.split_done is None or drain.first_a is None:
        return {}
    return us_per_unit(drain.split_first, drain.split_done, total - drain.first_a[1])


def _rate(total: int, first: _First | None, done: float | None) -> float:
    """Entries/s from the first observed progress to completion (NaN if not both seen)."""
    if first is None or done is None or done <= first[0]:
        return float("nan")
    return (total - first[1]) / (done - first[0])


def _e2e_rate(total: int, drain: _Drain) -> float:
    """Entries/s from the first entry applied to Redis to the last audit row."""
    if drain.first_a is not None and drain.done_g is not None and drain.done_g > drain.first_a[0]:
        return (total - drain.first_a[1]) / (drain.done_g - drain.first_a[0])
    return float("nan")


def run_ingest(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> list[IngestRun]:
    """Run ingest ``p.reps`` times, add its figures to ``report`` and return the runs."""
    runs: list[IngestRun] = []
    for i in range(p.reps):
        say(f"[ingest] run {i + 1}/{p.reps}")
        runs.append(retry(lambda: ingest_once(base, p, logs, say), say))
    params = (
        f"{p.ingest_records:,} records \u00d7 {p.entries_per_record} entries, {p.boards} boards, "
        "6 partitions, 1 projector + 1 sinks worker, batch 500"
    )
    report.add(
        Figure(
            "1 ingest",
            "end to end (Redis + audit), entries/s",
            "entries/s",
            [x.e2e_rate for x in runs],
            params + "; from first applied entry to last audit row",
            Target(20_000, True, "≥ 20,000 entries/s"),
            key="ingest.e2e_entries_per_s",
        )
    )
    report.add(
        Figure(
            "1 ingest",
            "applied to Redis, entries/s",
            "entries/s",
            [x.redis_rate for x in runs],
            params,
            key="ingest.redis_entries_per_s",
        )
    )
    report.add(
        Figure(
            "1 ingest",
            "written to PostgreSQL audit, rows/s",
            "rows/s",
            [x.pg_rate for x in runs],
            params,
            key="ingest.audit_rows_per_s",
        )
    )
    for who, values in (
        ("projector", [x.projector_cpu_us for x in runs]),
        ("sinks", [x.sinks_cpu_us for x in runs]),
    ):
        report.add(
            Figure(
                "1 ingest",
                f"{who} process CPU per entry while draining, µs",
                "µs",
                values,
                params + "; user + system CPU from first progress to completion",
                key=f"ingest.{who}_cpu_us_per_entry",
            )
        )
    _split_figures(runs, params, report)
    report.alias(
        "ingest.e2e", "ingest.e2e_entries_per_s", Target(30_000, True, "≥ 30,000 entries/s")
    )
    report.details["ingest runs"] = [asdict(x) for x in runs]
    return runs


def _split_figures(runs: list[IngestRun], params: str, report: Report) -> None:
    """The machine's CPU per entry by process group, while draining and while producing."""
    window = "; user + system CPU from /proc from the first applied entry to the last audit row"
    for who, what in (
        *((name, f"{name} (whole service)") for name in SERVICES),
        ("machine", "every process of the run together (services, workers, bench)"),
        ("other", "other programs on the machine meanwhile (not counted in machine)"),
    ):
        report.add(
            Figure(
                "1 ingest",
                f"while draining, CPU per entry: {what}, µs",
                "µs",
                [x.drain_split.get(who, float("nan")) for x in runs],
                params + window,
                key=f"ingest.{who}_cpu_us_per_entry",
            )
        )
    for who, what in ((BENCH, "the SDK producer"), ("kafka", "the Kafka broker")):
        report.add(
            Figure(
                "1 ingest",
                f"while producing the backlog, CPU per entry: {what}, µs",
                "µs",
                [x.produce_split.get(who, float("nan")) for x in runs],
                params + "; acks=all, idempotent, the producer settings of processors/kafka",
                key=f"ingest.produce_{'client' if who == BENCH else who}_cpu_us_per_entry",
            )
        )
