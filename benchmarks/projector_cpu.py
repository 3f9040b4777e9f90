"""The projector's CPU per entry in-process (no Faust), for A/B runs on a loaded machine.

``Projector.process`` drains prebuilt raw score records against the configured Redis and
Kafka, after one warm-up batch; the figure is the whole process's CPU (Python and librdkafka's
threads, ``time.process_time``) per applied entry, which other load distorts far less than a
rate. Run it from each tree of an A/B in turn (A, B, A, B, ...) and compare medians:

    PYTHONPATH=<tree> python -m benchmarks.projector_cpu --drain hot

Drains: ``w10`` (10-entry matches over 20 boards, batches of 500 records) and ``hot`` (single
scores coalesced ``HOT_COALESCE`` to a record, one board, batches of 20 records). Prints one
JSON object: ``projector.cpu_us_per_entry`` and ``projector.entries_per_s`` (wall, loaded).
Leaves nothing behind: its boards live under their own Redis prefix, deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import click

from benchmarks.scenarios.hot import HOT_COALESCE
from benchmarks.workload import board_configs, match_stream, now_ms
from processors.bootstrap import get_codec, redis_at
from processors.kafka.producer import LeaderboardProducer
from processors.workers.projector import Projector, RawRecord
from projections.store import RankingStore
from streams.codec import Codec
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    ScoresSubmitted,
    ScoreSubmission,
)
from streams.partitioning import partition_for
from streams.settings import Settings, get_settings

#: drain → (records, records per batch)
DRAINS = {"w10": (3000, 500), "hot": (400, 20)}


def build(
    drain: str, tag: str, codec: Codec, settings: Settings
) -> tuple[dict[str, LeaderboardConfigured], list[RawRecord]]:
    """The drain's boards and its raw records, placed as Kafka would (offsets per partition)."""
    rng = random.Random(7)
    t = now_ms()
    count = DRAINS[drain][0]
    events: list[MatchResultSubmitted | ScoresSubmitted]
    if drain == "w10":
        cfgs = board_configs(tag, 20)
        names = [c.leaderboard_id for c in cfgs]
        events = list(match_stream(rng, names, 100_000, count, 10, t))
    else:
        cfgs = board_configs(tag, 1)
        board = cfgs[0].leaderboard_id
        events = []
        for _ in range(count):
            subs = []
            for _ in range(HOT_COALESCE):
                eid = uuid.uuid4().hex
                pid = f"p{rng.randrange(100_000)}"
                subs.append(ScoreSubmission(eid, eid, t, pid, rng.randint(1, 1_000_000)))
            events.append(ScoresSubmitted(board, tuple(subs)))
    offsets: dict[int, int] = {}
    raws = []
    for ev in events:
        part = partition_for(ev.leaderboard_id, settings.partitions)
        offsets[part] = offsets.get(part, -1) + 1
        key = ev.leaderboard_id.encode()
        raws.append(RawRecord(part, offsets[part], key, codec.encode(ev), t))
    return {c.leaderboard_id: c for c in cfgs}, raws


async def measure(drain: str) -> dict[str, float]:
    """Drain once; the projector's CPU per entry and the wall rate."""
    settings = get_settings()
    codec = get_codec(settings)
    tag = f"pcpu{uuid.uuid4().hex[:6]}"
    cfgs, raws = build(drain, tag, codec, settings)
    client = redis_at(settings.redis_url)
    producer = LeaderboardProducer(settings)
    projector = Projector(settings, RankingStore(client, prefix=tag), cfgs.get, codec, producer)
    batch = DRAINS[drain][1]
    try:
        await projector.process(raws[:batch])  # warm-up: script load, connections
        entries = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(batch, len(raws), batch):
            stats = await projector.process(raws[start : start + batch])
            entries += stats.entries_applied
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        producer.close(10)
        keys = [k async for k in client.scan_iter(match=f"{tag}*", count=5000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()
    return {
        "projector.cpu_us_per_entry": cpu * 1e6 / max(1, entries),
        "projector.entries_per_s": entries / wall if wall else 0.0,
        "entries": entries,
    }


@click.command()
@click.option(
    "--drain",
    type=click.Choice(sorted(DRAINS)),
    default="w10",
    show_default=True,
    help="w10: 10-entry matches, 20 boards; hot: coalesced single scores, one board.",
)
def main(drain: str) -> None:
    """Measure Projector.process's CPU per entry on one drain (one JSON line)."""
    click.echo(json.dumps({"drain": drain, **asyncio.run(measure(drain))}))


if __name__ == "__main__":
    main()
