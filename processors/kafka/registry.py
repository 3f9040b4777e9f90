"""The Confluent wire format: Avro bodies behind a Schema Registry id (magic 0 + 4-byte id).

With a registry, a writer schema this process was not built with is resolved through it: a
Confluent record names its schema id, a single-object record its fingerprint (found among the
registered versions). Either way the writer is fetched once, cached, checked against the current
reader schema by Avro's resolution rules and then read with schema resolution.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

from confluent_kafka.schema_registry import Schema

from streams.codec import (
    SINGLE_OBJECT_MARKER,
    SO_HEADER_SIZE,
    AvroCodec,
    SchemaStore,
    SchemaVersion,
    SingleObjectCodec,
)
from streams.errors import DecodeError, LeaderboardError
from streams.events import Event

__all__ = ["ConfluentCodec"]

logger = logging.getLogger(__name__)

_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">bI")


class ConfluentCodec(AvroCodec):
    """Confluent wire format (magic 0 + 4-byte big-endian schema id) with a Schema Registry.

    Subjects follow the record-name strategy (subject = full Avro name) because an event type
    is the same contract on whichever topic it travels. Decoding also accepts single-object
    records, so a topic can migrate from one format to the other without a flag day; their
    unknown fingerprints are looked up among the registered versions of every subject.
    """

    def __init__(self, client: Any, store: SchemaStore | None = None) -> None:
        """Use a confluent_kafka SchemaRegistryClient (or its mock) and a schema store."""
        super().__init__(store)
        self.client = client
        self._single = SingleObjectCodec(self.store)
        self._ids: dict[str, int] = {}
        self._writers: dict[int, SchemaVersion] = {}
        # single-object fingerprints of registered versions, and the versions already read
        self._fingerprints: dict[bytes, SchemaVersion] = {}
        self._scanned: set[tuple[str, int]] = set()

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

    def _registered(self, fp: bytes) -> SchemaVersion:
        """The registered writer schema whose fingerprint is ``fp`` (single-object records).

        The registry has no lookup by fingerprint, so a miss reads the versions registered since
        the last miss (one call per subject, one per new version). A miss is never cached: a
        schema registered a moment ago resolves on the next record, as it will on replay.
        """
        writer = self._fingerprints.get(fp)
        if writer is not None:
            return writer
        hex_fp = f"0x{int.from_bytes(fp, 'little'):016x}"
        try:
            for subject in self.client.get_subjects():
                for version in self.client.get_versions(subject):
                    if (subject, version) in self._scanned:
                        continue
                    registered = self.client.get_version(subject, version)
                    self._scanned.add((subject, version))
                    if registered.schema.schema_type not in (None, "AVRO"):
                        continue
                    try:
                        found = self.store.parse_writer(
                            json.loads(registered.schema.schema_str),
                            f"registry id {registered.schema_id}, {subject} v{version}",
                        )
                    except (ValueError, KeyError, TypeError) as exc:
                        logger.debug("%s v%s is not an Avro record: %s", subject, version, exc)
                        continue
                    self._fingerprints.setdefault(found.fingerprint, found)
        except Exception as exc:
            raise DecodeError(
                f"unknown schema fingerprint {hex_fp}: Schema Registry lookup failed: {exc}"
            ) from exc
        writer = self._fingerprints.get(fp)
        if writer is None:
            raise DecodeError(
                f"unknown schema fingerprint {hex_fp}: not in schemas/ nor in the Schema Registry"
            )
        logger.info("writer schema %s resolved through the registry (%s)", hex_fp, writer.source)
        return writer

    def encode(self, event: Event) -> bytes:
        """Serialize one event in the Confluent wire format."""
        version, body = self._body(event)
        return _CONFLUENT_HEADER.pack(_CONFLUENT_MAGIC, self.schema_id(version.name)) + body

    def decode(self, data: bytes) -> Event:
        """Deserialize a Confluent (or single-object) record into its typed event."""
        if data[:2] == SINGLE_OBJECT_MARKER and len(data) >= SO_HEADER_SIZE:
            fp = bytes(data[2:SO_HEADER_SIZE])
            if fp in self.store.by_fingerprint:
                return self._single.decode(data)
            return self._read_body(data, SO_HEADER_SIZE, self._registered(fp))
        if len(data) < _CONFLUENT_HEADER.size or data[0] != _CONFLUENT_MAGIC:
            raise DecodeError("not a Confluent wire-format or Avro single-object record")
        _, schema_id = _CONFLUENT_HEADER.unpack_from(data)
        return self._read_body(data, _CONFLUENT_HEADER.size, self._writer(schema_id))
