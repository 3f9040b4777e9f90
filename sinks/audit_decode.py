"""The audit sink's decode of rank-change records: Avro straight to the audit row's fields.

The sinks worker reads every field of every ``RankChange`` once, to copy it into an audit row.
The generic decode builds a ``RankChange`` object per change from fastavro's dict, and the
writer then reads the object back into a tuple: about a third of the worker's CPU per entry
(benchmarks/notes.md). Here a record written with the current ``RankChanged`` schema in
single-object encoding (what the projector writes) is read by the very same fastavro call
with the very same schema, and its change dicts go to the writer as they are; anything else
(the Confluent wire format, an older writer schema, bytes that are not a rank change) takes
the codec's generic decode, so both paths accept and refuse exactly the same records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from streams.codec import SINGLE_OBJECT_MARKER, SO_HEADER_SIZE, AvroCodec, Codec, read_body
from streams.events import Event, RankChanged

__all__ = ["AuditDecoder", "RankChangedFields"]


class RankChangedFields(NamedTuple):
    """A ``RankChanged`` as fastavro read it: its changes are the Avro dicts of the schema's
    ``RankChange`` fields (times as integer milliseconds)."""

    leaderboard_id: str
    version_from: int
    version_to: int
    changes: Sequence[dict[str, Any]]
    periods_ended: tuple[str, ...]


class AuditDecoder:
    """Decodes rank-change records for the audit: fast for the current schema's single-object
    records, through ``codec`` for every other record."""

    def __init__(self, codec: Codec) -> None:
        """Use ``codec`` for the records the fast path does not take."""
        self.codec = codec
        self._header = b""
        self._parsed: Any = None
        if isinstance(codec, AvroCodec):  # both codecs of the project read single-object records
            current = codec.store.current.get(RankChanged.SCHEMA)
            if current is not None:
                self._header = SINGLE_OBJECT_MARKER + current.fingerprint
                self._parsed = current.parsed

    def decode(self, data: bytes) -> RankChangedFields | Event:
        """The event in ``data``: the fields of a current rank change, or what ``codec.decode``
        returns; raise DecodeError on bad bytes, as ``codec.decode`` does."""
        if self._parsed is None or data[:SO_HEADER_SIZE] != self._header:
            return self.codec.decode(data)
        d: Any = read_body(data, SO_HEADER_SIZE, self._parsed, None)
        return RankChangedFields(
            d["leaderboard_id"],
            d["version_from"],
            d["version_to"],
            d["changes"],
            tuple(d["periods_ended"]),
        )
