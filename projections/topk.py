"""Reading the cached global top K of sharded boards (written by processors/workers/topk.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from projections.sharded import ShardedStore
from projections.store import Entry

DEFAULT_K = 1000


#: Rows per field of the cache hash: a top-100 read parses one page, not all K rows.
PAGE = 100


@dataclass(frozen=True, slots=True)
class TopK:
    """A cached global top K: rows, the board version they include, when they were merged."""

    period: str
    version: int
    computed_at: int
    entries: list[Entry]

    def to_fields(self) -> dict[str, str]:
        """Hash fields: ``meta`` (period, version, computed_at, count) and pages ``p0``, ``p1``…"""
        meta = {
            "period": self.period,
            "version": self.version,
            "computed_at": self.computed_at,
            "count": len(self.entries),
        }
        fields = {"meta": json.dumps(meta, separators=(",", ":"))}
        for i in range(0, len(self.entries), PAGE):
            rows = [[e.rank, e.participant_id, e.score] for e in self.entries[i : i + PAGE]]
            fields[f"p{i // PAGE}"] = json.dumps(rows, separators=(",", ":"))
        return fields


async def read_topk(
    store: ShardedStore, board: str, period: str, limit: int = DEFAULT_K, offset: int = 0
) -> TopK | None:
    """Rows ``offset+1 .. offset+limit`` of the cached top K in one HMGET; None if not cached.

    Rows past the cached K are not there: serve such pages from ``ShardedStore.top``.
    """
    first, last = offset // PAGE, max(offset, offset + limit - 1) // PAGE
    names = ["meta", *[f"p{i}" for i in range(first, last + 1)]]
    raw = await store.client.hmget(store.topk_key(board, period), names)
    if raw[0] is None:
        return None
    meta = json.loads(raw[0])
    rows = [
        Entry(int(r), str(p), int(sc)) for page in raw[1:] if page for r, p, sc in json.loads(page)
    ]
    skip = offset - first * PAGE
    rows = rows[skip : skip + limit][: max(0, int(meta["count"]) - offset)]
    return TopK(str(meta["period"]), int(meta["version"]), int(meta["computed_at"]), rows)
