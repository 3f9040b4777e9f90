"""The sinks worker's profile projection, driven in-process against real Redis and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
import redis.asyncio as aioredis

from processors.bootstrap import get_codec, migrate_database
from processors.workers.sinks import RawRecord, SinkProcessor
from projections.profiles import profiles_key
from streams.events import LeaderboardConfigured, ParticipantProfileUpdated
from streams.settings import Settings
from tests.integration.test_sinks_pipeline import FakeProducer

pytestmark = pytest.mark.integration


def rows(dsn: str, pids: list[str]) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT participant_id, display_name, country, metadata, source_offset"
            " FROM participants WHERE participant_id = ANY(%s) ORDER BY 1",
            (pids,),
        ).fetchall()


async def test_latest_record_wins_tombstones_delete_and_redelivery_changes_nothing(
    stack: Settings,
) -> None:
    migrate_database(stack.postgres_dsn)
    tag = uuid.uuid4().hex[:8]
    settings = stack.model_copy(update={"topic_prefix": f"pp{tag}."})
    ann, bob, cid = f"ann-{tag}", f"bob-{tag}", f"cid-{tag}"
    codec = get_codec(settings)
    fake = FakeProducer()
    proc = SinkProcessor(settings, producer=fake)  # type: ignore[arg-type]
    key = profiles_key(settings.topic_prefix)
    client = aioredis.Redis.from_url(stack.redis_url)

    def rec(offset: int, ev: object) -> RawRecord:
        return RawRecord(0, offset, b"k", codec.encode(ev))  # type: ignore[arg-type]

    batch = [
        rec(10, ParticipantProfileUpdated(ann, 1, "Ann v1")),
        rec(11, ParticipantProfileUpdated(bob, 2, "Bob", country="SE")),
        RawRecord(0, 12, b"x", b"\x00garbage"),
        rec(13, ParticipantProfileUpdated(ann, 3, "Ann v2", metadata={"clan": "red"})),
        rec(14, ParticipantProfileUpdated(cid, 4, "Cid")),
        rec(15, LeaderboardConfigured("b")),
    ]
    try:
        assert await proc.handle_profiles(batch) == 3
        stored = {k.decode(): json.loads(v) for k, v in (await client.hgetall(key)).items()}
        assert stored == {
            ann: {"display_name": "Ann v2", "metadata": {"clan": "red"}},
            bob: {"display_name": "Bob", "country": "SE"},
            cid: {"display_name": "Cid"},
        }
        assert rows(stack.postgres_dsn, [ann, bob, cid]) == [
            (ann, "Ann v2", None, {"clan": "red"}, 13),
            (bob, "Bob", "SE", {}, 11),
            (cid, "Cid", None, {}, 14),
        ]
        assert [t for t, _ in fake.dead] == [settings.participants_topic] * 2
        assert "unexpected event type LeaderboardConfigured" in fake.dead[1][1]

        # redelivery of the same batch (at least once) leaves the same state
        await proc.handle_profiles(batch)
        assert rows(stack.postgres_dsn, [ann, bob, cid])[0][1] == "Ann v2"

        # a tombstone (null value, key = participant) deletes the profile everywhere
        await proc.handle_profiles([RawRecord(0, 16, cid.encode(), None)])
        assert await client.hget(key, cid) is None
        assert [r[0] for r in rows(stack.postgres_dsn, [ann, bob, cid])] == [ann, bob]
    finally:
        await client.delete(key)
        await client.aclose()
        await proc.close()
