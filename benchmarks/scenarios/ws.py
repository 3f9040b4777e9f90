"""Scenario ws: WebSocket fan-out of one hot board to many top-10 viewers of ONE gateway.

The projector, the sinks worker and one gateway process run; a background load of 2,000
entries/s goes to the board, and a probe participant gets a score every 200 ms whose value
is its send time in milliseconds (so it is always rank 1 and every top-10 viewer must be
pushed every probe). The viewers are ``ws_viewers.js`` (Node, the ``ws`` package installed
from npm into the stack directory): a native client cheap enough to leave the cores to the
gateway; its CPU share is reported beside the figure. Steps of viewer counts are tried in
order; a step passes when every viewer got its snapshot, push p99 ≤ 500 ms, every probe
sent while the step measured reached every viewer, and the server closed none. The figure is
the largest passing step.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
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
    wait_http,
)
from benchmarks.params import Params
from benchmarks.stats import percentile
from benchmarks.workload import now_ms
from processors.bootstrap import get_codec, kafka_consumer, sync_redis
from processors.kafka.producer import LeaderboardProducer
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings

CLIENT = Path(__file__).with_name("ws_viewers.js")
#: the npm package the client needs, pinned to its major version
WS_PACKAGE = "ws@8"
PROBE = "probe"
#: push p99 ceiling of a passing step (ms)
P99_CEILING = 500.0
BACKGROUND_RATE = 2_000
PROBE_EVERY_S = 0.2


@dataclass(slots=True)
class Step:
    """One viewer count measured: what the viewers saw and what the processes used."""

    viewers: int
    ready: bool = False
    probes: int = 0
    delivered: float = 0.0
    latencies: list[float] = field(default_factory=list)
    #: produce → rank change published (Kafka timestamp of the record), per probe
    upstream: list[float] = field(default_factory=list)
    #: rank change published → viewer received (the gateway's part), per push
    fanout: list[float] = field(default_factory=list)
    closed: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu_s: float = 0.0
    gateway_cpu_s: float = 0.0
    #: messages the viewers received from the start of the measure to its end (+ 2 s)
    messages: int = 0

    @property
    def us_per_push(self) -> float:
        """Gateway CPU (µs) per message a viewer received: less distorted by a busy machine
        than the latencies (the viewers count 2 s more than the CPU window: a lower bound)."""
        return 1e6 * self.gateway_cpu_s / self.messages if self.messages else float("nan")

    @property
    def p99(self) -> float:
        """Push latency p99 (ms); NaN without samples."""
        return percentile(self.latencies, 99) if self.latencies else float("nan")

    @property
    def served(self) -> bool:
        """Every viewer subscribed, every probe delivered to each, none closed."""
        return self.ready and self.probes > 0 and self.delivered >= 1.0 and self.closed == 0

    @property
    def passed(self) -> bool:
        """Served, and push p99 (produce → viewer) within the ceiling: the issue's criteria."""
        return self.served and self.p99 <= P99_CEILING

    @property
    def fanout_passed(self) -> bool:
        """Served, and the gateway's part (rank change published → viewer) p99 within the
        ceiling: what the gateway carries whatever the projector's delay on a busy machine."""
        return self.served and bool(self.fanout) and _p(self.fanout, 99) <= P99_CEILING

    def share(self, cpu_s: float) -> float:
        """``cpu_s`` as a percentage of the whole machine over the step."""
        cores = os.cpu_count() or 1
        return 100.0 * cpu_s / (self.seconds * cores) if self.seconds else 0.0

    def _why_closed(self) -> str:
        """`` (code reason x count, ...)`` of the closes the viewers did not ask for."""
        if not self.close_codes:
            return ""
        return " (" + ", ".join(f"{k} x {v}" for k, v in sorted(self.close_codes.items())) + ")"

    def line(self) -> str:
        """One progress line."""
        verdict = "pass" if self.passed else "fan-out pass" if self.fanout_passed else "FAIL"
        return (
            f"  {self.viewers:,} viewers: {verdict}; push p50 {_p(self.latencies, 50):.0f} "
            f"p99 {self.p99:.0f} ms (upstream p99 {_p(self.upstream, 99):.0f}, gateway "
            f"p99 {_p(self.fanout, 99):.0f}), {self.delivered:.1%} of {self.probes} probes "
            "delivered, "
            f"{self.closed} closed{self._why_closed()}; "
            f"client CPU {self.share(self.client_cpu_s):.0f}%, gateway "
            f"{self.share(self.gateway_cpu_s):.0f}% of the machine, {self.us_per_push:.0f} µs "
            "per push"
        )


def _p(values: list[float], q: float) -> float:
    """Percentile ``q`` of ``values``; NaN if empty."""
    return percentile(values, q) if values else float("nan")


def node_client(base: Settings) -> Path | None:
    """The folder holding ``node_modules/ws`` (installed from npm on first use), or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    folder = base.stack_dir / "bench-node"
    if not (folder / "node_modules" / "ws").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - npm from PATH, fixed arguments
            [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", WS_PACKAGE],
            capture_output=True,
            check=True,
            timeout=300,
        )
    return folder


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Load(threading.Thread):
    """The background entries (10 per record) and the probe scores, until stopped."""

    def __init__(self, settings: Settings, board: str) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.board = board
        self.stopping = threading.Event()
        self.probes: list[int] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        """Send ``BACKGROUND_RATE`` entries/s and a probe every ``PROBE_EVERY_S``."""
        rng = random.Random(17)
        per_s = BACKGROUND_RATE / 10
        with LeaderboardProducer(self.settings) as prod:
            start = time.perf_counter()
            sent = 0
            next_probe = start
            while not self.stopping.is_set():
                now = time.perf_counter()
                while sent < int((now - start) * per_s):
                    eid = str(uuid.uuid4())
                    pids = rng.sample(range(100_000), 10)
                    entries = tuple(ScoreEntry(f"p{i}", rng.randint(1, 10**9)) for i in pids)
                    prod.submit(MatchResultSubmitted(eid, eid, self.board, now_ms(), entries))
                    sent += 1
                if now >= next_probe:
                    next_probe += PROBE_EVERY_S
                    score = now_ms()
                    eid = str(uuid.uuid4())
                    entry = (ScoreEntry(PROBE, score),)
                    prod.submit(MatchResultSubmitted(eid, eid, self.board, now_ms(), entry))
                    with self.lock:
                        self.probes.append(score)
                prod.poll(0)
                time.sleep(0.002)

    def probes_between(self, lo: int, hi: int) -> list[int]:
        """Probe scores sent in [lo, hi] (ms)."""
        with self.lock:
            return [s for s in self.probes if lo <= s <= hi]


class _Published(threading.Thread):
    """Reads the rank-change topic from its end: each probe score's publish time (ms)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.stopping = threading.Event()
        self.at: dict[int, int] = {}

    def run(self) -> None:
        """Consume until stopped."""
        topic = self.settings.topic(self.settings.rank_changes_topic)
        codec = get_codec(self.settings)
        c = kafka_consumer(self.settings, **{"group.id": f"bws-{uuid.uuid4().hex[:6]}"})
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            c.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
            while not self.stopping.is_set():
                for m in c.consume(1000, timeout=0.2):
                    if m.error():
                        continue
                    rec = codec.decode_as(m.value() or b"", RankChanged)
                    for ch in rec.changes:
                        if ch.participant_id == PROBE:
                            self.at.setdefault(ch.new_score, m.timestamp()[1])
        finally:
            c.close()


def _step(
    folder: Path,
    url: str,
    viewers: int,
    seconds: float,
    load: _Load,
    published: _Published,
    gw_pid: int,
    tmp: Path,
) -> Step:
    """Connect ``viewers`` top-10 viewers, measure for ``seconds``, collect what they saw."""
    step = Step(viewers)
    out = tmp / f"viewers-{viewers}-{uuid.uuid4().hex[:6]}.json"
    node = shutil.which("node") or "node"
    proc = subprocess.Popen(  # noqa: S603 - node from PATH, our own script
        [node, str(CLIENT), url, str(viewers), "10", PROBE, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_PATH": str(folder / "node_modules")},
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = proc.stdout.readline().strip()
        step.ready = first.startswith("ready")
        if not step.ready:
            step.errors.append(first or "client exited before its viewers were ready")
        time.sleep(1.0)  # the probe in flight when the last viewer subscribed lands
        lo, c0, g0, t0 = now_ms(), cpu_seconds(proc.pid), cpu_seconds(gw_pid), time.monotonic()
        proc.stdin.write(f"from {lo}\n")
        proc.stdin.flush()
        time.sleep(seconds)
        hi, c1, g1 = now_ms(), cpu_seconds(proc.pid), cpu_seconds(gw_pid)
        step.seconds = time.monotonic() - t0
        step.client_cpu_s, step.gateway_cpu_s = c1 - c0, g1 - g0
        # every probe of the window published (up to 30 s), then 2 s for their pushes: a
        # late probe counts in p99, not as undelivered
        deadline = time.monotonic() + 30
        want = load.probes_between(lo, hi)
        while time.monotonic() < deadline and not all(x in published.at for x in want):
            time.sleep(0.1)
        time.sleep(2.0)
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
        data = json.loads(out.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        out.unlink(missing_ok=True)
    sent = set(load.probes_between(lo, hi))
    step.probes = len(sent)
    got = 0
    for seen in data["seen"]:
        for score, at in seen:
            if score in sent:
                got += 1
                step.latencies.append(float(at - score))
                if score in published.at:
                    step.fanout.append(float(at - published.at[score]))
    step.upstream = [float(published.at[s] - s) for s in sent if s in published.at]
    step.delivered = got / (len(sent) * viewers) if sent else 0.0
    step.messages = int(data.get("messages", 0))
    step.closed = len(data["closes"])
    for c in data["closes"]:
        # the code and the server's reason (routes/live.py states one for each of its closes)
        key = f"{c['code']} {c.get('reason') or ''}".strip()
        step.close_codes[key] = step.close_codes.get(key, 0) + 1
    step.errors += data["errors"][:5]
    return step


def viewers_once(
    base: Settings, steps: tuple[int, ...], seconds: float, logs: Path, folder: Path, say: Say
) -> list[Step]:
    """One ladder of viewer counts on a fresh namespace; stops at the first step the
    gateway fails (its own part of the push over the ceiling, a viewer closed or missed)."""
    ns = Namespace(base, "wsv", logs)
    board = f"{ns.tag}-hot"
    ns.boards = [board]
    cfg = LeaderboardConfigured(
        board, SortOrder.DESC, Operator.BEST, ResetPeriod.NONE, configured_at=now_ms()
    )
    load = _Load(ns.settings, board)
    published = _Published(ns.settings)
    done: list[Step] = []
    try:
        with LeaderboardProducer(ns.settings) as prod:
            prod.configure(cfg)
            prod.submit(
                MatchResultSubmitted("warm", "warm", board, now_ms(), (ScoreEntry("w", 1),))
            )
        ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
        ns.spawn("sinks", ["worker", "--role", "sinks", "--loglevel", "warning"])
        port = free_port()
        gw = ns.spawn("gateway", gateway_args(port))
        if not wait_http(f"http://127.0.0.1:{port}/health"):
            raise RuntimeError("the gateway did not answer /health")
        r = sync_redis(url=ns.settings.redis_url)
        deadline = time.monotonic() + 90
        while board_versions(r, [board]) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        r.close()
        published.start()
        load.start()
        time.sleep(3.0)
        url = f"ws://127.0.0.1:{port}/v1/leaderboards/{board}/subscribe"
        tmp = base.stack_dir / "bench-node"
        for viewers in steps:
            step = _step(folder, url, viewers, seconds, load, published, gw.pid, tmp)
            say(step.line())
            done.append(step)
            if not step.fanout_passed:
                break
        return done
    finally:
        load.stopping.set()
        published.stopping.set()
        load.join(10)
        published.join(10)
        ns.cleanup()


def _largest(run: list[Step], *, fanout: bool = False) -> float:
    """The largest passing viewer count of one ladder (0 if none passed)."""
    ok = [s.viewers for s in run if (s.fanout_passed if fanout else s.passed)]
    return float(max(ok, default=0))


def run_ws(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> None:
    """Run the viewer ladder ``p.reps`` times and add ``ws.viewers`` and its companions."""
    folder = None
    note = ""
    try:
        folder = node_client(base)
        if folder is None:
            note = "not run: node and npm are needed for the viewers' client"
    except (OSError, subprocess.SubprocessError) as exc:
        note = f"not run: npm install {WS_PACKAGE} failed ({exc!r:.120})"
    runs: list[list[Step]] = []
    for i in range(p.reps if folder is not None else 0):
        assert folder is not None
        say(f"[ws] top-10 viewers of one board, ladder {p.ws_steps}, run {i + 1}/{p.reps}")
        runs.append(viewers_once(base, p.ws_steps, p.ws_seconds, logs, folder, say))
    params = (
        f"one gateway process; top-10 viewers of one board (Node `ws` clients), "
        f"{BACKGROUND_RATE:,} entries/s background (10 per record), a probe score every "
        f"{PROBE_EVERY_S * 1000:.0f} ms measured {p.ws_seconds:g} s per step; steps "
        f"{', '.join(f'{s:,}' for s in p.ws_steps)} until one fails; pass = every viewer "
        f"subscribed, push p99 ≤ {P99_CEILING:.0f} ms, every probe delivered to every viewer, "
        "none closed by the server"
    )
    report.add(
        Figure(
            "ws fan-out",
            "top-10 viewers one gateway process serves (push p99 ≤ 500 ms, all delivered)",
            "viewers",
            [_largest(r) for r in runs],
            params,
            Target(2_000, True, "≥ 2,000 viewers"),
            note,
            key="ws.viewers",
        )
    )
    report.add(
        Figure(
            "ws fan-out",
            "top-10 viewers one gateway process serves (its own part of the push p99 ≤ 500 ms, "
            "all delivered)",
            "viewers",
            [_largest(r, fanout=True) for r in runs],
            params + "; the gateway's part: viewer receive time minus the Kafka timestamp of "
            "the rank-change record that carried the probe",
            None,
            note,
            key="ws.viewers_fanout",
        )
    )
    tops = [r[-1] for r in runs if r]
    for key, name, unit, values in (
        (
            "ws.viewers_top_fanout_p99",
            "gateway's part of the push p99 at the last step tried",
            "ms",
            [_p(s.fanout, 99) for s in tops],
        ),
        (
            "ws.viewers_top_upstream_p99",
            "produce → rank change published p99 at the last step tried",
            "ms",
            [_p(s.upstream, 99) for s in tops],
        ),
        ("ws.viewers_top_p99", "push p99 at the last step tried", "ms", [s.p99 for s in tops]),
        (
            "ws.viewers_client_cpu",
            "viewers' client (Node) CPU at the last step tried",
            "% of machine",
            [s.share(s.client_cpu_s) for s in tops],
        ),
        (
            "ws.viewers_gateway_cpu",
            "gateway CPU at the last step tried",
            "% of machine",
            [s.share(s.gateway_cpu_s) for s in tops],
        ),
        (
            "ws.viewers_gateway_us_per_push",
            "gateway CPU per message a viewer received, at the last step tried",
            "µs",
            [s.us_per_push for s in tops],
        ),
    ):
        report.add(Figure("ws fan-out", name, unit, values, params, None, note, key=key))
    report.details["ws viewer steps"] = [
        [
            {
                "viewers": s.viewers,
                "passed": s.passed,
                "fanout_passed": s.fanout_passed,
                "ready": s.ready,
                "push_p50_ms": round(percentile(s.latencies, 50), 1) if s.latencies else None,
                "push_p99_ms": round(s.p99, 1) if s.latencies else None,
                "upstream_p99_ms": round(_p(s.upstream, 99), 1) if s.upstream else None,
                "gateway_p99_ms": round(_p(s.fanout, 99), 1) if s.fanout else None,
                "probes": s.probes,
                "delivered": round(s.delivered, 4),
                "closed": s.closed,
                "close_codes": s.close_codes,
                "client_cpu_pct": round(s.share(s.client_cpu_s), 1),
                "gateway_cpu_pct": round(s.share(s.gateway_cpu_s), 1),
                "gateway_us_per_push": round(s.us_per_push, 1) if s.messages else None,
                "errors": s.errors,
            }
            for s in r
        ]
        for r in runs
    ]
