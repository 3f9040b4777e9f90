"""The head of a rank-change record (board, first and last version), read without its changes.

Each gateway reads every rank-change record of every board, but needs a record's changes only
for a board someone on this process watches, or while a ``?wait=true`` submission waits for
its result. Decoding the changes is most of the feed's work (about 10 µs per change, and the
objects it makes are what the garbage collector then walks); the head is three Avro values at
the front of the body. ``RecordHead`` reads them only for records written with the current
``RankChanged`` schema in the single-object encoding, whose first three fields it checks once;
for any other writer (a Schema Registry's, an older schema) it answers None and the feed
decodes the whole record as before.
"""

from __future__ import annotations

from typing import Any

from streams.codec import SINGLE_OBJECT_MARKER, SingleObjectCodec
from streams.events import RankChanged

__all__ = ["Head", "RecordHead"]

#: (leaderboard id, version_from, version_to)
Head = tuple[str, int, int]

#: The fields the head is made of, first in the schema, with their Avro types.
_HEAD_FIELDS = [("leaderboard_id", "string"), ("version_from", "long"), ("version_to", "long")]


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it (IndexError past the end)."""
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


class RecordHead:
    """Reads the head of records of the current ``RankChanged`` schema (see the module)."""

    def __init__(self, codec: Any) -> None:
        """``codec``: the feed's; only a ``SingleObjectCodec`` has heads to read."""
        self.prefix: bytes | None = None
        if isinstance(codec, SingleObjectCodec):
            version = codec.store.reader(RankChanged.SCHEMA)
            fields = [(f["name"], f["type"]) for f in version.json["fields"][:3]]
            if fields == _HEAD_FIELDS:
                self.prefix = SINGLE_OBJECT_MARKER + version.fingerprint

    def __call__(self, data: bytes) -> Head | None:
        """The record's head, or None (another writer, or bytes that do not parse)."""
        prefix = self.prefix
        if prefix is None or not data.startswith(prefix):
            return None
        try:
            size, pos = _long(data, len(prefix))
            end = pos + size
            if size < 0 or end > len(data):
                return None
            board = data[pos:end].decode()
            version_from, pos = _long(data, end)
            version_to, _ = _long(data, pos)
        except (IndexError, ValueError, UnicodeDecodeError):
            return None
        return board, version_from, version_to
