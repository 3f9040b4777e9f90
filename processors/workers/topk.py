"""The async global top-K cache of sharded boards: merged top K in one key, version and age.

A scatter-gather top N costs one read per shard and a merge; a viewer-facing top 100 must not
pay that per request. This processor keeps ``lb:{board}:topk:<period>`` (one hash: ``meta``
with version and computed_at, and the rows in JSON pages of 100) for every sharded board, rebuilt

- when a rank change touches the top K (old or new rank <= K) or a period ends, at most once
  per ``min_interval`` per board (changes are coalesced), and
- at least every ``max_interval`` whatever happens (bounded staleness, also after a restart).

It runs as its own Faust app (consumer group ``<app_id>-topk``) on the rank-changes topic:
the projector stays as fast as before, the cache scales and fails on its own, and the
rank-changes records already carry the ranks it needs to decide whether the top K moved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from processors import logs
from processors.workers import metrics
from projections.sharded import ShardedStore, layout_of
from projections.topk import DEFAULT_K, TopK
from streams import rules
from streams.events import LeaderboardConfigured, RankChanged
from streams.settings import Settings

log = logging.getLogger(__name__)


class TopKCache:
    """Rebuilds the cached top K of sharded boards on top-K changes and on a timer."""

    def __init__(
        self,
        store: ShardedStore,
        *,
        k: int = DEFAULT_K,
        min_interval: float = 0.5,
        max_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.k = k
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.dirty: set[tuple[str, str]] = set()
        self.built: dict[tuple[str, str], float] = {}

    async def rebuild(
        self, cfg: LeaderboardConfigured, period: str, *, now_ms: int | None = None
    ) -> TopK | None:
        """Merge the top K by scatter-gather and store it; None for a board that is not sharded.

        The version is read before the rows, so the rows include at least that version.
        """
        board = cfg.leaderboard_id
        if layout_of(cfg) is None:
            return None
        version = await self.store.version(board)
        rows = await self.store.top(board, period, cfg.sort_order, limit=self.k)
        stamp = now_ms if now_ms is not None else int(time.time() * 1000)
        top = TopK(period, version, stamp, rows)
        key = self.store.topk_key(board, period)
        # one HSET replaces every field at once; stale pages past ``count`` are never read
        await self.store.client.hset(key, mapping=top.to_fields())  # type: ignore[arg-type]
        self.built[(board, period)] = time.monotonic()
        self.dirty.discard((board, period))
        return top

    def note(self, record: RankChanged, cfg: LeaderboardConfigured | None) -> None:
        """Mark a board's period dirty when a change enters, leaves or moves inside the top K."""
        if layout_of(cfg) is None:
            return
        for c in record.changes:
            if c.new_rank <= self.k or (c.old_rank is not None and c.old_rank <= self.k):
                self.dirty.add((record.leaderboard_id, c.period))
        for period in record.periods_ended:
            self.dirty.add((record.leaderboard_id, period))

    def due(self, boards: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Which (board, period) to rebuild now: dirty past min_interval, or older than max."""
        now = time.monotonic()
        out = []
        for key in boards:
            age = now - self.built.get(key, 0.0)
            if (key in self.dirty and age >= self.min_interval) or age >= self.max_interval:
                out.append(key)
        return out

    async def tick(self, configs: Callable[[], dict[str, LeaderboardConfigured]]) -> int:
        """Rebuild what is due among the sharded boards' current periods; returns how many."""
        snapshot = configs()
        boards = set(self.dirty)
        for board, conf in snapshot.items():
            if layout_of(conf) is not None:
                periods = await self.store.periods(board)
                if periods:
                    boards.add((board, _latest(conf, periods)))
        n = 0
        for board, period in self.due(boards):
            cfg = snapshot.get(board)
            if cfg is not None:
                await self.rebuild(cfg, period)
                n += 1
        return n


def _latest(cfg: LeaderboardConfigured, periods: list[str]) -> str:
    """The newest period key (keys of one reset kind sort chronologically)."""
    return rules.ALL_TIME if rules.ALL_TIME in periods else max(periods)


def create_app(settings: Settings) -> Any:
    """The top-K Faust app: an agent on rank-changes plus a timer (``min_interval`` tick)."""
    from processors.bootstrap import faust_app, get_codec, make_client
    from processors.kafka.configview import ConfigView
    from projections.store import RankingStore

    app = faust_app(
        settings,
        f"{settings.app_id}-topk",
        consumer_auto_offset_reset="latest",
    )
    topic = app.topic(settings.topic(settings.rank_changes_topic), value_serializer="raw")
    codec = get_codec(settings)
    configs = ConfigView(settings)
    cache = TopKCache(ShardedStore(RankingStore(make_client(settings))))

    @app.task
    async def start() -> None:
        configs.start()
        await configs.sync(10.0)

    lag = metrics.LagMeter(app, "topk", [topic.get_topic_name()])
    seen = [0]  # records since the last tick: counted into Prometheus once per tick

    @app.agent(topic, concurrency=1)
    async def changes(stream: Any) -> None:
        async for value in stream:
            seen[0] += 1
            if value is None:
                continue
            record = codec.decode_as(value, RankChanged)
            cache.note(record, configs.get(record.leaderboard_id))

    @app.timer(cache.min_interval)
    async def rebuild() -> None:
        timer = metrics.Timer("topk")
        metrics.RECORDS.labels("topk").inc(seen[0])
        seen[0] = 0
        lag.refresh()
        try:
            n = await cache.tick(configs.snapshot)
        except Exception:  # keep the timer alive; the next tick retries
            log.exception("top-K rebuild failed")
            return
        metrics.TOPK_REBUILDS.labels("topk").inc(n)
        timer.done()

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the top-K cache worker in the foreground until interrupted."""
    import faust

    metrics.serve(settings, "topk")
    worker = faust.Worker(
        create_app(settings),
        loglevel=loglevel,
        quiet=True,
        logging_config=logs.worker_config(settings, loglevel),
    )
    worker.spinner = None
    worker.execute_from_commandline()


async def rebuild_all(cache: TopKCache, cfgs: Iterable[LeaderboardConfigured]) -> int:
    """Rebuild every sharded board's latest period once (operators, tests, benchmarks)."""
    n = 0
    for cfg in cfgs:
        if layout_of(cfg) is None:
            continue
        periods = await cache.store.periods(cfg.leaderboard_id)
        if periods:
            await cache.rebuild(cfg, _latest(cfg, periods))
            n += 1
    await asyncio.sleep(0)
    return n
