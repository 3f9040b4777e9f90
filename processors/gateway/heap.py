"""The gateway process's garbage collections, timed (``gateway_gc_pause_seconds``).

A full collection walks every tracked object of the process and stops the event loop (and
every request in flight) while it runs; the histogram shows how often and how long.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["GcPauses"]


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
