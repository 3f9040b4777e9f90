"""The projector worker: a Faust agent that applies the score topic to Redis in batches."""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from redis.exceptions import RedisError

from processors import heap, logs, telemetry
from processors.bootstrap import cluster_url, faust_app, get_codec, make_client
from processors.kafka.configview import ConfigView
from processors.kafka.producer import LeaderboardProducer
from processors.workers import metrics
from processors.workers.batching import RawRecord, consume_batches
from processors.workers.epoch import EpochGuard, epoch_key
from processors.workers.failover import FailoverFollower
from processors.workers.lean import RawSchema, use_lean_consumer
from processors.workers.projector import BatchStats, Projector, Throughput
from projections.store import ProjectionLost, RankingStore
from streams.errors import ServiceUnavailable
from streams.events import CLOCK_KEY, clock_mark
from streams.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """The projector's Faust app: one agent on the score topic, concurrency 1.

    Concurrency stays at 1 (faust-streaming #606 commits offsets past in-flight events
    otherwise); parallelism comes from partitions and more workers in the group.
    """
    app = faust_app(
        settings,
        settings.app_id,
        topic_partitions=settings.partitions,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.batch_size,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
    )
    use_lean_consumer(app)  # deliveries without a task each (lean.py)
    scores = app.topic(
        settings.topic(settings.scores_topic),
        schema=RawSchema(),  # the bytes as read, without Faust's serializer registry
        partitions=settings.partitions,
    )
    state: dict[str, Any] = {}
    lag = metrics.LagMeter(app, "projector", [scores.get_topic_name()])
    lag.every(5.0)

    async def projector() -> Projector:
        if "projector" not in state:
            configs = ConfigView(settings)
            configs.start()
            # no silent retry on another connection: a failover must surface (see failover.py)
            client = make_client(settings, follow_quietly=False)
            store = RankingStore(
                client,
                overtaken_limit=settings.overtaken_limit,
                grace_ms=settings.period_grace_ms,
                dedup=(settings.dedup_window_ms, settings.dedup_max_ids),
                # the check runs inside the apply script: atomic on a single node (on a
                # cluster the marker lives in another slot, so only the per-batch check runs)
                guard_key=None if cluster_url(settings) else epoch_key(settings),
            )
            state["producer"] = LeaderboardProducer(settings)
            state["projector"] = Projector(
                settings, store, configs, get_codec(settings), state["producer"]
            )
            state["throughput"] = Throughput()
            state["guard"] = EpochGuard(settings, client)
            # on a cluster the applied mark would sit in another slot than the boards it covers
            if not cluster_url(settings):
                state["follower"] = FailoverFollower(settings, client, state["projector"])
            log.info("projector ready: scores from %s", scores.get_topic_name())
            log.info("start-up heap frozen: %d objects", heap.freeze())
        p: Projector = state["projector"]
        return p

    @app.agent(scores, concurrency=1)
    async def project(stream: Any) -> None:
        proj = await projector()
        meter: Throughput = state["throughput"]
        guard: EpochGuard = state["guard"]
        follower: FailoverFollower | None = state.get("follower")
        guarded = getattr(proj.store, "guard_key", None) is not None

        async def handle(batch: Sequence[RawRecord], defer: bool = False) -> BatchStats:
            while True:
                try:
                    if not (defer and guarded):
                        # a round trip that would queue behind the apply call in flight; on a
                        # single node the apply script checks the marker itself, atomically
                        # (ProjectionLost: the batch is handled again, with this wait)
                        await guard.ensure()
                    mark = None
                    if follower is not None:
                        await follower.before(batch)
                        # the applied mark follows the batch's apply (failover.py): with
                        # ``defer`` its last call may still run, so ``finish`` writes it
                        mark = functools.partial(follower.after, batch)
                    stats = await proj.process(batch, defer=defer, applied=mark)
                    if mark is not None and not defer:
                        await mark()
                except ProjectionLost:
                    if defer:
                        raise  # handled again whole by ``handle``
                    continue  # Redis lost its data under us: wait for the rebuild, then retry
                except RedisError:
                    if follower is not None:
                        follower.lost()  # maybe a failover: check what the new primary holds
                    raise
                if stats.finish is not None:
                    stats.finish = watched(stats.finish)
                return stats

        def watched(finish: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            """``finish`` telling the failover follower of a failed Redis call."""

            async def run() -> None:
                try:
                    await finish()
                except RedisError:
                    if follower is not None:
                        follower.lost()
                    raise

            return run

        def checked_first(
            step: Callable[[Sequence[RawRecord]], Awaitable[BatchStats]],
        ) -> Callable[[Sequence[RawRecord]], Awaitable[BatchStats]]:
            """``step``, unless the failover follower must check a partition of the batch
            first: that check may re-apply records from Kafka (clearing their outbox), which
            must not run beside an apply call still in flight (``Projector._send_chunks``), so
            such a batch is handled in turn, by ``handle`` (before any span or metric)."""

            async def run(batch: Sequence[RawRecord]) -> BatchStats:
                if follower is not None and follower.needs_check(batch):
                    raise ServiceUnavailable("a partition to check after a failover first")
                return await step(batch)

            return run

        def done(stats: BatchStats) -> None:
            metrics.ENTRIES.labels("projector").inc(stats.entries_applied)
            meter.add(stats)

        def measured(
            step: Callable[[Sequence[RawRecord]], Awaitable[BatchStats]],
        ) -> Callable[[Sequence[RawRecord]], Awaitable[BatchStats]]:
            topic = scores.get_topic_name()
            traced = telemetry.traced_batches("projector batch", topic, step)
            return metrics.observed("projector", topic, traced, lag)

        await consume_batches(
            stream,
            settings.batch_size,
            settings.batch_within,
            measured(handle),
            what="projecting a batch",
            poison=proj.dead_letter,
            done=done,
            adaptive=True,  # the hot path: a lone score is applied at once (?wait=true)
            # the next batch is applied while this one's outcome is published and acked
            ahead=checked_first(measured(functools.partial(handle, defer=True))),
        )

    if settings.clock_mark_s > 0:

        @app.timer(interval=settings.clock_mark_s)
        async def mark_clock() -> None:
            """A clock mark on every score partition this worker owns: the broker stamps its
            time, which moves the time-bound boards of the partition (see clock_mark)."""
            producer: LeaderboardProducer | None = state.get("producer")
            topic = scores.get_topic_name()
            owned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
            if producer is None or not owned:
                return
            mark = clock_mark(f"{socket.gethostname()}:{os.getpid()}", int(time.time() * 1000))
            value = get_codec(settings).encode(mark)
            for partition in owned:
                producer.publish_raw(topic, CLOCK_KEY, value, partition=partition)
            producer.poll(0)

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the projector worker in the foreground until interrupted."""
    metrics.serve(settings, "projector")
    telemetry.setup(settings, "leaderboard-projector")
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logs.worker_config(settings, loglevel),
    )
    worker.spinner = None  # the start-up spinner floods logs that are not terminals
    worker.execute_from_commandline()
