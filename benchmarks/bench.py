"""Benchmarks: ingest, latency, baselines, queries, replay and memory, in one run.

Every scenario runs against the real local stack in its own namespace (topic prefix, consumer
groups, board ids), states its parameters, and cleans up what it wrote. Figures are medians of
several runs with their min-max; the pure helpers (statistics, formatting, rendering) are
tested in tests/unit/test_bench_pure.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis
import redis.asyncio as aioredis
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from processors.bootstrap import audit_writer, get_codec
from processors.kafka.admin import create_topics
from processors.kafka.producer import LeaderboardProducer, client_config
from processors.replay import replay_board
from processors.workers.projector import Projector, RawRecord
from projections.keys import BoardKeys
from projections.store import RankingStore, SourceRecord
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.partitioning import partition_for
from streams.settings import PROJECT_ROOT, Settings
from streams.topics import all_topics

log = logging.getLogger(__name__)

Say = Callable[[str], None]

# ====================================================================== parameters


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
            profile_records=2_000,
        )


#: Scenario names accepted by ``--only`` with the parameters each one reports.
SCENARIOS: dict[str, str] = {
    "ingest": "pre-produced backlog of N match records (10 entries each, 20 boards, 100k "
    "players, uniform), then 1 projector + 1 sinks worker started; entries/s to Redis "
    "(sum of board versions) and to PostgreSQL (audit rows); Kafka raw consume of the same "
    "records as the limit",
    "latency": "fixed 10,000 entries/s (1,000 records/s), then 2,000 entries/s, with projector, "
    "sinks and gateway running; produce → rank change published (after the Redis apply), and "
    "produce → WebSocket delta of a tracked probe participant (10 probes/s)",
    "baselines": "naive synchronous design (per entry ZINCRBY + ZREVRANK + INSERT committed, "
    "one client); redis-benchmark ZADD pipelined (8 clients, pipeline 64)",
    "queries": "one board of 1,000,000 participants loaded through RankingStore.apply (Lua, "
    "500 records = 5,000 entries per call); top 100, rank with 5 neighbours, page of 100 at "
    "offset 500,000; Redis direct (1 client, sequential) and HTTP gateway (concurrent clients)",
    "replay": "replay_board of the 1,000,000-entry board from Kafka and from PostgreSQL (audit "
    "rows written with AuditWriter COPY from the load's rank changes)",
    "memory": "MEMORY USAGE (SAMPLES 0) summed over every key of the 1,000,000-entry board",
    "profile": "pyinstrument of Projector.process (batches of 500 records) and of replay_board",
}

# ====================================================================== pure helpers


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the runs; NaNs for no runs."""
    if not values:
        nan = float("nan")
        return nan, nan, nan
    return float(statistics.median(values)), float(min(values)), float(max(values))


def fmt_value(value: float, unit: str = "") -> str:
    """A figure for the table: thousands separators, sensible decimals, a dash for NaN."""
    if value != value:  # NaN
        return "\u2013"
    if unit == "\u00d7":
        if value < 1:
            return f"{value:.3f}\u00d7"
        return f"{value:,.1f}\u00d7" if value < 100 else f"{value:,.0f}\u00d7"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def fmt_range(values: Sequence[float], unit: str = "") -> str:
    """'min-max' of the runs (or a dash without runs, or the one value for a single run)."""
    if not values:
        return "\u2013"
    _, lo, hi = summary(values)
    if len(values) == 1:
        return fmt_value(lo, unit)
    return f"{fmt_value(lo, unit)}\u2013{fmt_value(hi, unit)}"


def ratio_runs(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """Ratios ours/base: the median ratio first, then the extreme ones (for min-max)."""
    if not ours or not base or min(base) <= 0:
        return []
    med = summary(ours)[0] / summary(base)[0]
    return [med, min(ours) / max(base), max(ours) / min(base)]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for a figure: ``value`` is a floor (``at_least``) or a ceiling."""

    value: float
    at_least: bool
    text: str

    def met(self, figure: float) -> bool:
        """True if ``figure`` satisfies the target."""
        return figure >= self.value if self.at_least else figure <= self.value

    def gap(self, figure: float) -> str:
        """How far ``figure`` is from the target, in words."""
        if figure != figure:
            return "not measured"
        if self.met(figure):
            return "met"
        if self.at_least:
            return f"missed by {1 - figure / self.value:.0%} ({figure / self.value:.0%} of it)"
        return f"missed: {figure / self.value:.2f}\u00d7 the ceiling"

    @classmethod
    def parse(cls, text: str) -> Target | None:
        """Rebuild a target from its text ('≥ 20,000 entries/s', '≤ 5 ms'); None if unknown."""
        m = re.match(r"\s*([\u2265\u2264])\s*([0-9][0-9,.]*)", text)
        if m is None:
            return None
        return cls(float(m.group(2).replace(",", "")), m.group(1) == "\u2265", text)


@dataclass(slots=True)
class Figure:
    """One row of the table: the runs of one measurement and what they mean."""

    scenario: str
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    params: str = ""
    target: Target | None = None
    note: str = ""
    ratio: bool = False

    @property
    def median(self) -> float:
        """Median of the runs (for ratios: the ratio of the medians)."""
        if self.ratio:
            return self.runs[0] if self.runs else float("nan")
        return summary(self.runs)[0]

    def range_text(self) -> str:
        """min-max text (for ratios: from the extreme pairs)."""
        return fmt_range(self.runs[1:] if self.ratio else self.runs, self.unit)

    def status(self) -> str:
        """Target text with met/missed, or the note when the figure was not measured."""
        if not self.runs:
            return self.note or "not run"
        if self.target is None:
            return ""
        mark = "✅" if self.target.met(self.median) else "❌"
        return f"{mark} {self.target.text}"


def render_table(figures: Sequence[Figure]) -> str:
    """The Markdown table: scenario, figure, median, min-max, runs, target."""
    lines = [
        "| Scenario | Figure | Median | Min\u2013max | Runs | Target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for f in figures:
        unit = "" if f.unit == "\u00d7" else f" {f.unit}"
        med = fmt_value(f.median, f.unit) + (unit if f.runs else "")
        runs = (3 if f.runs else 0) if f.ratio else len(f.runs)
        runs_text = "ratio" if f.ratio and f.runs else str(runs)
        lines.append(
            f"| {f.scenario} | {f.name} | {med} | {f.range_text()} | {runs_text} | {f.status()} |"
        )
    return "\n".join(lines)


def render_misses(figures: Sequence[Figure]) -> list[str]:
    """One bullet per missed (or unmeasured) target."""
    out = []
    for f in figures:
        if f.target is None:
            continue
        if not f.runs:
            out.append(f"- {f.scenario} / {f.name}: {f.note or 'not run'}")
        elif not f.target.met(f.median):
            unit = "" if f.unit == "\u00d7" else f" {f.unit}"
            out.append(
                f"- {f.scenario} / {f.name}: {fmt_value(f.median, f.unit)}{unit} vs "
                f"{f.target.text} → {f.target.gap(f.median)}"
            )
    return out


@dataclass(slots=True)
class Report:
    """Everything one run produced: figures, parameters, profiles and notes."""

    params: Params
    started: str
    machine: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, figure: Figure) -> Figure:
        """Append ``figure`` and return it."""
        self.figures.append(figure)
        return figure

    def get(self, scenario: str, name: str) -> Figure | None:
        """The figure of that scenario and name, if any."""
        return next((f for f in self.figures if f.scenario == scenario and f.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (benchmarks/results.json)."""
        return {
            "params": asdict(self.params),
            "started": self.started,
            "machine": self.machine,
            "seconds": round(self.seconds, 1),
            "figures": [
                {
                    "scenario": f.scenario,
                    "name": f.name,
                    "unit": f.unit,
                    "median": None if f.median != f.median else f.median,
                    "runs": f.runs,
                    "params": f.params,
                    "target": f.target.text if f.target else None,
                    "met": f.target.met(f.median) if f.target and f.runs else None,
                    "note": f.note,
                    "ratio": f.ratio,
                }
                for f in self.figures
            ],
            "details": self.details,
            "profiles": self.profiles,
        }


def report_from_json(data: dict[str, Any]) -> Report:
    """Rebuild a Report from results.json (to re-render BENCHMARKS.md without re-measuring)."""
    report = Report(Params(**data["params"]), data["started"], data["machine"])
    report.seconds = float(data.get("seconds", 0.0))
    report.details = dict(data.get("details") or {})
    report.profiles = dict(data.get("profiles") or {})
    for f in data["figures"]:
        report.add(
            Figure(
                f["scenario"],
                f["name"],
                f["unit"],
                [float(x) for x in f["runs"]],
                f.get("params", ""),
                Target.parse(f["target"]) if f.get("target") else None,
                f.get("note", ""),
                bool(f.get("ratio", False)),
            )
        )
    return report


def render_markdown(report: Report, analysis: str = "") -> str:
    """BENCHMARKS.md: how it was run, the table, targets missed, parameters, profiles."""
    p = report.params
    out = [
        "# Benchmarks",
        "",
        f"Generated by `leaderboard bench{' --quick' if p.name == 'quick' else ''}` "
        f"({p.name} run, {report.seconds / 60:.1f} min) on {report.started}.",
        "",
        f"Machine: {report.machine}. Every service is local (Kafka KRaft single node, Redis, "
        "PostgreSQL from Debian packages) and shares the 2 cores with the benchmark and, during "
        "this run, with other test suites: figures are noisy, hence medians and "
        f"min\u2013max of {p.reps} runs per figure (latency figures: median of per-run "
        "percentiles).",
        "",
        "## Results",
        "",
        render_table(report.figures),
        "",
    ]
    misses = render_misses(report.figures)
    out += ["## Targets missed", ""]
    out += misses or ["- none"]
    out += ["", "## Parameters", ""]
    for name, text in SCENARIOS.items():
        out.append(f"- **{name}**: {text}.")
    seen: set[str] = set()
    for f in report.figures:
        if f.params and f.scenario + f.params not in seen:
            seen.add(f.scenario + f.params)
            out.append(f"- {f.scenario} / {f.name}: {f.params}")
    out.append(f"- sizes: `{json.dumps(asdict(p))}`")
    if report.details:
        out += ["", "## Details", ""]
        for key, value in report.details.items():
            out.append(f"- {key}: {json.dumps(value) if not isinstance(value, str) else value}")
    for name, text in report.profiles.items():
        out += ["", f"## Profile: {name}", "", "```", text.rstrip(), "```"]
    if analysis:
        out += ["", analysis.strip()]
    return "\n".join(out) + "\n"


# ====================================================================== workload


def match_stream(
    rng: random.Random,
    boards: Sequence[str],
    players: int,
    count: int,
    k: int,
    now_ms: int,
) -> Iterator[MatchResultSubmitted]:
    """``count`` matches of ``k`` distinct random players on uniformly chosen boards."""
    for _ in range(count):
        board = boards[rng.randrange(len(boards))]
        pids = rng.sample(range(players), k)
        entries = tuple(ScoreEntry(f"p{i}", rng.randint(1, 1_000_000)) for i in pids)
        eid = str(uuid.uuid4())
        yield MatchResultSubmitted(eid, eid, board, now_ms, entries)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _board_configs(tag: str, n: int, watch: int = 10) -> list[LeaderboardConfigured]:
    return [
        LeaderboardConfigured(
            f"{tag}-b{i:02d}",
            SortOrder.DESC,
            Operator.BEST if i % 2 == 0 else Operator.INCR,
            ResetPeriod.NONE,
            configured_at=_now_ms(),
            watch_top_n=watch,
        )
        for i in range(n)
    ]


# ====================================================================== namespace & processes


class Namespace:
    """An isolated run: own topics, consumer groups, boards; worker subprocesses it owns."""

    def __init__(self, base: Settings, kind: str, logs: Path) -> None:
        self.tag = f"bench{kind}{uuid.uuid4().hex[:6]}"
        self.settings = base.model_copy(
            update={"topic_prefix": f"{self.tag}.", "app_id": f"lb-{self.tag}"}
        )
        self.env = {
            **os.environ,
            "LEADERBOARD_TOPIC_PREFIX": f"{self.tag}.",
            "LEADERBOARD_APP_ID": f"lb-{self.tag}",
            "LEADERBOARD_REDIS_URL": base.redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.boards: list[str] = []
        create_topics(self.settings)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``python -m processors ARGS`` in this namespace, logging to a file."""
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{self.tag}-{name}-{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "processors", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """SIGTERM every process this namespace started (SIGKILL after 20 s)."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def cleanup(self, *, audit: bool = True) -> None:
        """Stop processes; delete the namespace's topics, Redis keys and audit rows."""
        self.stop()
        r = redis.Redis.from_url(self.settings.redis_url)
        try:
            for board in self.boards:
                for prefix in ("lb", "lbr"):
                    keys = list(r.scan_iter(match=BoardKeys(board, prefix).pattern, count=1000))
                    for i in range(0, len(keys), 500):
                        r.unlink(*keys[i : i + 500])
        finally:
            r.close()
        if audit and self.boards:
            with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn:
                conn.execute(
                    "DELETE FROM score_audit WHERE leaderboard_id = ANY(%s)", [self.boards]
                )
        admin = AdminClient(client_config(self.settings))
        names = [t.name for t in all_topics(self.settings)]
        with contextlib.suppress(Exception):
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(30)


@contextlib.contextmanager
def private_redis(settings: Settings, logs: Path) -> Iterator[Settings]:
    """A redis-server of our own, configured like the stack's (AOF everysec, no RDB saves).

    The stack may be shared: fault-injection tests restart its Redis, which
    would wipe a benchmark's boards mid-run. Yields ``settings`` pointing at the private one.
    """
    server = shutil.which("redis-server")
    if server is None:
        yield settings
        return
    port = _free_port()
    data = settings.stack_dir / f"bench-redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / f"redis-{port}.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - redis-server from PATH, fixed arguments
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        r = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        r.close()
        yield settings.model_copy(update={"redis_url": url})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_available() -> bool:
    """True if this checkout has the HTTP/WebSocket gateway command."""
    from processors.cli import cli

    return "gateway" in cli.commands


def _wait_http(url: str, timeout: float = 60.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        time.sleep(0.3)
    return False


def _versions(r: redis.Redis, boards: Sequence[str]) -> int:
    pipe = r.pipeline(transaction=False)
    for b in boards:
        pipe.hget(BoardKeys(b).state, "ver")
    return sum(int(v) for v in pipe.execute() if v is not None)


def _audit_rows(conn: psycopg.Connection[Any], boards: Sequence[str]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM score_audit WHERE leaderboard_id = ANY(%s)", [list(boards)]
    ).fetchone()
    return int(row[0]) if row else 0


def _topic_end(settings: Settings, topic: str) -> tuple[int, int]:
    """(records in the topic, partitions) from the watermarks."""
    c = Consumer(client_config(settings, **{"group.id": f"bench-{uuid.uuid4().hex[:6]}"}))
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total, len(meta.partitions)
    finally:
        c.close()


def kafka_consume_rate(settings: Settings, topic: str, decode: bool) -> tuple[int, float]:
    """Read ``topic`` from the beginning to its end: (records, seconds); optionally decode."""
    total, parts = _topic_end(settings, topic)
    c = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "queued.max.messages.kbytes": 256 * 1024,
            },
        )
    )
    codec = get_codec(settings)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(parts)])
        seen = 0
        t0 = time.perf_counter()
        idle = 0
        while seen < total and idle < 20:
            msgs = c.consume(10_000, timeout=0.5)
            if not msgs:
                idle += 1
                continue
            idle = 0
            for m in msgs:
                if m.error():
                    continue
                seen += 1
                if decode:
                    codec.decode_as(m.value() or b"", MatchResultSubmitted)
        return seen, time.perf_counter() - t0
    finally:
        c.close()


# ====================================================================== scenario 1: ingest


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


def ingest_once(base: Settings, p: Params, logs: Path, say: Say) -> IngestRun:
    """Pre-produce the backlog, start the workers, time the drain into Redis and PostgreSQL."""
    ns = Namespace(base, "ing", logs)
    try:
        cfgs = _board_configs(ns.tag, p.boards)
        ns.boards = [c.leaderboard_id for c in cfgs]
        rng = random.Random(8)
        total = p.ingest_records * p.entries_per_record
        with LeaderboardProducer(ns.settings) as prod:
            for cfg in cfgs:
                prod.configure(cfg)
            t0 = time.perf_counter()
            for m in match_stream(
                rng, ns.boards, p.players, p.ingest_records, p.entries_per_record, _now_ms()
            ):
                prod.submit(m)
            prod.flush(120)
            produce_s = time.perf_counter() - t0
        scores = ns.settings.topic(ns.settings.scores_topic)
        raw_n, raw_s = kafka_consume_rate(ns.settings, scores, decode=False)
        dec_n, dec_s = kafka_consume_rate(ns.settings, scores, decode=True)
        say(f"  backlog {total:,} entries produced in {produce_s:.1f}s; workers starting")
        ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
        ns.spawn("sinks", ["worker", "--role", "sinks", "--loglevel", "warning"])
        r = redis.Redis.from_url(ns.settings.redis_url)
        conn = psycopg.connect(ns.settings.postgres_dsn, autocommit=True)
        first_a: tuple[float, int] | None = None
        first_g: tuple[float, int] | None = None
        done_a = done_g = None
        deadline = time.monotonic() + max(180.0, total / 2_000)
        last_pg = 0.0
        try:
            while time.monotonic() < deadline and (done_a is None or done_g is None):
                now = time.perf_counter()
                a = _versions(r, ns.boards)
                if a and first_a is None:
                    first_a = (now, a)
                if a >= total and done_a is None:
                    done_a = now
                if now - last_pg >= 0.5 or done_a is not None:
                    last_pg = now
                    g = _audit_rows(conn, ns.boards)
                    if g and first_g is None:
                        first_g = (now, g)
                    if g >= total and done_g is None:
                        done_g = now
                if any(proc.poll() is not None for proc in ns.procs):
                    say("  a worker exited early: see its log under " + str(logs))
                    break
                time.sleep(0.2)
        finally:
            r.close()
            conn.close()
        rank_records = _topic_end(ns.settings, ns.settings.topic(ns.settings.rank_changes_topic))[0]

        def rate(first: tuple[float, int] | None, done: float | None) -> float:
            if first is None or done is None or done <= first[0]:
                return float("nan")
            return (total - first[1]) / (done - first[0])

        e2e = float("nan")
        if first_a is not None and done_g is not None and done_g > first_a[0]:
            e2e = (total - first_a[1]) / (done_g - first_a[0])
        run = IngestRun(
            total,
            produce_s,
            rate(first_a, done_a),
            rate(first_g, done_g),
            e2e,
            rank_records,
            raw_n * p.entries_per_record / raw_s if raw_s else float("nan"),
            dec_n * p.entries_per_record / dec_s if dec_s else float("nan"),
            done_a is not None and done_g is not None,
        )
        if not run.complete:
            raise RuntimeError("the drain did not complete (a worker failed or timed out)")
        say(
            f"  redis {run.redis_rate:,.0f}/s, audit {run.pg_rate:,.0f}/s, e2e "
            f"{run.e2e_rate:,.0f}/s, {rank_records:,} rank-change records; kafka raw "
            f"{run.kafka_raw_rate:,.0f} entries/s"
        )
        return run
    finally:
        ns.cleanup()


# ====================================================================== scenario 1b: latency


@dataclass(slots=True)
class LatencyRun:
    """Latency samples of one fixed-rate run (milliseconds)."""

    visible: list[float] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)
    websocket: list[float] = field(default_factory=list)
    sent: int = 0
    probes: int = 0
    achieved_rate: float = 0.0
    websocket_note: str = ""


class _RankWatcher(threading.Thread):
    """Reads the rank-change topic from its end; matches event ids to their send times."""

    def __init__(self, settings: Settings, sent: dict[str, float], run: LatencyRun) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.sent = sent
        self.run_ = run
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.seen: set[str] = set()

    def run(self) -> None:
        topic = self.settings.topic(self.settings.rank_changes_topic)
        codec = get_codec(self.settings)
        c = Consumer(client_config(self.settings, **{"group.id": f"bw-{uuid.uuid4().hex[:6]}"}))
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            c.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
            c.consume(1, timeout=1.0)
            self.ready.set()
            while not self.stopping.is_set():
                for m in c.consume(1000, timeout=0.2):
                    if m.error():
                        continue
                    now = time.time()
                    rec = codec.decode_as(m.value() or b"", RankChanged)
                    ts = m.timestamp()[1] / 1000.0
                    for ch in rec.changes:
                        at = self.sent.get(ch.event_id)
                        if at is None or ch.event_id in self.seen:
                            continue
                        self.seen.add(ch.event_id)
                        self.run_.visible.append((ts - at) * 1000)
                        self.run_.arrival.append((now - at) * 1000)
        finally:
            c.close()


def _produce_fixed_rate(
    settings: Settings,
    boards: Sequence[str],
    probe: str,
    p: Params,
    rate: int,
    sent: dict[str, float],
    probe_sent: dict[str, float],
    run: LatencyRun,
) -> None:
    rng = random.Random(10)
    k = p.entries_per_record
    per_s = rate / k
    probe_every = max(1, int(per_s / 10))
    with LeaderboardProducer(settings) as prod:
        gen = match_stream(rng, boards, p.players, 10**9, k, _now_ms())
        start = time.perf_counter()
        n = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= p.latency_seconds:
                break
            due = int(elapsed * per_s)
            if n >= due:
                time.sleep(0.001)
                prod.poll(0)
                continue
            while n < due:
                m = next(gen)
                m = MatchResultSubmitted(
                    m.event_id, m.match_id, m.leaderboard_id, _now_ms(), m.entries
                )
                sent[m.event_id] = time.time()
                prod.submit(m)
                n += 1
                if n % probe_every == 0:
                    eid = str(uuid.uuid4())
                    pm = MatchResultSubmitted(
                        eid, eid, probe, _now_ms(), (ScoreEntry("probe", 1, Operator.INCR),)
                    )
                    at = time.time()
                    sent[eid] = at
                    probe_sent[eid] = at
                    prod.submit(pm)
                    run.probes += 1
        run.sent = n
        run.achieved_rate = n * k / (time.perf_counter() - start)


async def _ws_listen(
    url: str, probe_sent: dict[str, float], run: LatencyRun, stop: asyncio.Event
) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "subscribe", "mode": "track", "participant_id": "probe"}))
        seen: set[str] = set()
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            msg = json.loads(text)
            if msg.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            for ch in msg.get("changes") or []:
                eid = ch.get("event_id")
                if eid in probe_sent and eid not in seen:
                    seen.add(eid)
                    run.websocket.append((now - probe_sent[eid]) * 1000)


def latency_once(base: Settings, p: Params, rate: int, logs: Path, say: Say) -> LatencyRun:
    """Fixed-rate load with projector, sinks and (if present) the gateway running."""
    ns = Namespace(base, "lat", logs)
    run = LatencyRun()
    try:
        cfgs = _board_configs(ns.tag, p.boards)
        probe_cfg = LeaderboardConfigured(
            f"{ns.tag}-probe", operator=Operator.INCR, configured_at=_now_ms()
        )
        ns.boards = [c.leaderboard_id for c in cfgs] + [probe_cfg.leaderboard_id]
        with LeaderboardProducer(ns.settings) as prod:
            for cfg in [*cfgs, probe_cfg]:
                prod.configure(cfg)
            # warm-up record: the workers are ready once it is applied
            prod.submit(
                MatchResultSubmitted(
                    "warm", "warm", probe_cfg.leaderboard_id, _now_ms(), (ScoreEntry("w", 1),)
                )
            )
        ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
        ns.spawn("sinks", ["worker", "--role", "sinks", "--loglevel", "warning"])
        port = _free_port()
        ws_url = None
        if gateway_available():
            ns.spawn(
                "gateway",
                ["gateway", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            )
            if _wait_http(f"http://127.0.0.1:{port}/health"):
                ws_url = (
                    f"ws://127.0.0.1:{port}/v1/leaderboards/{probe_cfg.leaderboard_id}/subscribe"
                )
            else:
                run.websocket_note = "not run: gateway did not answer /health"
        else:
            run.websocket_note = "not run: gateway missing"
        r = redis.Redis.from_url(ns.settings.redis_url)
        deadline = time.monotonic() + 90
        while _versions(r, [probe_cfg.leaderboard_id]) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        r.close()
        time.sleep(2.0)  # let the sinks worker join its group too
        sent: dict[str, float] = {}
        probe_sent: dict[str, float] = {}
        watcher = _RankWatcher(ns.settings, sent, run)
        watcher.start()
        watcher.ready.wait(15)

        async def main() -> None:
            stop = asyncio.Event()
            listener = None
            if ws_url is not None:
                listener = asyncio.create_task(_ws_listen(ws_url, probe_sent, run, stop))
                await asyncio.sleep(1.0)
            await asyncio.to_thread(
                _produce_fixed_rate,
                ns.settings,
                ns.boards[:-1],
                probe_cfg.leaderboard_id,
                p,
                rate,
                sent,
                probe_sent,
                run,
            )
            for _ in range(450):  # stragglers (a backlog at 10k/s): up to 90 s
                ws_done = listener is None or len(run.websocket) >= run.probes
                if len(watcher.seen) >= len(sent) and ws_done:
                    break
                await asyncio.sleep(0.2)
            stop.set()
            if listener is not None:
                try:
                    await asyncio.wait_for(listener, 5)
                except Exception as exc:  # report, keep the other figures
                    run.websocket_note = f"websocket client failed: {exc!r}"

        asyncio.run(main())
        watcher.stopping.set()
        watcher.join(5)
        if len(run.visible) < 0.95 * len(sent):
            raise RuntimeError(
                f"only {len(run.visible)} of {len(sent)} records became visible: the pipeline "
                "stalled (see the worker logs)"
            )
        say(
            f"  {run.achieved_rate:,.0f} entries/s sent; visible p50 "
            f"{percentile(run.visible, 50):.0f} p99 {percentile(run.visible, 99):.0f} ms "
            f"({len(run.visible)}/{len(sent)}); websocket p99 "
            f"{percentile(run.websocket, 99):.0f} ms ({len(run.websocket)}/{run.probes})"
        )
        return run
    finally:
        ns.cleanup()


# ====================================================================== scenario 2: baselines


def naive_once(settings: Settings, p: Params) -> float:
    """Per entry ZINCRBY + ZREVRANK + INSERT (autocommit), one client: entries/s."""
    tag = uuid.uuid4().hex[:8]
    key = f"bench:naive:{tag}"
    table = f"bench_naive_{tag}"
    r = redis.Redis.from_url(settings.redis_url)
    rng = random.Random(2)
    entries = [
        (f"p{e.participant_id}", e.score)
        for m in match_stream(
            rng, ["naive"], p.players, p.naive_entries // p.entries_per_record + 1, 10, 0
        )
        for e in m.entries
    ][: p.naive_entries]
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, participant_id text NOT NULL,"
            " score bigint NOT NULL, new_score double precision, new_rank bigint,"
            " at timestamptz NOT NULL DEFAULT now())"
        )
        try:
            t0 = time.perf_counter()
            for pid, score in entries:
                new = r.zincrby(key, score, pid)
                rank = r.zrevrank(key, pid)
                conn.execute(
                    f"INSERT INTO {table} (participant_id, score, new_score, new_rank)"
                    " VALUES (%s, %s, %s, %s)",
                    (pid, score, new, rank),
                )
            dt = time.perf_counter() - t0
        finally:
            conn.execute(f"DROP TABLE {table}")
            r.unlink(key)
            r.close()
    return len(entries) / dt


def zadd_limit_once(settings: Settings, p: Params) -> tuple[float, str]:
    """Raw pipelined ZADD ops/s: redis-benchmark if installed, else a redis-py pipeline."""
    r = redis.Redis.from_url(settings.redis_url)
    key = f"bench:zadd:{uuid.uuid4().hex[:8]}"
    conn = r.connection_pool.get_connection("PING")
    host, port = conn.host, conn.port
    r.connection_pool.release(conn)
    try:
        tool = shutil.which("redis-benchmark")
        if tool:
            cmd = [
                tool,
                "-h",
                str(host),
                "-p",
                str(port),
                "-c",
                "8",
                "-P",
                "64",
                "-n",
                str(p.zadd_ops),
                "-r",
                str(p.big_board),
                "-q",
                "--csv",
                "ZADD",
                key,
                "__rand_int__",
                "m:__rand_int__",
            ]
            out = subprocess.run(  # noqa: S603 - redis-benchmark from PATH, fixed arguments
                cmd, capture_output=True, text=True, timeout=300, check=True
            )
            nums = re.findall(r'"([0-9]+(?:\.[0-9]+)?)"', out.stdout)
            if not nums:
                raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout[:200]}")
            return float(nums[0]), "redis-benchmark -c 8 -P 64, one member per ZADD"
        pipe = r.pipeline(transaction=False)
        t0 = time.perf_counter()
        for i in range(p.zadd_ops):
            pipe.zadd(key, {f"m:{i}": i})
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        return p.zadd_ops / (time.perf_counter() - t0), "redis-py pipeline of 1,000 ZADDs"
    finally:
        r.unlink(key)
        r.close()


# ====================================================================== scenarios 3-5: big board


def _big_board_matches(board: str, n: int, k: int, now_ms: int) -> list[MatchResultSubmitted]:
    rng = random.Random(3)
    out = []
    for i in range(n // k):
        entries = tuple(
            ScoreEntry(f"u{i * k + j:07d}", int(rng.lognormvariate(9.0, 1.5)) + 1) for j in range(k)
        )
        eid = str(uuid.uuid4())
        out.append(MatchResultSubmitted(eid, eid, board, now_ms + i, entries))
    return out


async def load_big_board(
    settings: Settings, cfg: LeaderboardConfigured, matches: Sequence[MatchResultSubmitted]
) -> tuple[float, float]:
    """Apply ``matches`` with RankingStore.apply (500 records per call) and COPY the audit.

    Returns (Redis entries/s, audit COPY rows/s).
    """
    client = aioredis.Redis.from_url(settings.redis_url)
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
    client = aioredis.Redis.from_url(settings.redis_url)
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


async def http_queries(
    base_url: str, board: str, size: int, clients: int, requests: int
) -> dict[str, tuple[list[float], float]]:
    """Per query kind: (latencies ms, requests/s) with ``clients`` concurrent HTTP clients."""
    import httpx

    rng = random.Random(5)
    kinds: dict[str, Callable[[], str]] = {
        "top 100": lambda: f"/v1/leaderboards/{board}/rankings?limit=100",
        "rank + 5 neighbours": lambda: (
            f"/v1/leaderboards/{board}/participants/u{rng.randrange(size):07d}?neighbours=5"
        ),
        f"page of 100 at offset {size // 2:,}": lambda: (
            f"/v1/leaderboards/{board}/rankings?limit=100&offset={size // 2}"
        ),
    }
    out: dict[str, tuple[list[float], float]] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        (await http.get(kinds["top 100"]())).raise_for_status()
        for name, path in kinds.items():
            lat: list[float] = []
            left = [requests]

            async def worker(
                path: Callable[[], str] = path, lat: list[float] = lat, left: list[int] = left
            ) -> None:
                while left[0] > 0:
                    left[0] -= 1
                    t0 = time.perf_counter()
                    resp = await http.get(path())
                    lat.append((time.perf_counter() - t0) * 1000)
                    resp.raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            out[name] = (lat, len(lat) / (time.perf_counter() - t0))
    return out


async def board_memory(settings: Settings, board: str) -> dict[str, int]:
    """MEMORY USAGE (SAMPLES 0) of every key of ``board``, by key suffix."""
    client = aioredis.Redis.from_url(settings.redis_url)
    keys = BoardKeys(board)
    try:
        out: dict[str, int] = {}
        async for raw in client.scan_iter(match=keys.pattern, count=1000):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            used = await client.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
            out[name[len(keys.base) + 1 :]] = int(used or 0)
        return out
    finally:
        await client.aclose()


# ====================================================================== profiles


def has_profiler() -> bool:
    """True if pyinstrument (the dev extra) is installed."""
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return False
    return True


def _profile_text(profiler: Any, keep: int = 45) -> str:
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[:keep])


def _evalsha_usec(r: redis.Redis) -> tuple[int, int]:
    stats: dict[str, Any] = r.info("commandstats")
    s = stats.get("cmdstat_evalsha") or {}
    return int(s.get("calls", 0)), int(s.get("usec", 0))


async def profile_projector(ns: Namespace, p: Params, say: Say) -> tuple[float, float, float, str]:
    """Projector.process on batches of 500 raw records read back from Kafka.

    Returns (entries/s unprofiled, Redis Lua µs per entry, profiled entries/s, profile text).
    """
    from pyinstrument import Profiler

    settings = ns.settings
    cfgs = {c.leaderboard_id: c for c in _board_configs(ns.tag, 2 * p.boards)}
    ns.boards = list(cfgs)
    names = list(cfgs)
    halves = [names[: p.boards], names[p.boards :]]
    rng = random.Random(6)
    with LeaderboardProducer(settings) as prod:
        for half in halves:
            for m in match_stream(
                rng, half, p.players, p.profile_records, p.entries_per_record, _now_ms()
            ):
                prod.submit(m)
    scores = settings.topic(settings.scores_topic)
    total, parts = _topic_end(settings, scores)
    c = Consumer(client_config(settings, **{"group.id": f"bp-{uuid.uuid4().hex[:6]}"}))
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
    sets = [[x for x in raws if (x.key or b"").decode() in set(half)] for half in halves]
    client = aioredis.Redis.from_url(settings.redis_url)
    sync = redis.Redis.from_url(settings.redis_url)
    producer = LeaderboardProducer(settings)
    proj = Projector(settings, RankingStore(client), cfgs.get, get_codec(settings), producer)
    results: list[float] = []
    lua = 0.0
    text = ""
    try:
        for i, recs in enumerate(sets):
            profiler = Profiler(async_mode="enabled") if i == 1 else None
            _, usec0 = _evalsha_usec(sync)
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
                text = _profile_text(profiler)
            _, usec1 = _evalsha_usec(sync)
            if i == 0:
                lua = (usec1 - usec0) / max(entries, 1)
            results.append(entries / dt)
        say(
            f"  Projector.process {results[0]:,.0f} entries/s in-process; Lua "
            f"{lua:.1f} µs/entry; profiled {results[1]:,.0f} entries/s"
        )
    finally:
        producer.close(10)
        await client.aclose()
        sync.close()
    return results[0], lua, results[1], text


# ====================================================================== the run


T = TypeVar("T")


def retry(fn: Callable[[], T], say: Say, attempts: int = 2) -> T:
    """Run one benchmark run again if a service failed under it (the stack is shared)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("run failed, retrying once: %r", exc)
            say(f"  run failed ({exc!r:.200}); retrying once")
            time.sleep(5)
    raise AssertionError("unreachable")


def _latency_figures(
    base: Settings, p: Params, rate: int, report: Report, logs: Path, say: Say
) -> None:
    lat_runs = []
    for i in range(p.reps):
        say(f"[latency] {rate:,} entries/s, run {i + 1}/{p.reps}")
        lat_runs.append(retry(lambda: latency_once(base, p, rate, logs, say), say))
    lp = (
        f"{rate:,} entries/s for {p.latency_seconds:g}s, {p.boards} boards, batch_within 50 ms, "
        "gateway push window 50 ms"
    )
    headline = rate == p.latency_rate
    at = f"at {rate // 1000}k/s"
    for q in (50, 99, 100):
        label = "max" if q == 100 else f"p{q}"
        tgt = Target(500, False, "≤ 500 ms") if q == 99 and headline else None
        report.add(
            Figure(
                "1 latency",
                f"{at}: produce → visible in Redis, {label}",
                "ms",
                [percentile(x.visible, q) for x in lat_runs if x.visible],
                lp + "; Kafka timestamp of the RankChanged record (stamped right after the "
                "Lua apply returned) minus the send time; every record measured",
                tgt,
            )
        )
    ws_note = next((x.websocket_note for x in lat_runs if x.websocket_note), "")
    for q in (50, 99, 100):
        label = "max" if q == 100 else f"p{q}"
        tgt = Target(500, False, "≤ 500 ms") if q == 99 and headline else None
        report.add(
            Figure(
                "1 latency",
                f"{at}: produce → WebSocket delta, {label}",
                "ms",
                [percentile(x.websocket, q) for x in lat_runs if x.websocket],
                lp + "; gateway track subscription of a probe participant, 10 probes/s",
                tgt,
                note=ws_note,
            )
        )
    report.details[f"latency runs at {rate:,} entries/s"] = [
        {
            "sent_records": x.sent,
            "achieved_entries_per_s": round(x.achieved_rate),
            "visible_samples": len(x.visible),
            "websocket_samples": len(x.websocket),
            "probes": x.probes,
            "consumer_arrival_p99_ms": round(percentile(x.arrival, 99), 1),
            "note": x.websocket_note,
        }
        for x in lat_runs
    ]


def _code_version() -> str:
    """HEAD commit and the tracked files that differ from it (the tree is shared)."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    try:
        head = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "diff", "--name-only", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (git failed)"
    if not dirty:
        return f"commit {head}"
    return f"commit {head} + uncommitted changes in {', '.join(dirty)}"


def _machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    return f"{os.cpu_count()} cores ({cpu}), {mem}, Python {sys.version.split()[0]}"


def run_bench(
    base: Settings,
    p: Params,
    *,
    only: Sequence[str] = (),
    say: Say = print,
    shared_redis: bool = False,
) -> Report:
    """Run the selected scenarios (all by default) and return the report.

    Unless ``shared_redis``, every scenario uses a private redis-server (see private_redis).
    """
    if shared_redis:
        return _run_bench(base, p, only, say, "the stack's Redis (shared)")
    with private_redis(base, base.stack_dir / "logs" / "bench") as mine:
        return _run_bench(mine, p, only, say, "a private redis-server, configured like the stack's")


def _run_bench(base: Settings, p: Params, only: Sequence[str], say: Say, redis_note: str) -> Report:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    report = Report(p, started, _machine())
    report.details["code"] = _code_version()
    report.details["redis"] = f"{redis_note}: {base.redis_url}, AOF everysec, no RDB saves"
    t_start = time.perf_counter()
    logs = base.stack_dir / "logs" / "bench"
    want = set(only) or set(SCENARIOS)
    k = p.entries_per_record
    ingest_params = (
        f"{p.ingest_records:,} records \u00d7 {k} entries, {p.boards} boards, 6 partitions, "
        "1 projector + 1 sinks worker, batch 500"
    )

    ingest_runs: list[IngestRun] = []
    if "ingest" in want:
        for i in range(p.reps):
            say(f"[ingest] run {i + 1}/{p.reps}")
            ingest_runs.append(retry(lambda: ingest_once(base, p, logs, say), say))
        e2e = report.add(
            Figure(
                "1 ingest",
                "end to end (Redis + audit), entries/s",
                "entries/s",
                [x.e2e_rate for x in ingest_runs],
                ingest_params + "; from first applied entry to last audit row",
                Target(20_000, True, "≥ 20,000 entries/s"),
            )
        )
        report.add(
            Figure(
                "1 ingest",
                "applied to Redis, entries/s",
                "entries/s",
                [x.redis_rate for x in ingest_runs],
                ingest_params,
            )
        )
        report.add(
            Figure(
                "1 ingest",
                "written to PostgreSQL audit, rows/s",
                "rows/s",
                [x.pg_rate for x in ingest_runs],
                ingest_params,
            )
        )
        report.details["ingest runs"] = [asdict(x) for x in ingest_runs]
        del e2e

    if "latency" in want:
        for rate in (p.latency_rate, p.latency_low_rate):
            _latency_figures(base, p, rate, report, logs, say)

    if "baselines" in want:
        say("[baselines] naive synchronous, ZADD limit")
        naive = [retry(lambda: naive_once(base, p), say) for _ in range(p.reps)]
        zadd = [retry(lambda: zadd_limit_once(base, p), say) for _ in range(p.reps)]
        report.add(
            Figure(
                "2 baseline",
                "naive synchronous (ZINCRBY+ZREVRANK+INSERT), entries/s",
                "entries/s",
                naive,
                f"{p.naive_entries:,} entries per run, one client, autocommit INSERT",
            )
        )
        report.add(
            Figure(
                "2 baseline",
                "limit: raw pipelined ZADD, ops/s",
                "ops/s",
                [z for z, _ in zadd],
                zadd[0][1] + f", {p.zadd_ops:,} ops",
            )
        )
        if ingest_runs:
            report.add(
                Figure(
                    "2 baseline",
                    "limit: raw Kafka consume of the same records, entries/s",
                    "entries/s",
                    [x.kafka_raw_rate for x in ingest_runs],
                    "confluent-kafka Consumer, no decoding; records \u00d7 10",
                )
            )
            report.add(
                Figure(
                    "2 baseline",
                    "Kafka consume + Avro decode (one Python thread), entries/s",
                    "entries/s",
                    [x.kafka_decode_rate for x in ingest_runs],
                    "confluent-kafka Consumer + codec.decode_as",
                )
            )
            ours = [x.e2e_rate for x in ingest_runs]
            for label, base_runs, tgt in (
                ("÷ naive", naive, Target(10, True, "≥ 10\u00d7")),
                ("÷ raw ZADD limit", [z for z, _ in zadd], None),
                ("÷ raw Kafka consume", [x.kafka_raw_rate for x in ingest_runs], None),
            ):
                report.add(
                    Figure(
                        "2 ratio",
                        f"ingest e2e {label}",
                        "\u00d7",
                        ratio_runs(ours, base_runs),
                        "median ours / median baseline; range from extreme pairs",
                        tgt,
                        ratio=True,
                    )
                )

    big = want & {"queries", "replay", "memory"}
    if big:
        try:
            asyncio.run(_big_board_scenarios(base, p, want, report, logs, say))
        except Exception as exc:  # a shared stack may restart under us: keep the rest
            log.exception("big-board scenarios failed")
            report.details["big-board scenarios failed"] = repr(exc)[:300]
            say(f"  big-board scenarios failed: {exc!r}")

    if "profile" in want and not has_profiler():
        report.profiles["Projector.process"] = (
            "not run: pyinstrument missing (pip install -e '.[dev]')"
        )
    elif "profile" in want:
        say("[profile] Projector.process")
        ns = Namespace(base, "prof", logs)
        try:
            proc_rate, lua, prate, text = asyncio.run(profile_projector(ns, p, say))
        finally:
            ns.cleanup()
        report.add(
            Figure(
                "profile",
                "Projector.process in-process (no Faust), entries/s",
                "entries/s",
                [proc_rate],
                f"{p.profile_records:,} records \u00d7 {k} entries, batches of 500, real Redis + "
                "producer",
            )
        )
        report.add(
            Figure(
                "profile",
                "Redis time inside the apply Lua script, µs per entry",
                "µs",
                [lua],
                "INFO commandstats cmdstat_evalsha usec delta / entries",
            )
        )
        report.profiles[
            f"Projector.process ({p.profile_records:,} records, {prate:,.0f} entries/s under "
            "the profiler)"
        ] = text
    report.seconds = time.perf_counter() - t_start
    return report


async def _big_board_scenarios(
    base: Settings, p: Params, want: set[str], report: Report, logs: Path, say: Say
) -> None:
    ns = Namespace(base, "big", logs)
    size = p.big_board
    k = p.entries_per_record
    cfg = LeaderboardConfigured(f"{ns.tag}-big", configured_at=_now_ms())
    ns.boards = [cfg.leaderboard_id]
    try:
        say(f"[big board] producing {size:,} entries")
        matches = _big_board_matches(cfg.leaderboard_id, size, k, _now_ms() - 3_600_000)
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
            )
        )
        report.add(
            Figure(
                "4 replay",
                "audit COPY via AuditWriter, rows/s",
                "rows/s",
                [copy_rate],
                "one RankChanged of 5,000 changes per write",
            )
        )
        if "memory" in want:
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
                )
            )
            report.details["memory by key (bytes per entry)"] = {
                key: round(v / size, 1) for key, v in sorted(usage.items())
            }
            report.details["memory: INFO used_memory delta per entry"] = round(
                (mem1 - mem0) / size, 1
            )
        if "queries" in want:
            say("[queries] Redis direct")
            direct: dict[str, list[list[float]]] = {}
            for _ in range(p.reps):
                for name, lat in (
                    await direct_queries(ns.settings, cfg, size, p.query_samples)
                ).items():
                    direct.setdefault(name, []).append(lat)
            for name, runs in direct.items():
                tgt = (
                    Target(5, False, "≤ 5 ms")
                    if name in ("top 100", "rank + 5 neighbours")
                    else None
                )
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
                        )
                    )
            await _http_scenario(ns, p, cfg, size, report, say)
        if "replay" in want:
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
                        Target(100_000, True, "≥ 100,000 entries/s") if source == "kafka" else None,
                    )
                )
            if "profile" in want and has_profiler():
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="enabled")
                profiler.start()
                rep = await replay_board(ns.settings, cfg, source="kafka")
                profiler.stop()
                report.profiles[
                    f"replay_board from Kafka ({size:,} entries, {rep.rate:,.0f} entries/s under "
                    "the profiler)"
                ] = _profile_text(profiler)
    finally:
        ns.cleanup()


async def _info_used(settings: Settings) -> int:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        info: dict[str, Any] = await client.info("memory")
        return int(info.get("used_memory", 0))
    finally:
        await client.aclose()


async def _http_scenario(
    ns: Namespace,
    p: Params,
    cfg: LeaderboardConfigured,
    size: int,
    report: Report,
    say: Say,
) -> None:
    names = ["top 100", "rank + 5 neighbours", f"page of 100 at offset {size // 2:,}"]
    note = ""
    results: dict[str, list[tuple[list[float], float]]] = {}
    if not gateway_available():
        note = "not run: gateway missing"
    else:
        port = _free_port()
        proc = ns.spawn(
            "gateway",
            ["gateway", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        )
        if not await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{port}/health"):
            note = "not run: gateway did not answer /health"
        else:
            say(f"[queries] HTTP gateway, {p.http_clients} clients")
            try:
                for _ in range(p.reps):
                    got = await http_queries(
                        f"http://127.0.0.1:{port}",
                        cfg.leaderboard_id,
                        size,
                        p.http_clients,
                        p.http_requests,
                    )
                    for name, value in got.items():
                        results.setdefault(name, []).append(value)
            except Exception as exc:  # keep the other figures; say why
                note = f"failed: {exc!r}"[:200]
                results.clear()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    params = (
        f"{size:,} participants; {p.http_clients} concurrent httpx clients (keep-alive) in the "
        f"bench process, {p.http_requests:,} requests per run, loopback, 1 uvicorn worker"
    )
    for name in names:
        runs = results.get(name, [])
        for q in (50, 99):
            report.add(
                Figure(
                    "3 queries",
                    f"HTTP gateway: {name}, p{q}",
                    "ms",
                    [percentile(lat, q) for lat, _ in runs],
                    params,
                    note=note,
                )
            )
        report.add(
            Figure(
                "3 queries",
                f"HTTP gateway: {name}, requests/s",
                "req/s",
                [rps for _, rps in runs],
                params,
                note=note,
            )
        )


def write_outputs(report: Report, markdown: Path | None, json_path: Path | None) -> None:
    """Write BENCHMARKS.md and the JSON results (parents created)."""
    if markdown is not None:
        markdown.write_text(render_markdown(report, analysis(report)))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")


def _fig(report: Report, scenario: str, prefix: str) -> str:
    """Median of the first figure whose name starts with ``prefix`` (or 'n/a')."""
    for f in report.figures:
        if f.scenario == scenario and f.name.startswith(prefix) and f.runs:
            return f"{fmt_value(f.median, f.unit)}"
    return "n/a"


def _num(report: Report, scenario: str, prefix: str) -> float:
    for f in report.figures:
        if f.scenario == scenario and f.name.startswith(prefix) and f.runs:
            return f.median
    return float("nan")


#: Side experiments (scripts run by hand on the same machine, 3 alternating runs each, medians
#: with min-max); quoted in BENCHMARKS.md because they back the proposed next steps.
EXPERIMENTS = """\
1. **`dataclasses.asdict` in `RankChanged.to_avro` / `ParticipantNotified.to_avro`** (streams/
   events.py) deep-copied every change recursively: 43 % of `Projector.process` time in the first
   profile (1.22 s of 2.83 s). A direct field dict (byte-identical Avro, asserted) raised
   in-process `Projector.process` from 14,610 (14,203-14,836) to 22,413 (18,699-23,169)
   entries/s, **+53 %**. The code now does exactly that, so this run's figures include it.
2. **The two ZRANK calls per entry in apply.lua** (old and new rank): replacing them by constants
   gave 25,124 vs 30,119 entries/s for the original (100,000 applies on a 50,000-entry board):
   no gain beyond noise. Ranks are O(log n) skip-list walks; they are not where the time goes.
3. **Overlapping the Kafka read + Avro decode of the next chunk with the Redis apply** of the
   current one in replay: 25,476 vs 25,705 entries/s (200,000 entries): no gain. The machine is
   CPU-bound (2 cores shared by Kafka, Redis, PostgreSQL and the Python processes), not
   latency-bound, so overlap has no idle core to use.
4. **Memory layout** (100,000 participants, MEMORY USAGE): the zset + participant->member hash
   take 234 B/entry with the 28-character decimal tie-break prefix and 202 B/entry with a
   10-byte binary prefix (-32 B). Splitting the participant->member hash into buckets of ~100
   fields (listpack-encoded, e.g. `m:<period>:<crc32(pid) % n>`) takes it from 98.5 to 53.9
   B/entry (-45 B).
5. **Argument packing**: redis-py packs one EVALSHA of 5,000 entries (27,509 arguments) in
   1.24 us per entry; the same data as one joined argument takes 0.36 us per entry: a saving of
   about 0.9 us of the ~50 us an entry costs in `Projector.process`, not the lever either.
"""


def p_rate(report: Report) -> float:
    """The fixed rate of the headline latency run (entries/s)."""
    return float(report.params.latency_rate)


def _latency_text(report: Report, live: float) -> str:
    v10 = _fig(report, "1 latency", "at 10k/s: produce → visible in Redis, p99")
    w10 = _fig(report, "1 latency", "at 10k/s: produce → WebSocket delta, p99")
    m10 = _fig(report, "1 latency", "at 10k/s: produce → visible in Redis, p50")
    v2 = _fig(report, "1 latency", "at 2k/s: produce → visible in Redis, p99")
    w2 = _fig(report, "1 latency", "at 2k/s: produce → WebSocket delta, p99")
    if live == live and live > 1.2 * p_rate(report):
        return f"""\
**Latency**: at 10,000 entries/s the pipeline runs at about {p_rate(report) / live:.0%} of the
ingest capacity measured above, so the backlog stays bounded and the median is low ({m10} ms to
Redis), but the p99 is {v10} ms to Redis and {w10} ms to a WebSocket subscriber. At 2,000
entries/s the p99 is {v2} ms and {w2} ms: the tail grows with load well below saturation, i.e.
CPU queueing on 2 cores shared by the projector, the sinks worker, the gateway (which decodes
every rank-change record), Kafka, Redis, PostgreSQL and the benchmark's own producer and
rank-change reader. Per batch, the projector also waits for Kafka to acknowledge its rank-change
records (`producer.flush`) before it takes the next batch: a serial round trip, not measured
separately. The WebSocket path adds the gateway's 50 ms push window.
"""
    return f"""\
**Latency**: at 10,000 entries/s the offered load is above the ingest capacity measured here, so
the backlog (and the latency) grows for the whole run: p99 produce -> visible {v10} ms. Within
capacity, at 2,000 entries/s, p99 is {v2} ms to Redis and {w2} ms to a WebSocket subscriber. The
latency target follows the throughput target here.
"""


def analysis(report: Report) -> str:
    """Closing section: where the time goes, side experiments and proposed next steps."""
    lua = _num(report, "profile", "Redis time inside")
    lua_cap = f"{1e6 / lua:,.0f}" if lua == lua and lua > 0 else "n/a"
    inproc = _num(report, "profile", "Projector.process")
    live = _num(report, "1 ingest", "applied to Redis")
    per_entry = f"{1e6 / inproc:.0f}" if inproc == inproc and inproc > 0 else "n/a"
    if live == live and inproc == inproc and live >= 0.9 * inproc:
        gap = (
            "The live worker runs at the in-process rate: Faust's consumer and the sinks worker "
            "competing for the CPU cost little; the per-batch path itself is the limit."
        )
    else:
        gap = (
            "The difference is Faust's consumer (aiokafka fetch and per-event stream "
            "machinery) and the CPU taken by the sinks worker (decoding every RankChanged, "
            "COPY into PostgreSQL)."
        )
    zadd = _fig(report, "2 baseline", "limit: raw pipelined")
    return f"""\
## Where the time goes

**Ingest** (target 20,000 entries/s end to end; measured
{_fig(report, "1 ingest", "end to end")} entries/s): the projector is CPU-bound in Python, on 2
cores that also run Kafka, Redis, PostgreSQL, the sinks worker and, during this run, other
test suites. In-process, without Faust and without the sinks worker,
`Projector.process` applies {_fig(report, "profile", "Projector.process")} entries/s (about
{per_entry} us per entry); the live worker applies {_fig(report, "1 ingest", "applied to Redis")}
entries/s. {gap} Inside Redis the apply script costs
{_fig(report, "profile", "Redis time inside")} us per entry (INFO commandstats), a ceiling of
about {lua_cap} entries/s for one Redis core; the rest is Python. The profile of
`Projector.process` above splits it: the Redis pipeline (waiting for the script, packing the
arguments, reading the reply), `_parse` of the script's tab-separated result into `RankChange` /
notification objects, Avro encoding of the RankChanged and notification records, Avro decoding
of the input, and building the script arguments. The naive synchronous design reaches
{_fig(report, "2 baseline", "naive")} entries/s, so the batching design is
{_fig(report, "2 ratio", "ingest e2e ÷ naive")} faster on the same machine; raw Kafka consumption
({_fig(report, "2 baseline", "limit: raw Kafka")} entries/s) and pipelined ZADD ({zadd} ops/s)
are far from limiting.

{_latency_text(report, live)}
**Replay** (target 100,000 entries/s from Kafka; measured
{_fig(report, "4 replay", "rebuild from Kafka")} entries/s): replay runs the live apply path on
purpose (decode -> Lua arguments -> apply script -> parse of its text result). The replay profile
above is dominated by the Redis pipeline (the script's time inside Redis plus packing the
arguments and reading the reply), then Avro decode, `_parse`, and building the arguments;
experiments 2, 3 and 5 show that neither the rank lookups, I/O overlap nor argument packing are
the lever.

**Memory** (target 150 B/entry; measured {_fig(report, "5 memory", "Redis bytes")} B): the sorted
set and the participant->member hash both hold the 36-byte member (a 28-character decimal
tie-break prefix + the participant id); the hash alone is about 100 B/entry (see "memory by
key").

**Queries**: Redis answers top 100 / rank with neighbours / a deep page in well under a
millisecond at the median. The HTTP gateway figures are bounded by one uvicorn process sharing
the 2 cores with the httpx clients of the benchmark itself.

## Side experiments

{EXPERIMENTS}
## Proposed next steps

1. Keep the `asdict`-free `to_avro` (experiment 1, +53 % in-process); it is in the code measured
   here.
2. Ingest: make the apply script return compact numeric fields (old/new rank and score,
   version) instead of tab-separated text, and build the RankChanged Avro dicts straight from
   them, skipping the intermediate `RankChange` objects on the hot path; then profile again.
   Beyond that, throughput scales by partitions: 2+ projector workers on a machine with more
   than 2 cores (the score topic has 6 partitions).
3. Latency: time the worker's per-batch stages (decode, apply, publish + flush, acknowledge) in
   its throughput log line to see how much of the tail is the serial `producer.flush`; if it
   dominates, let the next batch's apply start while the previous batch's rank changes are
   being acknowledged (the outbox already makes a re-publish after a crash safe).
4. Replay: 100,000 entries/s is above what the per-entry Lua path reaches on this machine (the
   raw one-member ZADD limit itself is {zadd} ops/s here). Fold the log in Python with the pure
   rules of streams/rules.py (final score and tie-break member per participant) and write only
   the final members with pipelined ZADD/HSET; the existing `--verify` checksum comparison
   proves it equal to the live path.
5. Memory: bucket the participant->member hash into listpack-sized hashes (experiment 4,
   -45 B/entry) and store the tie-break prefix in binary (-32 B/entry): about 165 B/entry
   expected; storing only the prefix (not prefix + id) as the hash value saves a further
   ~8 B. Bounding the event-id set (kept for duplicate detection) by time would also cap it.
"""


DEFAULT_MARKDOWN = PROJECT_ROOT / "BENCHMARKS.md"
DEFAULT_JSON = PROJECT_ROOT / "benchmarks" / "results.json"
