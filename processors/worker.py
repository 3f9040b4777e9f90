"""The projector worker: a Faust agent that applies the score topic to Redis in batches."""

from __future__ import annotations

import logging
from typing import Any

import faust

from processors.projector import Projector, RawRecord, Throughput
from projections.redis_client import make_client
from projections.store import RankingStore
from streams.codec import get_codec
from streams.configview import ConfigView
from streams.producer import LeaderboardProducer
from streams.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """The projector's Faust app: one agent on the score topic, concurrency 1.

    Concurrency stays at 1 (faust-streaming #606 commits offsets past in-flight events
    otherwise); parallelism comes from partitions and more workers in the group.
    """
    (settings.stack_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        datadir=str(settings.stack_dir / "faust" / "{conf.name}-data"),
        broker=f"kafka://{settings.kafka_bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.batch_size,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
    )
    scores = app.topic(
        settings.topic(settings.scores_topic),
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.partitions,
    )
    state: dict[str, Any] = {}

    async def projector() -> Projector:
        if "projector" not in state:
            configs = ConfigView(settings)
            configs.start()
            client = make_client(settings)
            store = RankingStore(
                client,
                overtaken_limit=settings.overtaken_limit,
                grace_ms=settings.period_grace_ms,
            )
            state["projector"] = Projector(
                settings, store, configs, get_codec(settings), LeaderboardProducer(settings)
            )
            state["throughput"] = Throughput()
            log.info("projector ready: scores from %s", scores.get_topic_name())
        p: Projector = state["projector"]
        return p

    @app.agent(scores, concurrency=1)
    async def project(stream: Any) -> None:
        proj = await projector()
        meter: Throughput = state["throughput"]
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            batch = [
                RawRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            stats = await proj.process(batch)
            meter.add(stats)

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the projector worker in the foreground until interrupted."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # the start-up spinner floods logs that are not terminals
    worker.execute_from_commandline()
