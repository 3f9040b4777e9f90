"""The gateway's Prometheus registry: HTTP requests, WebSocket pushes, the rank-change feed."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from processors.gateway.feed import RankFeed

__all__ = ["CONTENT_TYPE_LATEST", "FeedLookup", "GatewayMetrics"]

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
        self.submitted = Counter("gateway_scores_submitted", "Scores published", registry=registry)

    def on_push(self, kind: str) -> None:
        """Count one WebSocket message of type ``kind`` (the feed's push callback)."""
        self.pushes.labels(kind).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    async def measure(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """HTTP middleware: count each request and time it, by method, route and status."""
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            self.latency.labels(request.method, route).observe(time.perf_counter() - start)
            self.requests.labels(request.method, route, str(status)).inc()
