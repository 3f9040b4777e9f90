"""The gateway's state (options, guards, metrics, the lifespan's clients) and its dependencies.

``create_app`` stores one :class:`GatewayState` on ``app.state.gateway``; routes receive it, or
one of the clients it holds, through the typed dependencies below (``StateDep``, ``ViewDep``…).
A client asked for before the lifespan opened it answers 503 ``unavailable``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, cast

import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from fastapi import Depends
from starlette.requests import HTTPConnection

from processors.bootstrap import RedisClient, kafka_admin, make_client
from processors.gateway import heap
from processors.gateway.cache import PageCache, PageStamps
from processors.gateway.coalescer import SubmitCoalescer
from processors.gateway.errors import ApiError
from processors.gateway.feed import RankFeed
from processors.gateway.guards import KeyGuard, RateLimiter
from processors.gateway.metrics import GatewayMetrics
from processors.kafka.configview import ConfigView
from processors.kafka.producer import LeaderboardProducer
from projections.profiles import profiles_key
from streams.errors import LeaderboardError
from streams.events import LeaderboardConfigured
from streams.settings import Settings

__all__ = [
    "AdminDep",
    "ClientDep",
    "CoalescerDep",
    "FeedDep",
    "GatewayOptions",
    "GatewayState",
    "HistoryReader",
    "ProducerDep",
    "Services",
    "StateDep",
    "ViewDep",
    "get_admin",
    "get_client",
    "get_coalescer",
    "get_feed",
    "get_producer",
    "get_state",
    "get_view",
]

log = logging.getLogger(__name__)

#: ``history(board, period, limit, offset)`` → final standings of a closed period, or None
#: if that period (or, with ``period=None``, any period of the board) is not closed.
HistoryReader = Callable[[str, str | None, int, int], Awaitable[dict[str, Any] | None]]
#: ``placements(participant, limit)`` → where the participant finished in closed periods,
#: newest first.
PlacementsReader = Callable[[str, int], Awaitable[list[dict[str, Any]]]]


@dataclasses.dataclass(frozen=True)
class GatewayOptions:
    """The tunables of one gateway (see ``create_app``)."""

    submit_rate: float = 5.0
    submit_burst: int = 10
    key_rate: float = 500.0
    key_burst: int = 1000
    wait_timeout_s: float = 5.0
    max_body: int = 64 * 1024
    cors_origins: Sequence[str] = ()
    push_window_s: float = 0.05
    ping_interval_s: float = 15.0
    subscriber_queue: int = 256
    #: most submissions coalesced into one record per board (1 = one record per submission)
    coalesce_max: int = 64
    #: longest a submission waits behind its board's record in flight (gateway/coalescer.py)
    coalesce_window_s: float = 0.002
    #: records of one board in flight before submissions wait to be coalesced
    coalesce_in_flight: int = 1
    #: freeze the start-up heap once the services are open (gateway/heap.py): for a server
    #: process, not for an app made inside a test run
    freeze_heap: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class Services:
    """The clients the lifespan opens: Redis, the config view, the producer, admin, the feed."""

    client: RedisClient
    view: ConfigView
    producer: LeaderboardProducer
    admin: AdminClient
    feed: RankFeed
    coalescer: SubmitCoalescer
    #: the cached pages' period and stamp reads, one round trip per event-loop turn
    stamps: PageStamps

    @property
    def redis(self) -> aioredis.Redis:
        """The Redis client as the readers type it (a RedisCluster serves the same calls)."""
        return cast("aioredis.Redis", self.client)

    @classmethod
    async def open(
        cls, settings: Settings, options: GatewayOptions, metrics: GatewayMetrics
    ) -> Services:
        """Open Redis, catch the config view up, then start the producer and rank feed."""
        loop = asyncio.get_running_loop()
        client = make_client(settings, wait_for_connection_s=10.0)
        view = ConfigView(settings)
        await loop.run_in_executor(None, view.start)
        await view.sync(10)
        # linger 0, not the SDK's 5: the coalescer (gateway/coalescer.py) already packs the
        # submissions of one turn into one record and holds the next ones while a record of
        # the board is in flight, so a lingering producer would only add its delay to every
        # acknowledgement (and to every ?wait=true answer).
        producer = LeaderboardProducer(settings, config={"linger.ms": 0})
        producer.start_poller()  # settles each submission's delivery future (routes/scores.py)
        admin = kafka_admin(settings)
        feed = RankFeed(
            settings,
            cast("aioredis.Redis", client),
            view.get,
            window_s=options.push_window_s,
            queue_size=options.subscriber_queue,
            on_push=metrics.on_push,
        )
        feed.start()
        coalescer = SubmitCoalescer(
            producer,
            max_submissions=options.coalesce_max,
            window_s=options.coalesce_window_s,
            max_in_flight=options.coalesce_in_flight,
        )
        stamps = PageStamps(client, profiles_key(settings.topic_prefix))
        return cls(client, view, producer, admin, feed, coalescer, stamps)

    async def close(self) -> None:
        """Stop the feed and the view, flush and close the producer, close Redis."""
        self.feed.stop()
        self.view.stop()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.producer.close, 5.0)
        except LeaderboardError as exc:
            log.warning("producer close: %s", exc)
        await self.client.aclose()


@dataclasses.dataclass(eq=False)
class GatewayState:
    """Everything the routes share: settings, options, guards, metrics and the services."""

    settings: Settings
    options: GatewayOptions = GatewayOptions()
    history: HistoryReader | None = None
    placements: PlacementsReader | None = None
    keys: KeyGuard = dataclasses.field(init=False)
    submit_limiter: RateLimiter = dataclasses.field(init=False)
    metrics: GatewayMetrics = dataclasses.field(init=False)
    #: rendered pages per board version (gateway/cache.py)
    pages: PageCache = dataclasses.field(default_factory=PageCache)
    services: Services | None = None
    last_sync: float = 0.0

    def __post_init__(self) -> None:
        self.keys = KeyGuard(self.settings, self.options.key_rate, self.options.key_burst)
        self.submit_limiter = RateLimiter(self.options.submit_rate, self.options.submit_burst)
        self.metrics = GatewayMetrics(lambda: self.feed)

    @property
    def feed(self) -> RankFeed | None:
        """The rank-change feed while the gateway runs, else None."""
        return self.services.feed if self.services else None

    def require(self) -> Services:
        """The services, or 503 ``unavailable`` while the gateway is starting."""
        if self.services is None:
            raise ApiError(503, "gateway is starting", "unavailable")
        return self.services

    async def start(self) -> None:
        """Open the services (the lifespan's startup)."""
        self.metrics.gc.install()
        self.services = await Services.open(self.settings, self.options, self.metrics)
        if self.options.freeze_heap:
            log.info("start-up heap frozen: %d objects", heap.freeze())
        log.info("gateway ready: %d board(s) known", len(self.services.view.snapshot()))

    async def stop(self) -> None:
        """Close the services (the lifespan's shutdown)."""
        self.metrics.gc.remove()
        if self.services is not None:
            await self.services.close()

    async def board_cfg(self, board: str) -> LeaderboardConfigured:
        """A board's configuration, or 404; an unknown board triggers a (rate-limited) sync."""
        view = self.require().view
        cfg = view.get(board)
        if cfg is None and time.monotonic() - self.last_sync > 1.0:
            self.last_sync = time.monotonic()  # one catch-up a second at most, whatever asks
            await view.sync(2)
            cfg = view.get(board)
        if cfg is None:
            raise ApiError(404, f"unknown leaderboard {board!r}")
        return cfg


async def get_state(conn: HTTPConnection) -> GatewayState:
    """The app's :class:`GatewayState` (HTTP and WebSocket routes).

    These dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency
    in a worker thread, a hop that took a fifth of a submission's time in the profile.
    """
    return cast(GatewayState, conn.app.state.gateway)


StateDep = Annotated[GatewayState, Depends(get_state)]


async def get_view(state: StateDep) -> ConfigView:
    """The board configuration view (503 while starting)."""
    return state.require().view


async def get_client(state: StateDep) -> aioredis.Redis:
    """The Redis client (503 while starting)."""
    return state.require().redis


async def get_producer(state: StateDep) -> LeaderboardProducer:
    """The Kafka producer of scores and configurations (503 while starting)."""
    return state.require().producer


async def get_coalescer(state: StateDep) -> SubmitCoalescer:
    """The per-board coalescer of score submissions (503 while starting)."""
    return state.require().coalescer


async def get_feed(state: StateDep) -> RankFeed:
    """The rank-change feed (503 while starting)."""
    return state.require().feed


async def get_admin(state: StateDep) -> AdminClient:
    """The Kafka admin client (503 while starting)."""
    return state.require().admin


ViewDep = Annotated[ConfigView, Depends(get_view)]
ClientDep = Annotated[aioredis.Redis, Depends(get_client)]
ProducerDep = Annotated[LeaderboardProducer, Depends(get_producer)]
FeedDep = Annotated[RankFeed, Depends(get_feed)]
CoalescerDep = Annotated[SubmitCoalescer, Depends(get_coalescer)]
AdminDep = Annotated[AdminClient, Depends(get_admin)]
