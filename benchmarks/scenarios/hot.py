"""Scenario "hot": one hot board fed single scores, over HTTP (``wrk``) and through the SDK.

Figures: sustained HTTP submits/s to one board with every submission applied end to end
(Redis + audit), the ack latency at that load, the ``?wait=true`` latency at a fixed rate, the
load generator's own CPU share, and the SDK drain rate of single-entry records to one board.

The load generator is ``wrk`` (Debian's package), a native client driven by a Lua script that
makes every request a new submission (its own participant, so its own event id), so the
figures are not those of a Python client competing for the same cores.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import (
    Namespace,
    Say,
    audit_rows,
    board_versions,
    free_port,
    gateway_args,
    retry,
    wait_http,
)
from benchmarks.params import Params
from benchmarks.scenarios.ingest import ingest_once
from benchmarks.workload import board_configs
from processors.bootstrap import pg_connect, sync_redis
from processors.kafka.producer import LeaderboardProducer
from streams.settings import Settings

#: wrk script: every request a new participant (so a new event id); optional pacing (ms
#: between two requests of one wrk thread, spread over its connections) through LuaJIT's FFI.
WRK_SCRIPT = r"""
local threads = {}
local counter = 0
local prefix = "w"
local interval = 0
local next_t = nil
local now_ms = nil

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(tid)
  interval = tonumber(args[2] or "0")
  if interval > 0 then
    local ffi = require("ffi")
    ffi.cdef[[
      typedef struct { long tv_sec; long tv_nsec; } lb_timespec;
      int clock_gettime(int clk, lb_timespec *tp);
    ]]
    local ts = ffi.new("lb_timespec")
    now_ms = function()
      ffi.C.clock_gettime(1, ts)
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
  end
end

function delay()
  if interval <= 0 then return 0 end
  local now = now_ms()
  if next_t == nil or next_t < now - 100 then next_t = now end
  local slot = next_t
  next_t = next_t + interval
  if slot <= now then return 0 end
  return math.floor(slot - now)
end

request = function()
  counter = counter + 1
  local body = '{"participant_id":"' .. prefix .. "-" .. counter .. '","score":'
    .. tostring((counter * 7919) % 1000000 + 1) .. "}"
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, body)
end
"""


#: The low rate of the second ``?wait=true`` run (requests/s).
LOW_WAIT_RATE = 100
#: Single scores per record the SDK's coalescer packs in the ``ingest.hot_single`` drain.
HOT_COALESCE = 100


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one ``wrk`` run reported, plus the CPU the client itself used."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    bad: int
    errors: int
    client_cpu_s: float

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return self.requests - self.bad

    @property
    def rate(self) -> float:
        """Requests/s during the run."""
        return self.requests / self.seconds if self.seconds else float("nan")

    def client_share(self) -> float:
        """The client's CPU as a percentage of the whole machine during the run."""
        cores = os.cpu_count() or 1
        return 100.0 * self.client_cpu_s / (self.seconds * cores) if self.seconds else 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"wrk latency {text!r} not understood")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str, client_cpu_s: float) -> WrkResult:
    """Parse ``wrk --latency`` output (requests, duration, p50/p99, non-2xx, socket errors)."""
    m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", out)
    if m is None:
        raise ValueError(f"wrk output not understood: {out[-300:]!r}")
    lat = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)[ \t]*$", out, re.M))
    if "50" not in lat or "99" not in lat:
        raise ValueError(f"wrk printed no latency distribution: {out[-300:]!r}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        int(m.group(1)),
        _ms(m.group(2) + m.group(3)) / 1000,
        _ms(lat["50"]),
        _ms(lat["99"]),
        int(bad.group(1)) if bad else 0,
        sum(int(x) for x in errs.groups()) if errs else 0,
        client_cpu_s,
    )


def run_wrk(
    url: str, script: Path, *, threads: int, conns: int, seconds: float, args: list[str]
) -> WrkResult:
    """Run ``wrk`` against ``url`` and parse it; the client's CPU comes from its rusage."""
    exe = shutil.which("wrk")
    if exe is None:
        raise FileNotFoundError("wrk is not installed (apt-get install -y wrk)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(  # noqa: S603 - wrk from PATH, our own arguments
        [
            exe,
            "-t",
            str(threads),
            "-c",
            str(conns),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(proc.stdout, cpu)


@dataclass(slots=True)
class HotRun:
    """One HTTP run on a fresh namespace: the submit load, then the paced ``wait`` load."""

    submit: WrkResult
    applied_s: float
    applied_rate: float
    wait: WrkResult
    wait_rate: float
    complete: bool
    wait_low: WrkResult | None = None


def _warm_up(base_url: str, path: str, deadline_s: float = 90.0) -> int:
    """Submit with ``wait=true`` until one is applied (workers assigned): submissions made."""
    made = 0
    deadline = time.monotonic() + deadline_s
    with httpx.Client(base_url=base_url, timeout=10) as http:
        while time.monotonic() < deadline:
            made += 1
            resp = http.post(
                f"{path}?wait=true", json={"participant_id": f"warm-{made}", "score": 1}
            )
            if resp.status_code == 200:
                return made
            if resp.status_code != 504:
                resp.raise_for_status()
    raise TimeoutError("the projector applied nothing within 90 s")


def _wait_applied(ns: Namespace, board: str, total: int, timeout_s: float) -> float | None:
    """Seconds until the board's version and its audit rows reach ``total`` (None: never)."""
    r = sync_redis(url=ns.settings.redis_url)
    conn = pg_connect(ns.settings, autocommit=True)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < timeout_s:
            if board_versions(r, [board]) >= total and audit_rows(conn, [board]) >= total:
                return time.perf_counter() - t0
            time.sleep(0.1)
        return None
    finally:
        r.close()
        conn.close()


def hot_once(base: Settings, p: Params, logs: Path, say: Say) -> HotRun:
    """Projector + sinks + gateway on one fresh board; wrk submit load, then wait load."""
    ns = Namespace(base, "hot", logs)
    try:
        (cfg,) = board_configs(ns.tag, 1)
        board = cfg.leaderboard_id
        ns.boards = [board]
        with LeaderboardProducer(ns.settings) as prod:
            prod.configure(cfg)
        ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
        ns.spawn("sinks", ["worker", "--role", "sinks", "--loglevel", "warning"])
        port = free_port()
        ns.spawn("gateway", gateway_args(port))
        base_url = f"http://127.0.0.1:{port}"
        if not wait_http(f"{base_url}/health"):
            raise RuntimeError("gateway did not answer /health")
        path = f"/v1/leaderboards/{board}/scores"
        made = _warm_up(base_url, path)
        script = logs / f"{ns.tag}-submit.lua"
        script.write_text(WRK_SCRIPT)
        t0 = time.perf_counter()
        sub = run_wrk(
            base_url + path,
            script,
            threads=2,
            conns=p.hot_connections,
            seconds=p.hot_seconds,
            args=["s"],
        )
        total = made + sub.ok
        left = _wait_applied(ns, board, total, timeout_s=max(60.0, p.hot_seconds * 4))
        applied_s = time.perf_counter() - t0 if left is not None else float("nan")
        applied_rate = sub.ok / max(sub.seconds, applied_s) if left is not None else float("nan")
        say(
            f"  submit: {sub.rate:,.0f} req/s acked (p50 {sub.p50_ms:.1f} ms, p99 "
            f"{sub.p99_ms:.1f} ms, {sub.bad} non-2xx, {sub.errors} socket errors, client CPU "
            f"{sub.client_share():.0f} %); all applied after {applied_s:.1f}s: "
            f"{applied_rate:,.0f}/s end to end"
        )
        conns = max(1, p.wait_rate // 10)  # 10/s per connection: room for 100 ms answers
        wait = run_wrk(
            base_url + path + "?wait=true",
            script,
            threads=1,
            conns=conns,
            seconds=p.hot_seconds,
            args=["wait", f"{1000 / p.wait_rate:.4f}"],
        )
        say(
            f"  wait=true at {wait.rate:,.0f} req/s: p50 {wait.p50_ms:.1f} ms, p99 "
            f"{wait.p99_ms:.1f} ms, {wait.bad} non-2xx, {wait.errors} socket errors"
        )
        low = run_wrk(  # the path's own latency, at a rate far below saturation
            base_url + path + "?wait=true",
            script,
            threads=1,
            conns=10,
            seconds=min(p.hot_seconds, 10.0),
            args=["low", f"{1000 / LOW_WAIT_RATE:.4f}"],
        )
        say(
            f"  wait=true at {low.rate:,.0f} req/s: p50 {low.p50_ms:.1f} ms, "
            f"p99 {low.p99_ms:.1f} ms"
        )
        done = _wait_applied(ns, board, total + wait.ok + low.ok, timeout_s=60.0)
        return HotRun(
            sub,
            applied_s,
            applied_rate,
            wait,
            wait.rate,
            left is not None
            and done is not None
            and sub.bad == 0
            and wait.bad == 0
            and low.bad == 0,
            low,
        )
    finally:
        ns.cleanup()


def run_hot(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> None:
    """Run the HTTP hot-board runs and the SDK single-entry drain; add their figures."""
    runs: list[HotRun] = []
    note = ""
    if shutil.which("wrk") is None:
        note = "not run: wrk missing (apt-get install -y wrk)"
    else:
        for i in range(p.reps):
            say(f"[hot] HTTP run {i + 1}/{p.reps}")
            try:
                runs.append(retry(lambda: hot_once(base, p, logs, say), say))
            except Exception as exc:  # keep the other figures; say why
                note = f"failed: {exc!r}"[:200]
                runs.clear()
                break
    incomplete = [r for r in runs if not r.complete]
    if incomplete and not note:
        note = f"{len(incomplete)} run(s) with refused or unapplied submissions"
    params = (
        f"one board, every request a new participant; wrk 2 threads x {p.hot_connections} "
        f"connections for {p.hot_seconds:g}s on loopback; 1 gateway process, 1 projector, "
        "1 sinks worker; end to end = every accepted submission in Redis and in the audit table"
    )
    wait_params = (
        f"POST ?wait=true paced at {p.wait_rate:,}/s by wrk (1 thread, "
        f"{max(1, p.wait_rate // 10)} connections), {p.hot_seconds:g}s, same services"
    )
    low_params = (
        f"POST ?wait=true paced at {LOW_WAIT_RATE}/s by wrk (1 thread, 10 connections), "
        f"{min(p.hot_seconds, 10.0):g}s, after the runs above: the path's latency without queueing"
    )
    figures = [
        (
            "HTTP submits to one board, sustained, all applied end to end",
            "req/s",
            [r.applied_rate for r in runs],
            params + "; accepted / max(load time, time until all applied)",
            Target(3_000, True, "≥ 3,000 req/s"),
            "http.submit",
        ),
        (
            "HTTP submits to one board, acknowledged",
            "req/s",
            [r.submit.rate for r in runs],
            params,
            None,
            "http.submit_acked",
        ),
        (
            "HTTP submit ack, p50",
            "ms",
            [r.submit.p50_ms for r in runs],
            params,
            None,
            "http.submit_ack_p50",
        ),
        (
            "HTTP submit ack, p99",
            "ms",
            [r.submit.p99_ms for r in runs],
            params,
            Target(50, False, "≤ 50 ms"),
            "http.submit_ack_p99",
        ),
        (
            "HTTP submit load generator (wrk) CPU, share of the machine",
            "%",
            [r.submit.client_share() for r in runs],
            params,
            None,
            "http.submit_client_cpu",
        ),
        (
            "HTTP ?wait=true (new + previous rank), p50",
            "ms",
            [r.wait.p50_ms for r in runs],
            wait_params,
            None,
            "http.wait_p50",
        ),
        (
            "HTTP ?wait=true (new + previous rank), p99",
            "ms",
            [r.wait.p99_ms for r in runs],
            wait_params,
            Target(50, False, "≤ 50 ms"),
            "http.wait_p99",
        ),
        (
            f"HTTP ?wait=true at {LOW_WAIT_RATE}/s, p50",
            "ms",
            [r.wait_low.p50_ms for r in runs if r.wait_low is not None],
            low_params,
            None,
            "http.wait_low_p50",
        ),
        (
            f"HTTP ?wait=true at {LOW_WAIT_RATE}/s, p99",
            "ms",
            [r.wait_low.p99_ms for r in runs if r.wait_low is not None],
            low_params,
            None,
            "http.wait_low_p99",
        ),
        (
            "HTTP ?wait=true, achieved rate",
            "req/s",
            [r.wait_rate for r in runs],
            wait_params,
            None,
            "http.wait_rate",
        ),
    ]
    for name, unit, values, text, target, key in figures:
        report.add(Figure("hot board", name, unit, values, text, target, note, key=key))
    report.details["hot runs"] = [dataclasses.asdict(r) for r in runs]
    _hot_single(base, p, report, logs, say)


def _hot_single(base: Settings, p: Params, report: Report, logs: Path, say: Say) -> None:
    """SDK single scores to ONE board, pre-produced, drained end to end: coalesced by the
    SDK's ScoreCoalescer (``ingest.hot_single``) and one record each (for comparison)."""
    for coalesce, key, how in (
        (HOT_COALESCE, "ingest.hot_single", f"coalesced {HOT_COALESCE} to a record by the SDK"),
        (0, "ingest.hot_single_uncoalesced", "one record each"),
    ):
        sp = dataclasses.replace(
            p, ingest_records=p.hot_records, entries_per_record=1, boards=1, coalesce=coalesce
        )
        runs = []
        for i in range(p.reps):
            say(f"[hot] SDK single-score drain, {how}, {i + 1}/{p.reps}")
            runs.append(retry(functools.partial(ingest_once, base, sp, logs, say), say))
        rates = [r.e2e_rate for r in runs]
        report.add(
            Figure(
                "hot board",
                f"SDK single scores to one board, {how}, end to end, entries/s",
                "entries/s",
                rates,
                f"{p.hot_records:,} pre-produced single scores ({how}), one board (one "
                "partition), 1 projector + 1 sinks worker; first applied entry to last audit row",
                Target(15_000, True, "≥ 15,000 entries/s") if coalesce else None,
                key=key,
            )
        )
        for who, values in (
            ("projector", [r.projector_cpu_us for r in runs]),
            ("sinks", [r.sinks_cpu_us for r in runs]),
        ):
            report.add(
                Figure(
                    "hot board",
                    f"SDK single scores to one board, {how}: {who} CPU per entry, µs",
                    "µs",
                    values,
                    "the same drains; user + system CPU from first progress to completion",
                    key=f"{key}_{who}_cpu_us_per_entry",
                )
            )
