"""One-off measurement: 1,000,000-participant sharded boards on the local Redis Cluster.

Loads the same random stream into an unsharded board, a hash-sharded board and a
score-range-sharded board (through the real apply scripts), checks rank lookups on the sharded
boards against the unsharded copy, and times rank lookups, scatter-gather top N and the cached
top K. Prints a Markdown table (pasted into docs/scaling.md). Not a test: run it by hand::

    .venv/bin/leaderboard stack up --redis-cluster
    LEADERBOARD_REDIS_CLUSTER=1 .venv/bin/python scripts/measure_sharded.py --participants 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from processors.bootstrap import make_client
from processors.workers.topk import TopKCache
from projections.keys import BoardKeys
from projections.sharded import ShardedStore
from projections.store import RankingStore, SourceRecord
from projections.topk import read_topk
from streams.events import LeaderboardConfigured, MatchResultSubmitted, ScoreEntry, SortOrder
from streams.settings import Settings

BASE = 1_793_491_200_000
SORT = SortOrder.DESC


def stream(board: str, participants: int, per_record: int, seed: int) -> list[SourceRecord]:
    """Every participant submits one score (0..999,999, many ties), ``per_record`` per record."""
    rng = random.Random(seed)
    pids = [f"u{i:07d}" for i in range(participants)]
    rng.shuffle(pids)
    out = []
    for offset, start in enumerate(range(0, participants, per_record)):
        entries = tuple(
            ScoreEntry(p, rng.randrange(1_000_000)) for p in pids[start : start + per_record]
        )
        ev = MatchResultSubmitted(f"e{offset}", f"m{offset}", board, BASE + offset, entries)
        out.append(SourceRecord(0, offset, ev))
    return out


async def load(store: Any, cfg: LeaderboardConfigured, records: list[SourceRecord]) -> float:
    """Apply records in chunks as the projector would; returns entries per second."""
    started = time.perf_counter()
    entries = 0
    for i in range(0, len(records), 20):
        chunk = records[i : i + 20]
        outs = await store.apply([(cfg, chunk)])
        await store.acknowledge(outs)
        entries += sum(len(r.event.entries) for r in chunk)
    return entries / (time.perf_counter() - started)


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Latencies (ms) of ``n`` sequential calls."""
    out = []
    for i in range(n):
        t = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def fmt(lat: list[float]) -> str:
    """p50 / p99 in ms."""
    q = statistics.quantiles(lat, n=100)
    return f"{statistics.median(lat):.2f} / {q[98]:.2f}"


async def main(args: argparse.Namespace) -> None:
    """Load, verify, measure, print, clean up."""
    settings = Settings()
    client = make_client(settings)
    prefix = f"m{uuid.uuid4().hex[:6]}"
    plain = RankingStore(client, prefix=prefix)
    store = ShardedStore(plain)
    n = args.participants
    q = ",".join(str(1_000_000 * i // args.shards) for i in range(1, args.shards))
    boards = {
        "unsharded": LeaderboardConfigured("plain", sort_order=SORT),
        f"hash:{args.shards}": LeaderboardConfigured(
            "hashed", sort_order=SORT, metadata={"shards": f"hash:{args.shards}"}
        ),
        f"range:{q}": LeaderboardConfigured(
            "ranged", sort_order=SORT, metadata={"shards": f"range:{q}"}
        ),
    }
    rows: list[str] = []
    try:
        for name, cfg in boards.items():
            recs = stream(cfg.leaderboard_id, n, args.per_record, seed=7)
            rate = await load(store, cfg, recs)
            rows.append(f"| load {name} | {rate:,.0f} entries/s |")
            print(f"loaded {name}: {rate:,.0f} entries/s", flush=True)
        board_of = {name: cfg.leaderboard_id for name, cfg in boards.items()}
        rng = random.Random(1)
        sample = [f"u{rng.randrange(n):07d}" for _ in range(args.lookups)]
        truth = await plain.ranks("plain", "all", SORT, sample)
        for name, board in board_of.items():
            got = await store.ranks(board, "all", SORT, sample)
            assert got == truth, f"{name}: ranks differ from the unsharded copy"
            lat = await timed(
                args.lookups,
                lambda i, b=board: store.rank(b, "all", SORT, sample[i]),  # type: ignore[misc]
            )
            rows.append(f"| rank lookup {name} (p50 / p99 ms, exact) | {fmt(lat)} |")
        for name, board in board_of.items():
            lat = await timed(
                200,
                lambda _, b=board: store.top(b, "all", SORT, limit=100),  # type: ignore[misc]
            )
            rows.append(f"| top 100 {name} direct (p50 / p99 ms) | {fmt(lat)} |")
        cache = TopKCache(store, k=1000)
        for name, cfg in boards.items():
            if name == "unsharded":
                continue
            board = cfg.leaderboard_id
            t = time.perf_counter()
            built = await cache.rebuild(cfg, "all")
            build_ms = (time.perf_counter() - t) * 1000
            assert built is not None
            assert built.entries == await plain.top("plain", "all", SORT, limit=1000)
            lat = await timed(
                200,
                lambda _, b=board: read_topk(store, b, "all", limit=100),  # type: ignore[misc]
            )
            rows.append(f"| top-1000 cache rebuild {name} (ms) | {build_ms:.1f} |")
            rows.append(f"| top 100 {name} from cache (p50 / p99 ms) | {fmt(lat)} |")
        if hasattr(client, "get_node_from_key"):
            for cfg in boards.values():
                layout = await store.layout(cfg.leaderboard_id)
                ids = layout.shard_ids(cfg.leaderboard_id) if layout else [cfg.leaderboard_id]
                nodes = [client.get_node_from_key(BoardKeys(s, prefix).state).port for s in ids]
                rows.append(f"| nodes of {cfg.leaderboard_id} | {nodes} |")
    finally:
        for cfg in boards.values():
            await store.clear(cfg.leaderboard_id)
        await client.aclose()
    kind = "Redis Cluster (3 masters)" if settings.redis_cluster else "single Redis node"
    print(f"\n{n:,} participants, {kind}, {args.lookups} sampled lookups\n")
    print("| measurement | value |\n|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--per-record", type=int, default=100)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--lookups", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
