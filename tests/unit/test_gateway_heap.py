"""The gateway's garbage-collection pause histogram (processors/gateway/heap.py)."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from processors.gateway.heap import GcPauses, freeze


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


def test_freeze_moves_the_heap_out_of_reach() -> None:
    registry = CollectorRegistry()
    GcPauses(registry)
    kept = [[i] for i in range(1000)]  # tracked objects alive now
    try:
        frozen = freeze()
        assert frozen == gc.get_freeze_count() >= len(kept)
        assert registry.get_sample_value("gateway_gc_frozen_objects") == frozen
        scanned = {id(o) for o in gc.get_objects()}  # generations 0-2, not the permanent one
        assert not any(id(x) in scanned for x in kept)
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
