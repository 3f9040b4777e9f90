"""Scenario 3, HTTP queries: the gateway answering concurrent clients on the big board.

Figures: p50 and p99 latency and requests/s of top 100, rank with neighbours and a deep page,
through the gateway on loopback, driven by ``wrk`` (Debian's package): a native client, so the
figures are the gateway's, not those of a Python client competing for the same two cores (the
client's own CPU share is reported beside them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import (
    Namespace,
    Say,
    free_port,
    gateway_args,
    gateway_available,
    wait_http,
)
from benchmarks.params import Params
from benchmarks.scenarios.hot import WrkResult, run_wrk
from streams.events import LeaderboardConfigured

#: wrk script of "rank + neighbours": every request a random participant of the board.
AROUND_SCRIPT = r"""
local size = 1
local base = ""
function init(args)
  size = tonumber(args[1])
  base = wrk.path
  math.randomseed(5)
end
request = function()
  local path = string.format("%s/participants/u%07d?neighbours=5", base, math.random(0, size - 1))
  return wrk.format("GET", path)
end
"""

#: wrk script of a fixed path (the URL's): no per-request work in the client.
FIXED_SCRIPT = r"""
request = function() return wrk.format("GET", wrk.path) end
"""

#: Gateway processes measured: one, and ``--workers 2`` (SO_REUSEPORT) on the two cores.
WORKERS = (1, 2)


def query_slug(name: str) -> str:
    """The key part of a query kind (Redis direct or HTTP): top100, around or deep_page."""
    if name == "top 100":
        return "top100"
    if name.startswith("rank + "):
        return "around"
    if name.startswith("page of 100 at offset "):
        return "deep_page"
    raise ValueError(f"no figure key for query kind {name!r}")


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def http_queries(
    base_url: str, board: str, size: int, p: Params, scripts: Path, gateway_pid: int | None = None
) -> dict[str, tuple[WrkResult, float]]:
    """Per query kind: what ``wrk`` measured with ``p.http_clients`` connections, and the
    gateway's CPU per request in µs (NaN without ``gateway_pid``: a process whose serving
    children are not its own CPU)."""
    prefix = f"{base_url}/v1/leaderboards/{board}"
    fixed = scripts / "http-fixed.lua"
    fixed.write_text(FIXED_SCRIPT)
    around = scripts / "http-around.lua"
    around.write_text(AROUND_SCRIPT)
    kinds: dict[str, tuple[str, Path, list[str]]] = {
        "top 100": (f"{prefix}/rankings?limit=100", fixed, []),
        "rank + 5 neighbours": (prefix, around, [str(size)]),
        f"page of 100 at offset {size // 2:,}": (
            f"{prefix}/rankings?limit=100&offset={size // 2}",
            fixed,
            [],
        ),
    }
    out: dict[str, tuple[WrkResult, float]] = {}
    for name, (url, script, args) in kinds.items():
        before = process_cpu_s(gateway_pid) if gateway_pid is not None else 0.0
        res = run_wrk(
            url, script, threads=1, conns=p.http_clients, seconds=p.http_seconds, args=args
        )
        us = float("nan")
        if gateway_pid is not None:
            us = (process_cpu_s(gateway_pid) - before) / max(1, res.requests) * 1e6
        if res.bad or res.errors:
            raise RuntimeError(f"{name}: {res.bad} non-2xx answers, {res.errors} socket errors")
        out[name] = (res, us)
    return out


async def http_scenario(
    ns: Namespace,
    p: Params,
    cfg: LeaderboardConfigured,
    size: int,
    report: Report,
    say: Say,
) -> None:
    """Start gateways in ``ns`` and add the HTTP query figures (noted when they cannot run)."""
    names = ["top 100", "rank + 5 neighbours", f"page of 100 at offset {size // 2:,}"]
    note = ""
    results: dict[tuple[int, str], list[WrkResult]] = {}
    cpu: dict[str, list[float]] = {}
    if not gateway_available():
        note = "not run: gateway missing"
    elif shutil.which("wrk") is None:
        note = "not run: wrk missing (apt-get install -y wrk)"
    else:
        for workers in WORKERS:
            port = free_port()
            proc = ns.spawn("gateway", [*gateway_args(port), "--workers", str(workers)])
            try:
                if not await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health"):
                    note = "not run: gateway did not answer /health"
                    break
                say(f"[queries] HTTP gateway, {workers} process(es), wrk {p.http_clients} conns")
                for _ in range(p.reps):
                    got = await asyncio.to_thread(
                        http_queries,
                        f"http://127.0.0.1:{port}",
                        cfg.leaderboard_id,
                        size,
                        p,
                        ns.logs,
                        proc.pid if workers == 1 else None,
                    )
                    for name, (value, us) in got.items():
                        results.setdefault((workers, name), []).append(value)
                        if workers == 1:
                            cpu.setdefault(name, []).append(us)
            except Exception as exc:  # keep the other figures; say why
                note = f"failed: {exc!r}"[:200]
                results.clear()
                break
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                await asyncio.to_thread(proc.wait)
    for workers in WORKERS:
        params = (
            f"{size:,} participants; wrk 1 thread x {p.http_clients} connections (keep-alive), "
            f"{p.http_seconds:g}s per run, loopback; {workers} gateway process(es)"
            + (" (--workers 2, SO_REUSEPORT)" if workers > 1 else "")
        )
        suffix = "" if workers == 1 else f"_w{workers}"
        for name in names:
            runs = results.get((workers, name), [])
            slug = query_slug(name)
            top = slug == "top100" and workers == 1
            for q in (50, 99):
                report.add(
                    Figure(
                        "3 queries",
                        f"HTTP gateway ({workers} proc): {name}, p{q}",
                        "ms",
                        [r.p50_ms if q == 50 else r.p99_ms for r in runs],
                        params,
                        Target(20, False, "≤ 20 ms") if top and q == 99 else None,
                        note=note,
                        key=f"http.{slug}_p{q}{suffix}",
                    )
                )
            report.add(
                Figure(
                    "3 queries",
                    f"HTTP gateway ({workers} proc): {name}, requests/s",
                    "req/s",
                    [r.rate for r in runs],
                    params,
                    Target(3_000, True, "≥ 3,000 req/s") if top else None,
                    note=note,
                    key=f"http.{slug}_rps{suffix}",
                )
            )
            if workers == 1:
                report.add(
                    Figure(
                        "3 queries",
                        f"HTTP gateway (1 proc): {name}, gateway CPU per request",
                        "µs",
                        cpu.get(name, []),
                        params,
                        note=note,
                        key=f"http.{slug}_gateway_us",
                    )
                )
            report.add(
                Figure(
                    "3 queries",
                    f"HTTP gateway ({workers} proc): {name}, load generator (wrk) CPU share",
                    "%",
                    [r.client_share() for r in runs],
                    params,
                    note=note,
                    key=f"http.{slug}_client_cpu{suffix}",
                )
            )
