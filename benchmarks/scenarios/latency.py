"""Scenario 1b, latency: fixed-rate load with the projector, sinks and gateway running.

Figures: produce → visible in Redis (the Kafka timestamp of the RankChanged record minus the
send time, every record) and produce → WebSocket delta of a tracked probe participant, at the
headline rate and at a lower one.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_END, TopicPartition

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import (
    Namespace,
    Say,
    board_versions,
    free_port,
    gateway_args,
    gateway_available,
    retry,
    wait_http,
)
from benchmarks.machine_cpu import CpuSplit, describe, us_per_unit
from benchmarks.params import Params
from benchmarks.stats import percentile
from benchmarks.workload import board_configs, match_stream, now_ms
from processors.bootstrap import get_codec, kafka_consumer, sync_redis
from processors.kafka.producer import LeaderboardProducer
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    RankChanged,
    ScoreEntry,
)
from streams.settings import Settings

#: the rank-change watcher's longest fetch wait (ms): it reads in batches (see ``_RankWatcher``)
WATCHER_WAIT_MS = 100


@dataclass(slots=True)
class LatencyRun:
    """Latency samples of one fixed-rate run (milliseconds)."""

    visible: list[float] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)
    websocket: list[float] = field(default_factory=list)
    #: the gateway's part of each probe's delta: WebSocket arrival minus the Kafka timestamp
    #: of the rank-change record that carried the probe (published → pushed)
    gateway: list[float] = field(default_factory=list)
    #: each probe's publish time (Kafka timestamp of its rank-change record, seconds)
    published: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this (the load generator's) process while it produced, and the
    #: wall-clock seconds it produced for
    client_cpu_s: float = 0.0
    produce_s: float = 0.0
    sent: int = 0
    probes: int = 0
    achieved_rate: float = 0.0
    websocket_note: str = ""
    #: a new producer's creation → its first record acknowledged (the warm-up, before the clock)
    producer_first_ack_ms: float = 0.0
    #: the machine's CPU per entry sent, by process group, while the load ran (µs)
    cpu_split: dict[str, float] = field(default_factory=dict)

    @property
    def client_share(self) -> float:
        """The load generator's CPU while it produced, as a percentage of the machine."""
        cores = os.cpu_count() or 1
        return 100.0 * self.client_cpu_s / (self.produce_s * cores) if self.produce_s else 0.0


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
        """Consume until stopped, recording each tracked event's latencies once."""
        topic = self.settings.topic(self.settings.rank_changes_topic)
        codec = get_codec(self.settings)
        # measurement, not pipeline: fetch in large batches (a fetch per rank-change record
        # would add a few hundred requests a second to the broker under test). The figures
        # use the records' Kafka timestamps; only ``arrival`` includes this wait.
        c = kafka_consumer(
            self.settings,
            **{
                "group.id": f"bw-{uuid.uuid4().hex[:6]}",
                "fetch.min.bytes": 1 << 20,
                "fetch.wait.max.ms": WATCHER_WAIT_MS,
            },
        )
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
                        self.run_.published[ch.event_id] = ts
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
    """Send matches at ``rate`` entries/s for the run's duration, a probe 10 times/s."""
    rng = random.Random(10)
    k = p.entries_per_record
    per_s = rate / k
    probe_every = max(1, int(per_s / 10))
    made = time.perf_counter()
    with LeaderboardProducer(settings) as prod:
        # A steady load from a long-lived producer, as a game service's: warmed before the
        # clock starts. A new idempotent producer holds its first records ~0.5 s until it has
        # its producer id (librdkafka retries that request 500 ms after start-up when no broker
        # connection is up yet); in a 30 s run that one burst of the client's own start-up
        # was the p99 (benchmarks/notes.md, "The first second of the latency run").
        warm = str(uuid.uuid4())
        prod.submit(MatchResultSubmitted(warm, warm, probe, now_ms(), (ScoreEntry("w", 1),)))
        prod.flush()
        run.producer_first_ack_ms = (time.perf_counter() - made) * 1000
        gen = match_stream(rng, boards, p.players, 10**9, k, now_ms())
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
                    m.event_id, m.match_id, m.leaderboard_id, now_ms(), m.entries
                )
                sent[m.event_id] = time.time()
                prod.submit(m)
                n += 1
                if n % probe_every == 0:
                    eid = str(uuid.uuid4())
                    pm = MatchResultSubmitted(
                        eid, eid, probe, now_ms(), (ScoreEntry("probe", 1, Operator.INCR),)
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
    """Track the probe participant over the gateway's WebSocket; record delta latencies."""
    from websockets.asyncio.client import connect

    arrivals: dict[str, float] = {}
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
                    arrivals[eid] = now
    for eid, at in arrivals.items():  # the watcher has seen every record by now
        if eid in run.published:
            run.gateway.append((at - run.published[eid]) * 1000)


def latency_once(base: Settings, p: Params, rate: int, logs: Path, say: Say) -> LatencyRun:
    """Fixed-rate load with projector, sinks and (if present) the gateway running."""
    ns = Namespace(base, "lat", logs)
    run = LatencyRun()
    try:
        probe = _start_pipeline(ns, p)
        ws_url = _start_gateway(ns, probe, run)
        _wait_ready(ns, probe)
        sent: dict[str, float] = {}
        probe_sent: dict[str, float] = {}
        watcher = _RankWatcher(ns.settings, sent, run)
        watcher.start()
        watcher.ready.wait(15)
        # ns.procs: projector, sinks, then the gateway when this checkout has one
        names = ("projector", "sinks", "gateway")[: len(ns.procs)]
        split = CpuSplit(ns.settings, {n: pr.pid for n, pr in zip(names, ns.procs, strict=True)})
        asyncio.run(_drive(ns, p, rate, probe, ws_url, sent, probe_sent, watcher, run, split))
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
            f"{percentile(run.websocket, 99):.0f} ms ({len(run.websocket)}/{run.probes}), "
            f"gateway's part p99 {percentile(run.gateway, 99) if run.gateway else float('nan'):.0f}"
            f" ms; client CPU {run.client_share:.0f}% of the machine"
        )
        say(f"  machine CPU/entry while producing: {describe(run.cpu_split)}")
        return run
    finally:
        ns.cleanup()


def _start_pipeline(ns: Namespace, p: Params) -> str:
    """Configure the boards and the probe board, send a warm-up record, start the workers.

    Returns the probe board's id (the last of ``ns.boards``).
    """
    cfgs = board_configs(ns.tag, p.boards)
    probe_cfg = LeaderboardConfigured(
        f"{ns.tag}-probe", operator=Operator.INCR, configured_at=now_ms()
    )
    ns.boards = [c.leaderboard_id for c in cfgs] + [probe_cfg.leaderboard_id]
    with LeaderboardProducer(ns.settings) as prod:
        for cfg in [*cfgs, probe_cfg]:
            prod.configure(cfg)
        # warm-up record: the workers are ready once it is applied
        prod.submit(
            MatchResultSubmitted(
                "warm", "warm", probe_cfg.leaderboard_id, now_ms(), (ScoreEntry("w", 1),)
            )
        )
    ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
    ns.spawn("sinks", ["worker", "--role", "sinks", "--loglevel", "warning"])
    return probe_cfg.leaderboard_id


def _start_gateway(ns: Namespace, probe: str, run: LatencyRun) -> str | None:
    """Start the gateway if this checkout has one: the probe's WebSocket URL, or None (noted)."""
    port = free_port()
    if not gateway_available():
        run.websocket_note = "not run: gateway missing"
        return None
    ns.spawn("gateway", gateway_args(port))
    if wait_http(f"http://127.0.0.1:{port}/health"):
        return f"ws://127.0.0.1:{port}/v1/leaderboards/{probe}/subscribe"
    run.websocket_note = "not run: gateway did not answer /health"
    return None


def _wait_ready(ns: Namespace, probe: str) -> None:
    """Wait until the warm-up record is applied, then for the sinks worker to join too."""
    r = sync_redis(url=ns.settings.redis_url)
    deadline = time.monotonic() + 90
    while board_versions(r, [probe]) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    r.close()
    time.sleep(2.0)  # let the sinks worker join its group too


async def _drive(
    ns: Namespace,
    p: Params,
    rate: int,
    probe: str,
    ws_url: str | None,
    sent: dict[str, float],
    probe_sent: dict[str, float],
    watcher: _RankWatcher,
    run: LatencyRun,
    split: CpuSplit,
) -> None:
    """Produce at ``rate`` while listening on the WebSocket, then wait for the stragglers;
    ``split`` is read when the load starts and when it ends."""
    stop = asyncio.Event()
    listener = None
    if ws_url is not None:
        listener = asyncio.create_task(_ws_listen(ws_url, probe_sent, run, stop))
        await asyncio.sleep(1.0)
    cpu0, t0, first = time.process_time(), time.monotonic(), split.snapshot()
    await asyncio.to_thread(
        _produce_fixed_rate,
        ns.settings,
        ns.boards[:-1],
        probe,
        p,
        rate,
        sent,
        probe_sent,
        run,
    )
    run.client_cpu_s, run.produce_s = time.process_time() - cpu0, time.monotonic() - t0
    run.cpu_split = us_per_unit(first, split.snapshot(), run.sent * p.entries_per_record)
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


def run_latency(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> None:
    """Run latency at the headline rate, then at the low rate; add their figures."""
    for rate in (p.latency_rate, p.latency_low_rate):
        _latency_figures(base, p, rate, report, logs, say)


def _latency_figures(
    base: Settings, p: Params, rate: int, report: Report, logs: Path, say: Say
) -> None:
    """Run latency ``p.reps`` times at ``rate`` and add its figures and run details."""
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
    # Keys name the role of the rate (the headline rate or the low one), not its value.
    prefix = "latency.headline" if headline else "latency.low"
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
                key=f"{prefix}.redis_{label}",
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
                key=f"{prefix}.websocket_{label}",
            )
        )
    report.add(
        Figure(
            "1 latency",
            f"{at}: rank change published → WebSocket delta (the gateway's part), p99",
            "ms",
            [percentile(x.gateway, 99) for x in lat_runs if x.gateway],
            lp + "; per probe: WebSocket arrival minus the Kafka timestamp of the rank-change "
            "record that carried it (feed fetch, push window, send)",
            None,
            note=ws_note,
            key=f"{prefix}.websocket_gateway_p99",
        )
    )
    report.add(
        Figure(
            "1 latency",
            f"{at}: load generator CPU (producer, rank-change reader, WebSocket client)",
            "% of machine",
            [x.client_share for x in lat_runs if x.produce_s],
            lp + "; the benchmark process's CPU while it produced, over the machine's cores",
            None,
            key=f"{prefix}.client_cpu",
        )
    )
    report.add(
        Figure(
            "1 latency",
            f"{at}: a new SDK producer, created → first record acknowledged",
            "ms",
            [x.producer_first_ack_ms for x in lat_runs if x.producer_first_ack_ms],
            lp + "; the load generator's warm-up record, sent before the clock starts: a new "
            "idempotent producer holds its first records until it has its producer id",
            None,
            key=f"{prefix}.producer_first_ack_ms",
        )
    )
    groups = [g for g in (lat_runs[0].cpu_split if lat_runs else {}) if g]
    for g in groups:
        report.add(
            Figure(
                "1 latency",
                f"{at}: CPU per entry sent while the load runs: {g}, µs",
                "µs",
                [x.cpu_split.get(g, float("nan")) for x in lat_runs],
                lp + "; user + system CPU from /proc (benchmarks/machine_cpu.py); machine: every "
                "process of the run; other: the rest of the machine",
                None,
                key=f"{prefix}.{g}_cpu_us_per_entry",
            )
        )
    if headline:
        report.alias("ws.p99_10k", f"{prefix}.websocket_p99", Target(250, False, "≤ 250 ms"))
    report.details[f"latency runs at {rate:,} entries/s"] = [
        {
            "sent_records": x.sent,
            "achieved_entries_per_s": round(x.achieved_rate),
            "visible_samples": len(x.visible),
            "websocket_samples": len(x.websocket),
            "probes": x.probes,
            "consumer_arrival_p99_ms": round(percentile(x.arrival, 99), 1),
            "gateway_part_p99_ms": round(percentile(x.gateway, 99), 1) if x.gateway else None,
            "client_cpu_pct": round(x.client_share, 1),
            "producer_first_ack_ms": round(x.producer_first_ack_ms, 1),
            "cpu_us_per_entry": {k: round(v, 1) for k, v in x.cpu_split.items()},
            "note": x.websocket_note,
        }
        for x in lat_runs
    ]
