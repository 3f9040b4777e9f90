"""The gateway's Prometheus registry (HTTP requests, WebSocket pushes, the rank-change feed) and
the sampler behind the operations page (``/ops``), which adds the workers' metrics to it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processors.gateway.feed import RankFeed
from processors.gateway.heap import GcPauses
from processors.scrape_targets import Target

__all__ = ["CONTENT_TYPE_LATEST", "FeedLookup", "GatewayMetrics", "OpsSampler", "quantile"]

#: The running rank-change feed, or None before the lifespan started it.
FeedLookup = Callable[[], RankFeed | None]


def _from_feed(feed: FeedLookup, read: Callable[[RankFeed], float]) -> Callable[[], float]:
    """A gauge function: ``read(feed)`` while the feed exists, else 0."""

    def value() -> float:
        current = feed()
        return read(current) if current else 0

    return value


class GatewayMetrics:
    """One registry per app with the gateway's counters, histogram and feed gauges."""

    def __init__(self, feed: FeedLookup) -> None:
        registry = self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gateway_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.pushes = Counter(
            "gateway_ws_pushes", "WebSocket messages pushed", ["type"], registry=registry
        )
        for kind in ("snapshot", "delta"):  # listed from the start, at zero
            self.pushes.labels(kind)
        self.closes = Counter(
            "gateway_ws_closed",
            "WebSocket subscriptions ended, by why (routes/live.py)",
            ["reason"],
            registry=registry,
        )
        Gauge(
            "gateway_ws_slow_resyncs",
            "Viewers that read too slowly for their view's deltas and were resynced",
            registry=registry,
        ).set_function(_from_feed(feed, lambda f: f.slow_resyncs))
        Gauge(
            "gateway_ws_subscribers", "Live WebSocket subscribers", registry=registry
        ).set_function(_from_feed(feed, lambda f: f.subscriber_count()))
        Gauge(
            "gateway_rank_feed_lag_records", "Rank-change records not yet read", registry=registry
        ).set_function(_from_feed(feed, lambda f: f.lag))
        Gauge(
            "gateway_rank_feed_delay_seconds",
            "Age of the last rank-change record when read",
            registry=registry,
        ).set_function(_from_feed(feed, lambda f: f.delay_s))
        Gauge(
            "gateway_rank_feed_records", "Rank-change records read since start", registry=registry
        ).set_function(_from_feed(feed, lambda f: f.records))
        Gauge(
            "gateway_rank_feed_records_undecoded",
            "Rank-change records of boards nobody here watched, read without their changes",
            registry=registry,
        ).set_function(_from_feed(feed, lambda f: f.undecoded))
        self.submitted = Counter("gateway_scores_submitted", "Scores published", registry=registry)
        #: a submission's time split: its request until Kafka acknowledged its record
        #: (every submission), then until the feed read its rank change (``?wait=true``)
        stages = Histogram(
            "gateway_submit_stage_seconds",
            "Score submissions: request to Kafka's acknowledgement (published), then to the "
            "rank change read by the gateway's feed (applied, wait=true only)",
            ["stage"],
            registry=registry,
            buckets=(0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 5),
        )
        self.published = stages.labels("published")
        self.applied = stages.labels("applied")
        #: the process's garbage-collection pauses (installed by the lifespan)
        self.gc = GcPauses(registry)
        self._ops: OpsSampler | None = None

    def ops(self, workers: Callable[[], list[Target]]) -> OpsSampler:
        """The ``/ops`` sampler over this registry and the ``workers`` (made on first use)."""
        if self._ops is None:
            self._ops = OpsSampler(self.render, workers)
        return self._ops

    def on_push(self, kind: str, count: int = 1) -> None:
        """Count ``count`` WebSocket messages of type ``kind`` (the feed's push callback)."""
        self.pushes.labels(kind).inc(count)

    def on_close(self, reason: str) -> None:
        """Count one WebSocket subscription ended for ``reason``."""
        self.closes.labels(reason).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class MeasureRequests:
    """ASGI middleware: count each HTTP request and time it, by method, route and status.

    Plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request, on
    the gateway's hottest path.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noting its status as the response starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # the router records the matched route in the (shared) scope
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, route, str(status)).inc()


# --------------------------------------------------------------------------- /ops


def _families(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition as (name, labels, value)."""
    out: list[tuple[str, dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, s.labels, s.value))
    return out


class _Totals:
    """The sums the operations page charts, read from one round of scrapes."""

    def __init__(self, samples: list[tuple[str, dict[str, str], float]]) -> None:
        self.entries = 0.0
        self.records: dict[str, float] = {}
        self.lag: dict[str, float] = {}
        self.dead_letters = 0.0
        self.outbox = 0.0
        self.requests = 0.0
        self.errors = 0.0
        self.batch: dict[float, float] = {}
        self.http: dict[float, float] = {}
        for name, labels, value in samples:
            role = labels.get("role", "")
            if name == "leaderboard_worker_entries_applied_total":
                self.entries += value
            elif name == "leaderboard_worker_records_total":
                self.records[role] = self.records.get(role, 0.0) + value
            elif name == "leaderboard_worker_consumer_lag":
                self.lag[role] = self.lag.get(role, 0.0) + value
            elif name == "leaderboard_worker_dead_letters_total":
                self.dead_letters += value
            elif name == "leaderboard_worker_outbox_entries":
                self.outbox += value
            elif name == "gateway_http_requests_total":
                self.requests += value
                if labels.get("status", "").startswith("5"):
                    self.errors += value
            elif name == "leaderboard_worker_batch_seconds_bucket" and role == "projector":
                le = float(labels["le"])
                self.batch[le] = self.batch.get(le, 0.0) + value
            elif name == "gateway_http_request_seconds_bucket":
                le = float(labels["le"])
                self.http[le] = self.http.get(le, 0.0) + value


def quantile(q: float, now: dict[float, float], before: dict[float, float]) -> float | None:
    """The ``q`` quantile of the observations between two cumulative bucket snapshots.

    Linear inside the bucket, as PromQL's ``histogram_quantile``; None without observations.
    """
    bounds = sorted(now)
    counts = [max(0.0, now[b] - before.get(b, 0.0)) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


class OpsSampler:
    """Samples the gateway's own metrics and every announced worker's for the ``/ops`` page.

    At most one sample per ``min_interval`` seconds, whoever asks; the last ``keep`` samples
    are the charts' history. Rates and latency quantiles come from the difference between
    two consecutive samples (a restarted worker's counters restart at zero: never negative).
    """

    def __init__(
        self,
        own: Callable[[], bytes],
        workers: Callable[[], list[Target]],
        *,
        keep: int = 300,
        min_interval: float = 1.0,
    ) -> None:
        self.own = own
        self.workers = workers
        self.min_interval = min_interval
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)
        self.last: tuple[float, _Totals] | None = None
        self.targets: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()

    async def _scrape(self, client: httpx.AsyncClient, target: Target) -> str | None:
        try:
            r = await client.get(target.url)
            r.raise_for_status()
        except httpx.HTTPError:
            return None
        return r.text

    async def sample(self) -> dict[str, Any]:
        """Take a sample if the last one is old enough; the page's JSON."""
        async with self.lock:
            now = time.time()
            if self.last is None or now - self.last[0] >= self.min_interval:
                await self._take(now)
            return {"at": now, "targets": self.targets, "points": list(self.points)}

    async def _take(self, now: float) -> None:
        workers = [t for t in self.workers() if t.role != "gateway"]
        async with httpx.AsyncClient(timeout=1.0) as client:
            texts = await asyncio.gather(*(self._scrape(client, t) for t in workers))
        samples = _families(self.own().decode())
        self.targets = [{"role": "gateway (this one)", "url": "/metrics", "up": True}]
        for target, text in zip(workers, texts, strict=True):
            self.targets.append({"role": target.role, "url": target.url, "up": text is not None})
            if text is not None:
                samples += _families(text)
        totals = _Totals(samples)
        if self.last is not None:
            self.points.append(self._point(now, totals, *self.last))
        self.last = (now, totals)

    @staticmethod
    def _point(now: float, cur: _Totals, then: float, old: _Totals) -> dict[str, Any]:
        dt = max(now - then, 1e-3)

        def rate(a: float, b: float) -> float:
            return round(max(0.0, a - b) / dt, 3)

        batch = quantile(0.95, cur.batch, old.batch)
        http = quantile(0.95, cur.http, old.http)
        return {
            "t": round(now, 3),
            "entries_per_s": rate(cur.entries, old.entries),
            "records_per_s": {r: rate(v, old.records.get(r, 0.0)) for r, v in cur.records.items()},
            "lag": dict(cur.lag),
            "dead_letters_per_s": rate(cur.dead_letters, old.dead_letters),
            "outbox": cur.outbox,
            "http_per_s": rate(cur.requests, old.requests),
            "http_5xx_per_s": rate(cur.errors, old.errors),
            "batch_p95_ms": None if batch is None else round(batch * 1000, 3),
            "http_p95_ms": None if http is None else round(http * 1000, 3),
        }
