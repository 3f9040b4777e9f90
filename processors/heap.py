"""A server process's start-up heap, frozen once it is ready.

CPython's full collection walks every tracked object of the process and stops it while it runs.
A started worker or gateway holds ~100,000 objects from imports and set-up (Faust, aiokafka,
fastavro, pydantic, the schemas) that will never be garbage; each full collection under load
walked them all again (290-330 ms measured in the gateway; on the projector's hot drain the
collector was ~20 % of its CPU per entry, benchmarks/notes.md). ``freeze`` moves them into the
permanent generation once, so collections walk only what the process made since.
"""

from __future__ import annotations

import gc

__all__ = ["freeze"]


def freeze() -> int:
    """Collect once, then move every object left into the permanent generation (never
    scanned again); the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
