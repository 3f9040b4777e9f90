"""The Confluent wire format: Avro bodies behind a Schema Registry id (magic 0 + 4-byte id)."""

from __future__ import annotations

import json
import struct
from typing import Any

from confluent_kafka.schema_registry import Schema

from streams.codec import (
    SINGLE_OBJECT_MARKER,
    AvroCodec,
    SchemaStore,
    SchemaVersion,
    SingleObjectCodec,
)
from streams.errors import DecodeError, LeaderboardError
from streams.events import Event

__all__ = ["ConfluentCodec"]

_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">bI")


class ConfluentCodec(AvroCodec):
    """Confluent wire format (magic 0 + 4-byte big-endian schema id) with a Schema Registry.

    Subjects follow the record-name strategy (subject = full Avro name) because an event type
    is the same contract on whichever topic it travels. Decoding also accepts single-object
    records, so a topic can migrate from one format to the other without a flag day.
    """

    def __init__(self, client: Any, store: SchemaStore | None = None) -> None:
        """Use a confluent_kafka SchemaRegistryClient (or its mock) and a schema store."""
        super().__init__(store)
        self.client = client
        self._single = SingleObjectCodec(self.store)
        self._ids: dict[str, int] = {}
        self._writers: dict[int, SchemaVersion] = {}

    def schema_id(self, name: str) -> int:
        """Registry id of the current schema of ``name``, registering it once."""
        schema_id = self._ids.get(name)
        if schema_id is None:
            version = self.store.reader(name)
            try:
                schema_id = int(
                    self.client.register_schema(name, Schema(json.dumps(version.json), "AVRO"))
                )
            except Exception as exc:
                raise LeaderboardError(
                    f"cannot register schema {name} with the Schema Registry: {exc}"
                ) from exc
            self._ids[name] = schema_id
            self._writers[schema_id] = version
        return schema_id

    def _writer(self, schema_id: int) -> SchemaVersion:
        writer = self._writers.get(schema_id)
        if writer is None:
            try:
                registered = self.client.get_schema(schema_id)
                writer = self.store.parse_writer(
                    json.loads(registered.schema_str), f"registry id {schema_id}"
                )
            except Exception as exc:
                raise DecodeError(f"unknown schema id {schema_id}: {exc}") from exc
            self._writers[schema_id] = writer
        return writer

    def encode(self, event: Event) -> bytes:
        """Serialize one event in the Confluent wire format."""
        version, body = self._body(event)
        return _CONFLUENT_HEADER.pack(_CONFLUENT_MAGIC, self.schema_id(version.name)) + body

    def decode(self, data: bytes) -> Event:
        """Deserialize a Confluent (or single-object) record into its typed event."""
        if data[:2] == SINGLE_OBJECT_MARKER:
            return self._single.decode(data)
        if len(data) < _CONFLUENT_HEADER.size or data[0] != _CONFLUENT_MAGIC:
            raise DecodeError("not a Confluent wire-format or Avro single-object record")
        _, schema_id = _CONFLUENT_HEADER.unpack_from(data)
        return self._read_body(data, _CONFLUENT_HEADER.size, self._writer(schema_id))
