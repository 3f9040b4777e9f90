"""The gateway's garbage-collection pause histogram (processors/gateway/heap.py)."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from processors.gateway.heap import GcPauses


def _count(registry: CollectorRegistry, generation: str) -> float:
    value = registry.get_sample_value("gateway_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_every_collection_is_timed_while_installed() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    gc.collect()
    assert _count(registry, "2") == 0  # not installed: nothing timed
    pauses.install()
    pauses.install()  # once only
    try:
        gc.collect()
        gc.collect(0)
        assert _count(registry, "2") >= 1
        assert _count(registry, "0") >= 1
        total = registry.get_sample_value("gateway_gc_pause_seconds_sum", {"generation": "2"})
        assert total is not None and total > 0
    finally:
        pauses.remove()
    timed = _count(registry, "2")
    gc.collect()
    assert _count(registry, "2") == timed  # removed: no more
    assert pauses._on_gc not in gc.callbacks
