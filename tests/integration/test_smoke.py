"""Smoke tests proving each service of the local stack is the real thing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_admin: AdminClient, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A fresh 3-partition topic, deleted after the test."""
    name = unique_name("smoke")
    for future in kafka_admin.create_topics(
        [NewTopic(name, num_partitions=3, replication_factor=1)], operation_timeout=30
    ).values():
        future.result(timeout=30)
    yield name
    for future in kafka_admin.delete_topics([name], operation_timeout=30).values():
        future.result(timeout=30)


def _produce_confluent(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "records still queued after 30 s"
    assert errors == []


async def test_confluent_producer_to_aiokafka_consumer_group(
    stack: Settings, topic: str, unique_name: Callable[[str], str]
) -> None:
    records = [(f"board-{i % 4}".encode(), f"score-{i}".encode()) for i in range(20)]
    _produce_confluent(stack.kafka_bootstrap, topic, records)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=unique_name("smoke-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen: list[tuple[bytes | None, bytes | None]] = []
        async with asyncio.timeout(60):
            while len(seen) < len(records):
                batch = await consumer.getmany(timeout_ms=1000)
                for messages in batch.values():
                    seen.extend((m.key, m.value) for m in messages)
        await consumer.commit()
        assert sorted(seen) == sorted(records)
        # The group's committed offsets cover every record.
        committed = 0
        for tp in consumer.assignment():
            committed += await consumer.committed(tp) or 0
        assert committed == len(records)
    finally:
        await consumer.stop()


async def test_aiokafka_producer_to_confluent_consumer_group(
    stack: Settings, topic: str, unique_name: Callable[[str], str]
) -> None:
    records = [(f"player-{i}".encode(), f"{i * 10}".encode()) for i in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()

    def consume() -> list[tuple[bytes | None, bytes | None]]:
        consumer = Consumer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "group.id": unique_name("smoke-group"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        seen: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 60
        try:
            while len(seen) < len(records) and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                seen.append((msg.key(), msg.value()))
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        return seen

    seen = await asyncio.to_thread(consume)
    assert sorted(seen) == sorted(records)


def test_kafka_refuses_unknown_topic_autocreation(stack: Settings, unique_name) -> None:
    """Topics are created by the project: producing to an unknown topic must not create it."""
    name = unique_name("nope")
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "message.timeout.ms": 3000})
    failures: list[object] = []
    producer.produce(name, b"x", on_delivery=lambda err, _m: failures.append(err))
    producer.flush(10)
    assert failures and failures[0] is not None
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    assert name not in admin.list_topics(timeout=10).topics


def test_redis_sorted_set_ranks(redis_client: redis.Redis, unique_name) -> None:
    key = unique_name("smoke:board")
    try:
        redis_client.zadd(key, {"alice": 300, "bob": 100, "carol": 200})
        assert redis_client.zrevrank(key, "alice") == 0
        assert redis_client.zrevrank(key, "carol") == 1
        assert redis_client.zrevrank(key, "bob") == 2
        redis_client.zadd(key, {"bob": 400})
        assert redis_client.zrevrank(key, "bob") == 0
        assert redis_client.zrevrange(key, 0, -1, withscores=True) == [
            (b"bob", 400.0),
            (b"alice", 300.0),
            (b"carol", 200.0),
        ]
        assert redis_client.zrevrank(key, "nobody") is None
    finally:
        redis_client.delete(key)


def test_postgres_partitioned_table_with_copy(pg_conn: psycopg.Connection, unique_name) -> None:
    table = unique_name("smoke_scores").replace("-", "_")
    ident = sql.Identifier(table)
    rows = [
        (f"board-{i % 3}", f"player-{i}", i * 7, f"2026-{1 + i % 2:02d}-15T12:00:00+00")
        for i in range(100)
    ]
    try:
        with pg_conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    """CREATE TABLE {} (
                        leaderboard_id text NOT NULL,
                        participant_id text NOT NULL,
                        score bigint NOT NULL,
                        event_time timestamptz NOT NULL,
                        UNIQUE (leaderboard_id, participant_id, event_time)
                    ) PARTITION BY RANGE (event_time)"""
                ).format(ident)
            )
            for month, (start, end) in enumerate(
                [("2026-01-01", "2026-02-01"), ("2026-02-01", "2026-03-01")], start=1
            ):
                cur.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(f"{table}_m{month}"),
                        ident,
                        sql.Literal(start),
                        sql.Literal(end),
                    )
                )
            with cur.copy(
                sql.SQL(
                    "COPY {} (leaderboard_id, participant_id, score, event_time) FROM STDIN"
                ).format(ident)
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            pg_conn.commit()

            cur.execute(sql.SQL("SELECT count(*), sum(score) FROM {}").format(ident))
            assert cur.fetchone() == (100, sum(r[2] for r in rows))
            cur.execute(
                sql.SQL(
                    "SELECT tableoid::regclass::text, count(*) FROM {} GROUP BY 1 ORDER BY 1"
                ).format(ident)
            )
            assert cur.fetchall() == [(f"{table}_m1", 50), (f"{table}_m2", 50)]
            cur.execute(
                sql.SQL("SELECT participant_id, score FROM {} WHERE participant_id = %s").format(
                    ident
                ),
                ("player-42",),
            )
            assert cur.fetchone() == ("player-42", 294)
    finally:
        pg_conn.rollback()
        pg_conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        pg_conn.commit()
