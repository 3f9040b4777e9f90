"""The gateway as an operator runs it: offline docs, request ids in JSON logs, the per-client
write limit and a bounded SIGTERM that closes subscriptions with 1001."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import websockets

from streams.settings import Settings
from tests.e2e.test_gateway import A, W, start_gateway, stop, subscribe
from tests.integration.conftest import ARTIFACTS, Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CLIENT_BURST = 3


@dataclass
class Running:
    """A gateway subprocess with its URL and its log file."""

    url: str
    proc: Any
    log: Path

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON lines of the gateway's log (every line must be JSON)."""
        lines = [ln for ln in self.log.read_text().splitlines() if ln.strip()]
        return [json.loads(ln) for ln in lines]


def launch(p: Pipeline, *args: str, **env: str) -> Running:
    before = set(ARTIFACTS.glob(f"{p.tag}-gateway-*.log"))
    proc, url = start_gateway(p, *args, **env)
    port = urlsplit(url).port
    log = ARTIFACTS / f"{p.tag}-gateway-{port}.log"
    assert log.exists() and log not in before
    return Running(url, proc, log)


@pytest.fixture(scope="module")
def pipeline_ops(stack: Settings) -> Iterator[Pipeline]:
    p = Pipeline(stack, f"o{uuid.uuid4().hex[:8]}")
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def gw(pipeline_ops: Pipeline) -> Iterator[Running]:
    """A gateway with JSON logs, access lines and a small per-client write budget."""
    running = launch(
        pipeline_ops,
        "--log-level",
        "info",
        "--access-log",
        "--client-rate",
        "0.5",
        "--client-burst",
        str(CLIENT_BURST),
        LEADERBOARD_LOG_FORMAT="json",
    )
    try:
        yield running
    finally:
        stop(running.proc)


# ------------------------------------------------------------------------------ offline docs

_URL_IN_PAGE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_reference_only_the_gateway(gw: Running, page: str) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        r = c.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        refs = [a or b for a, b in _URL_IN_PAGE.findall(r.text)]
        assert refs, r.text
        assert not re.search(r"https?://", r.text), "the page names another host"
        assets = [u for u in refs if not u.endswith("openapi.json")]
        assert any(u.endswith(".js") for u in assets), assets
        for ref in refs:
            url = urljoin(gw.url + page, ref)
            assert urlsplit(url).netloc == urlsplit(gw.url).netloc, ref
            got = c.get(url)
            assert got.status_code == 200, (ref, got.status_code)
            assert len(got.content) > 1000, ref


# ------------------------------------------------------------------------------ request ids


def test_request_id_is_echoed_generated_and_logged(gw: Running) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        given = f"probe-{uuid.uuid4().hex[:6]}"
        r = c.get("/health", headers={"X-Request-ID": given})
        assert r.headers["x-request-id"] == given
        made = {c.get("/health").headers["x-request-id"] for _ in range(3)}
        assert len(made) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", m) for m in made), made
        # an id that is not plain (spaces, too long) is replaced, never echoed into logs
        for bad in ("two words", "x" * 129):
            got = c.get("/health", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)
        # errors carry it too
        r = c.get("/v1/leaderboards/no-such-board/rankings", headers={"X-Request-ID": given + "b"})
        assert r.status_code == 404 and r.headers["x-request-id"] == given + "b"

    def logged() -> list[dict[str, Any]]:
        return [rec for rec in gw.log_records() if rec.get("request_id") in (given, given + "b")]

    deadline = time.monotonic() + 5
    while len(logged()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = logged()
    assert [(x["path"], x["status"]) for x in lines] == [
        ("/health", 200),
        ("/v1/leaderboards/no-such-board/rankings", 404),
    ], lines
    for line in lines:
        assert line["logger"] == "processors.gateway.access" and line["level"] == "INFO"
        assert {"time", "message", "method", "duration_ms", "client"} <= set(line)


# ------------------------------------------------------------------------------ client limit


def test_write_calls_are_limited_per_client_address(gw: Running) -> None:
    body = {"participant_id": "ann", "score": 1}
    with httpx.Client(base_url=gw.url, timeout=10) as c:

        def post(address: str) -> httpx.Response:
            # uvicorn trusts X-Forwarded-For from 127.0.0.1: one address per simulated client
            return c.post(
                "/v1/leaderboards/any/scores", json=body, headers={**W, "X-Forwarded-For": address}
            )

        statuses = [post("10.0.0.1").status_code for _ in range(CLIENT_BURST)]
        assert 429 not in statuses, statuses
        r = post("10.0.0.1")
        assert r.status_code == 429, r.text
        assert r.json()["error"] == {
            "code": "too_many_requests",
            "message": "too many write calls from 10.0.0.1: at most 0.5/s per client address",
        }
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-request-id"]
        # another address has its own budget, and reads are never limited per client
        assert post("10.0.0.2").status_code != 429
        for _ in range(10):
            read = c.get("/v1/leaderboards", headers={"X-Forwarded-For": "10.0.0.1"})
            assert read.status_code == 200


# ------------------------------------------------------------------------------ shutdown


async def test_sigterm_closes_subscriptions_with_1001_and_exits_soon(
    pipeline_ops: Pipeline,
) -> None:
    running = launch(pipeline_ops, "--log-level", "info", LEADERBOARD_LOG_FORMAT="text")
    try:
        board = f"sd-{uuid.uuid4().hex[:6]}"
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
            r = await c.post("/v1/leaderboards", json={"leaderboard_id": board}, headers=A)
            assert r.status_code == 201, r.text
        ws_url = running.url.replace("http://", "ws://")
        subs = [await subscribe(ws_url, board, mode="top", n=10) for _ in range(3)]
        assert all(first["type"] == "snapshot" for _, first in subs), subs
        started = time.monotonic()
        os.killpg(running.proc.pid, signal.SIGTERM)
        for ws, _ in subs:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        code = await asyncio.to_thread(running.proc.wait, 10)
        took = time.monotonic() - started
        # uvicorn re-raises the signal once it has shut down; the gateway's handler then leaves
        # through Python's exit (withdrawing its scrape target): status 128 + SIGTERM
        assert code == 128 + signal.SIGTERM and took < 8, (code, took)
        assert "Application shutdown complete" in running.log.read_text()
    finally:
        stop(running.proc)
