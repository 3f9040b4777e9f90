"""Scenario 3, HTTP queries: the gateway answering concurrent clients on the big board.

Figures: p50 and p99 latency and requests/s of top 100, rank with neighbours and a deep page,
through one uvicorn gateway process on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable

from benchmarks.figures import Figure, Report
from benchmarks.harness import (
    Namespace,
    Say,
    free_port,
    gateway_args,
    gateway_available,
    wait_http,
)
from benchmarks.params import Params
from benchmarks.stats import percentile
from streams.events import LeaderboardConfigured


def query_slug(name: str) -> str:
    """The key part of a query kind (Redis direct or HTTP): top100, around or deep_page."""
    if name == "top 100":
        return "top100"
    if name.startswith("rank + "):
        return "around"
    if name.startswith("page of 100 at offset "):
        return "deep_page"
    raise ValueError(f"no figure key for query kind {name!r}")


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
                """Issue requests until the shared budget is spent."""
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


async def http_scenario(
    ns: Namespace,
    p: Params,
    cfg: LeaderboardConfigured,
    size: int,
    report: Report,
    say: Say,
) -> None:
    """Start a gateway in ``ns`` and add the HTTP query figures (noted when it cannot run)."""
    names = ["top 100", "rank + 5 neighbours", f"page of 100 at offset {size // 2:,}"]
    note = ""
    results: dict[str, list[tuple[list[float], float]]] = {}
    if not gateway_available():
        note = "not run: gateway missing"
    else:
        port = free_port()
        proc = ns.spawn("gateway", gateway_args(port))
        if not await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health"):
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
                    key=f"http.{query_slug(name)}_p{q}",
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
                key=f"http.{query_slug(name)}_rps",
            )
        )
