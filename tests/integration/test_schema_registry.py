"""The Confluent wire format against a real Schema Registry (``stack up --schema-registry``)."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro import schemaless_writer

from infra import stack as local_stack
from infra.stack.registry import SchemaRegistry
from processors.bootstrap import get_codec, kafka_consumer, kafka_producer
from processors.kafka.registry import ConfluentCodec
from streams.codec import SINGLE_OBJECT_MARKER, SingleObjectCodec, default_store
from streams.errors import DecodeError
from streams.events import MatchResultSubmitted, Operator, ScoreEntry
from streams.settings import Settings


@pytest.fixture(scope="module")
def registry_url(stack: Settings) -> str:
    """The Confluent API of our Apicurio Registry (started if needed; idempotent)."""
    local_stack.up(stack, setup=False, schema_registry=True)
    return SchemaRegistry(stack).url()


def fresh_codec(url: str) -> ConfluentCodec:
    """A codec with its own registry client: nothing cached, every id asked of the registry."""
    return ConfluentCodec(SchemaRegistryClient.new_client({"url": url}))


def registry_get(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=5) as resp:
        return json.loads(resp.read())


def match(event_id: str) -> MatchResultSubmitted:
    return MatchResultSubmitted(
        event_id=event_id,
        match_id="m-1",
        leaderboard_id="board-registry",
        occurred_at=1_700_000_000_123,
        entries=(
            ScoreEntry("alice", 2**53 - 1, Operator.INCR, {"country": "fr"}),
            ScoreEntry("bob", -(2**63)),
        ),
    )


def test_encode_registers_the_schema_under_its_record_name(registry_url: str) -> None:
    codec = get_codec(Settings(schema_registry_url=registry_url))
    assert isinstance(codec, ConfluentCodec)
    data = codec.encode(match("e-register"))
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    subject = MatchResultSubmitted.SCHEMA
    assert subject in registry_get(registry_url, "/subjects")
    latest = registry_get(registry_url, f"/subjects/{subject}/versions/latest")
    assert latest["id"] == schema_id
    assert json.loads(latest["schema"])["name"] == subject.rsplit(".", 1)[-1]


def test_a_resent_schema_keeps_its_id(registry_url: str) -> None:
    codec = fresh_codec(registry_url)
    first = codec.schema_id(MatchResultSubmitted.SCHEMA)
    assert fresh_codec(registry_url).schema_id(MatchResultSubmitted.SCHEMA) == first
    # The same schema written differently (another producer's JSON layout) is the same schema.
    layout = json.dumps(codec.store.reader(MatchResultSubmitted.SCHEMA).json, indent=2)
    client = SchemaRegistryClient.new_client({"url": registry_url})
    assert client.register_schema(MatchResultSubmitted.SCHEMA, Schema(layout, "AVRO")) == first
    versions = registry_get(registry_url, f"/subjects/{MatchResultSubmitted.SCHEMA}/versions")
    assert len(versions) == 1


def test_records_through_kafka_decode_with_the_writer_from_the_registry(
    registry_url: str, stack: Settings, kafka_admin: AdminClient, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("registry")
    for future in kafka_admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    writer = fresh_codec(registry_url)
    sent = [match(f"e-{i}") for i in range(5)]
    producer = kafka_producer({"bootstrap.servers": stack.kafka_bootstrap})
    for event in sent:
        producer.produce(topic, writer.encode(event))
    assert producer.flush(30) == 0

    consumer = kafka_consumer(
        stack, **{"group.id": unique_name("registry"), "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    raw: list[bytes] = []
    try:
        for _ in range(60):
            for msg in consumer.consume(num_messages=10, timeout=1.0):
                assert msg.error() is None, msg.error()
                raw.append(msg.value())
            if len(raw) >= len(sent):
                break
    finally:
        consumer.close()
    # A reader that never wrote: each writer schema comes from the registry by id.
    reader = fresh_codec(registry_url)
    assert [reader.decode(data) for data in raw] == sent


def test_an_id_the_registry_does_not_know_is_a_decode_error(registry_url: str) -> None:
    with pytest.raises(DecodeError, match="unknown schema id 987654"):
        fresh_codec(registry_url).decode(b"\x00" + (987654).to_bytes(4, "big") + b"\x00")


# --------------------------------------------------------------- unknown writers, evolved schemas


def evolved_schema(field: dict[str, Any]) -> dict[str, Any]:
    """MatchResultSubmitted as a newer producer writes it: the current schema plus ``field``."""
    current = default_store().reader(MatchResultSubmitted.SCHEMA).json
    return {**current, "fields": [*current["fields"], field]}


#: A newer producer adds an optional field (full compatibility: old readers skip it).
PLATFORM = {"name": "platform", "type": ["null", "string"], "default": None, "doc": "device"}


def write_evolved(
    client: SchemaRegistryClient, schema: dict[str, Any], record: dict[str, Any]
) -> tuple[bytes, bytes]:
    """``record`` written with ``schema`` (registered first): Confluent and single-object bytes.

    The schema goes under a subject of its own (a producer's topic-name strategy), so the
    record-name subjects the project's own producers use keep their one version.
    """
    subject = f"evolved-{uuid.uuid4().hex[:8]}-value"
    schema_id = client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    writer = default_store().parse_writer(schema, "test")
    body = io.BytesIO()
    schemaless_writer(body, writer.parsed, record)
    confluent = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    return confluent, SINGLE_OBJECT_MARKER + writer.fingerprint + body.getvalue()


def test_an_evolved_writer_resolves_through_the_registry_in_both_formats(
    registry_url: str,
) -> None:
    client = SchemaRegistryClient.new_client({"url": registry_url})
    event = match("e-evolved")
    record = {**event.to_avro(), "platform": "switch"}
    confluent, single = write_evolved(client, evolved_schema(PLATFORM), record)
    # without a registry the unknown fingerprint is refused (and dead-lettered by the workers)
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        SingleObjectCodec().decode(single)
    reader = fresh_codec(registry_url)
    assert reader.decode(confluent) == event
    assert reader.decode(single) == event


def test_a_registered_writer_the_reader_cannot_read_is_refused_with_the_reason(
    registry_url: str,
) -> None:
    client = SchemaRegistryClient.new_client({"url": registry_url})
    # a required field the current reader does not know is fine; a field it needs, gone, is not
    current = default_store().reader(MatchResultSubmitted.SCHEMA).json
    broken = {**current, "fields": [f for f in current["fields"] if f["name"] != "match_id"]}
    record = {k: v for k, v in match("e-broken").to_avro().items() if k != "match_id"}
    reason = "cannot be read by the current schema: .*match_id: field not written and has no"
    for data in write_evolved(client, broken, record):
        with pytest.raises(DecodeError, match=reason):
            fresh_codec(registry_url).decode(data)
