"""The gateway process's garbage collector: start-up objects frozen, every pause measured.

CPython's full collection walks every tracked object of the process and stops the event loop
(and every request in flight) while it runs. A started gateway holds about 110,000 of them
(FastAPI, pydantic, confluent-kafka, fastavro, the app's routes and models), none of which will
ever be garbage; under load such a full collection stopped the gateway for 290-330 ms.
``freeze`` moves the start-up heap into the permanent generation once the services are open
(``gc.freeze``), so a full collection walks only what the gateway made since; ``GcPauses``
times every collection, so the tail's cause stays visible (``gateway_gc_pause_seconds``).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from processors.heap import freeze

__all__ = ["GcPauses", "freeze"]


class GcPauses:
    """Times each garbage collection of the process into a histogram, by generation."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "gateway_gc_pause_seconds",
            "Garbage collections of the gateway process (each stops the event loop), by generation",
            ["generation"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
        )
        Gauge(
            "gateway_gc_frozen_objects",
            "Objects in the permanent generation (the start-up heap, frozen: never scanned)",
            registry=registry,
        ).set_function(gc.get_freeze_count)
        self._by_gen = [self.histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0
        self.installed = False

    def install(self) -> None:
        """Start timing (once; ``remove`` stops)."""
        if not self.installed:
            gc.callbacks.append(self._on_gc)
            self.installed = True

    def remove(self) -> None:
        """Stop timing."""
        if self.installed:
            gc.callbacks.remove(self._on_gc)
            self.installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_gen[info["generation"]].observe(time.perf_counter() - self._started)
