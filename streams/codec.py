"""Avro codecs: single-object encoding by default, Confluent wire format with a Schema Registry.

Every record on a topic is one event encoded with the *current* schema of its type (schemas/).
Decoding resolves whatever writer schema the bytes name (current or an older version kept in
schemas/history/) into the current reader schema, so compatible changes work in both directions.

Timestamps (``timestamp-millis``) are read and written as plain integer milliseconds: the logical
type is stripped from the parsed schemas (it is not part of the Parsing Canonical Form, so the
fingerprints are unchanged) which keeps event times exact and decoding fast.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams import avro_out
from streams.errors import DecodeError, LeaderboardError
from streams.events import (
    EVENT_TYPES,
    Event,
    MatchResultSubmitted,
    Operator,
    ScoreEntry,
    ScoresSubmitted,
    ScoreSubmission,
)
from streams.schema_compat import read_problems
from streams.settings import PROJECT_ROOT

__all__ = [
    "SCHEMA_DIR",
    "SINGLE_OBJECT_MARKER",
    "SO_HEADER_SIZE",
    "AvroCodec",
    "Codec",
    "SchemaStore",
    "SchemaVersion",
    "SingleObjectCodec",
    "match_from_avro",
    "scores_from_avro",
]

logger = logging.getLogger(__name__)

#: Folder of the current ``.avsc`` files; older versions live in its ``history/`` subfolder.
SCHEMA_DIR = PROJECT_ROOT / "schemas"

#: Avro single-object encoding marker (spec: "Single-object encoding").
SINGLE_OBJECT_MARKER = b"\xc3\x01"
#: Bytes before the body of a single-object record: the marker and the 8-byte fingerprint.
SO_HEADER_SIZE = len(SINGLE_OBJECT_MARKER) + 8

E = TypeVar("E")


def _strip_logical_types(node: Any) -> Any:
    """Copy of a schema JSON without ``logicalType`` (timestamps stay exact integers)."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def crc64_fingerprint(schema_json: Any) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as 8 little-endian bytes."""
    canonical = to_parsing_canonical_form(parse_schema(schema_json, _write_hint=False))
    # fastavro renders the Rabin fingerprint as the hex of its little-endian bytes.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def read_body(data: bytes, start: int, writer_parsed: Any, reader_parsed: Any) -> Any:
    """The Avro record in ``data`` from ``start`` to its very end, as fastavro reads it;
    DecodeError on a truncated or malformed body or on trailing bytes."""
    fo = io.BytesIO(data)
    fo.seek(start)
    try:
        record = schemaless_reader(fo, writer_parsed, reader_parsed)
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
        raise DecodeError(f"truncated or malformed Avro body: {type(exc).__name__}: {exc}") from exc
    trailing = len(data) - fo.tell()
    if trailing:
        raise DecodeError(
            f"truncated or malformed Avro body: {trailing} trailing bytes after the record"
        )
    return record


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One known schema: its full name, JSON, fingerprint and parsed (logical-free) form."""

    name: str
    json: dict[str, Any]
    fingerprint: bytes
    parsed: Any
    source: str

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as the 64-bit number it is, in hex (``0x...``)."""
        return f"0x{int.from_bytes(self.fingerprint, 'little'):016x}"


def _full_name(schema: dict[str, Any]) -> str:
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


class SchemaStore:
    """Current reader schemas plus every known older writer schema, indexed by fingerprint."""

    def __init__(self, directory: Path | str = SCHEMA_DIR) -> None:
        """Load ``directory/*.avsc`` as current schemas and ``directory/history/*.avsc`` as old."""
        self.directory = Path(directory)
        self.current: dict[str, SchemaVersion] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path in sorted(self.directory.glob("*.avsc")):
            version = self._load(path)
            if version.name in self.current:
                raise LeaderboardError(
                    f"two current schemas for {version.name}: "
                    f"{self.current[version.name].source} and {path}"
                )
            self.current[version.name] = version
            self.by_fingerprint[version.fingerprint] = version
        for path in sorted((self.directory / "history").glob("*.avsc")):
            version = self._load(path)
            if version.name not in self.current:
                raise LeaderboardError(f"{path}: no current schema named {version.name}")
            self.by_fingerprint.setdefault(version.fingerprint, version)
        logger.debug(
            "schema store: %d current, %d known versions from %s",
            len(self.current),
            len(self.by_fingerprint),
            self.directory,
        )

    @staticmethod
    def _load(path: Path) -> SchemaVersion:
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
            parsed = parse_schema(_strip_logical_types(schema))
            fp = crc64_fingerprint(schema)
        except (OSError, ValueError, KeyError) as exc:
            raise LeaderboardError(f"cannot load Avro schema {path}: {exc}") from exc
        return SchemaVersion(_full_name(schema), schema, fp, parsed, str(path))

    def reader(self, name: str) -> SchemaVersion:
        """The current schema of the record type ``name`` (full Avro name)."""
        try:
            return self.current[name]
        except KeyError:
            raise DecodeError(f"no current schema for record type {name}") from None

    def parse_writer(self, schema_json: dict[str, Any], source: str) -> SchemaVersion:
        """Make a SchemaVersion for a writer schema obtained elsewhere (a Schema Registry)."""
        parsed = parse_schema(_strip_logical_types(schema_json))
        return SchemaVersion(
            _full_name(schema_json), schema_json, crc64_fingerprint(schema_json), parsed, source
        )


class Codec(Protocol):
    """Turns events into bytes and back; every codec of the project has this shape."""

    def encode(self, event: Event) -> bytes:
        """Serialize one event with the current schema of its type."""
        ...

    def decode(self, data: bytes) -> Event:
        """Deserialize one record into its typed event; raise DecodeError on bad bytes."""
        ...

    def decode_as(self, data: bytes, cls: type[E]) -> E:
        """Deserialize and check the event is a ``cls``; raise DecodeError otherwise."""
        ...


class AvroCodec:
    """Shared machinery: schemaless Avro bodies resolved against the store's readers."""

    def __init__(self, store: SchemaStore | None = None) -> None:
        """Use ``store`` (default: the project's schemas/ folder)."""
        self.store = store if store is not None else default_store()
        # (writer fingerprint) -> (writer parsed, reader parsed or None when identical, class)
        self._resolved: dict[bytes, tuple[Any, Any, type[Any]]] = {}
        # (writer fingerprint) -> why the current reader cannot read it (checked once)
        self._refused: dict[bytes, str] = {}
        # schema name -> its direct encoder, while the current schema is the one it writes
        self._direct: dict[str, Callable[[Any], bytes]] = {
            name: encoder
            for name, (fingerprint, encoder) in avro_out.SCHEMAS.items()
            if name in self.store.current
            and self.store.current[name].fingerprint.hex() == fingerprint
        }

    def direct_header(self, name: str) -> bytes | None:
        """The bytes before a direct-written body of the record type ``name`` (see
        ``avro_out``), or None: no direct writer for its current schema in this codec, so
        its events go through ``encode``. A codec without a fixed header per type (the
        Confluent wire format's schema id is the registry's) answers None."""
        return None

    def _resolution(self, writer: SchemaVersion) -> tuple[Any, Any, type[Any]]:
        hit = self._resolved.get(writer.fingerprint)
        if hit is not None:
            return hit
        refused = self._refused.get(writer.fingerprint)
        if refused is not None:
            raise DecodeError(refused)
        reader = self.store.reader(writer.name)
        cls = EVENT_TYPES.get(writer.name)
        if cls is None:
            raise DecodeError(f"no event class for record type {writer.name}")
        if reader.fingerprint != writer.fingerprint:
            # A writer from elsewhere (a Schema Registry) is checked once, before any record
            # of it is read: an incompatible one is refused with the reason, not half-decoded.
            problems = read_problems(reader.json, writer.json)
            if problems:
                self._refused[writer.fingerprint] = (
                    f"writer schema {writer.name} ({writer.source}) cannot be read by the current"
                    f" schema: {'; '.join(problems)}"
                )
                raise DecodeError(self._refused[writer.fingerprint])
        resolved = (
            writer.parsed,
            None if reader.fingerprint == writer.fingerprint else reader.parsed,
            cls,
        )
        self._resolved[writer.fingerprint] = resolved
        return resolved

    def _body(self, event: Event) -> tuple[SchemaVersion, bytes]:
        name = getattr(event, "SCHEMA", None)
        if name is None:
            raise LeaderboardError(f"{type(event).__name__} is not an event (no SCHEMA)")
        version = self.store.reader(name)
        direct = self._direct.get(name)
        try:
            if direct is not None:  # the same bytes as fastavro's, without a dict per value
                return version, direct(event)
            buf = io.BytesIO()
            schemaless_writer(buf, version.parsed, event.to_avro())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise LeaderboardError(f"cannot encode {name}: {exc}") from exc
        return version, buf.getvalue()

    def _read_body(self, data: bytes, start: int, writer: SchemaVersion) -> Event:
        writer_parsed, reader_parsed, cls = self._resolution(writer)
        record = read_body(data, start, writer_parsed, reader_parsed)
        try:
            event: Event = (
                match_from_avro(record)
                if cls is MatchResultSubmitted
                else scores_from_avro(record)
                if cls is ScoresSubmitted
                else cls.from_avro(record)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"record does not fit {writer.name}: {exc}") from exc
        return event

    def decode_as(self, data: bytes, cls: type[E]) -> E:
        """Deserialize and check the event is a ``cls``; raise DecodeError otherwise."""
        event = self.decode(data)  # type: ignore[attr-defined]
        if not isinstance(event, cls):
            raise DecodeError(f"expected {cls.__name__}, got {type(event).__name__}")
        return event


class SingleObjectCodec(AvroCodec):
    """Avro single-object encoding: C3 01, 8-byte LE CRC-64-AVRO fingerprint, schemaless body."""

    def encode(self, event: Event) -> bytes:
        """Serialize one event with the current schema of its type."""
        version, body = self._body(event)
        return SINGLE_OBJECT_MARKER + version.fingerprint + body

    def direct_header(self, name: str) -> bytes | None:
        """The single-object header of ``name``'s current schema while ``avro_out`` writes
        that schema's bodies directly (``SCHEMAS``), else None."""
        if name not in self._direct:
            return None
        return SINGLE_OBJECT_MARKER + self.store.current[name].fingerprint

    def decode(self, data: bytes) -> Event:
        """Deserialize one record into its typed event; raise DecodeError on bad bytes."""
        if len(data) < SO_HEADER_SIZE or data[:2] != SINGLE_OBJECT_MARKER:
            raise DecodeError("not an Avro single-object record")
        fp = bytes(data[2:SO_HEADER_SIZE])
        writer = self.store.by_fingerprint.get(fp)
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint 0x{int.from_bytes(fp, 'little'):016x}")
        return self._read_body(data, SO_HEADER_SIZE, writer)


#: Entry operators by their Avro value (null: the board's).
_OPERATORS: dict[str | None, Operator | None] = {None: None, **{op.value: op for op in Operator}}


def match_from_avro(d: Any) -> MatchResultSubmitted:
    """``MatchResultSubmitted.from_avro`` for a record fastavro decoded with the stripped
    schemas: times are already integer milliseconds and each entry's metadata map is a fresh
    dict (a reader schema without operator or metadata, an old one, gets null and {}), so
    the entries are built positionally without conversions or copies (the decode of nearly
    every record of the score topic, about a third less CPU)."""
    ops = _OPERATORS
    return MatchResultSubmitted(
        d["event_id"],
        d["match_id"],
        d["leaderboard_id"],
        d["occurred_at"],
        tuple(
            [
                ScoreEntry(
                    e["participant_id"],
                    e["score"],
                    ops[e.get("operator")],
                    e.get("metadata") or {},
                )
                for e in d["entries"]
            ]
        ),
    )


def scores_from_avro(d: Any) -> ScoresSubmitted:
    """``ScoresSubmitted.from_avro`` for a record fastavro decoded with the stripped schemas
    (as ``match_from_avro``): submissions built positionally, without conversions or copies
    (a coalesced record holds up to hundreds of them)."""
    ops = _OPERATORS
    return ScoresSubmitted(
        d["leaderboard_id"],
        tuple(
            [
                ScoreSubmission(
                    s["event_id"],
                    s["match_id"],
                    s["occurred_at"],
                    s["participant_id"],
                    s["score"],
                    ops[op] if (op := s.get("operator")) else None,
                    s.get("metadata") or {},
                )
                for s in d["submissions"]
            ]
        ),
    )


_STORE: SchemaStore | None = None


def default_store() -> SchemaStore:
    """The project's schema store, loaded once per process (parsing is the slow part)."""
    global _STORE
    if _STORE is None:
        _STORE = SchemaStore()
    return _STORE


#: A match decoded by ``match_rows``: (event id, match id, leaderboard id, claimed time, entries
#: as (participant, score, operator or None, metadata or None)).
MatchRows = tuple[
    str, str, str, int, tuple[tuple[str, int, Operator | None, dict[str, str] | None], ...]
]

#: The entry operators in the order of the current MatchResultSubmitted schema's enum symbols.
_OPERATOR_SYMBOLS = (Operator.BEST, Operator.SET, Operator.INCR, Operator.DECR)


class _Irregular(Exception):
    """Bytes ``match_rows`` leaves to the codec (which decodes or refuses them)."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint of at most 64 bits) at ``pos``: (value, position after)."""
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise _Irregular
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise _Irregular
    return (n >> 1) ^ -(n & 1), pos


def _text(data: bytes, pos: int) -> tuple[str, int]:
    """An Avro string at ``pos``: (text, position after it)."""
    size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise _Irregular
    return data[pos:end].decode(), end


def match_fingerprint(store: SchemaStore | None = None) -> bytes:
    """Fingerprint of the current MatchResultSubmitted schema, the one ``match_rows`` reads,
    or b"" when that schema is not the one ``match_rows`` was written for (then it reads
    nothing and every record goes through the codec)."""
    version = (store or default_store()).current.get(MatchResultSubmitted.SCHEMA)
    if version is None or version.fingerprint.hex() != _MATCH_FINGERPRINT:
        return b""
    return version.fingerprint


#: The schema ``match_rows`` decodes by hand (checked against the store by ``match_fingerprint``).
_MATCH_FINGERPRINT = "bbee619cb6ae83bd"


def match_rows(data: bytes, fp: bytes) -> MatchRows | None:
    """A single-object MatchResultSubmitted record written with the schema of fingerprint
    ``fp`` (``match_fingerprint``), decoded straight into tuples: no dict per record or
    entry, no event objects (a replay's fold reads them as they are), at about a quarter of
    the codec's CPU. None for every other record (another type or schema, not single-object,
    ``fp`` empty) and for any bytes that are not a regular, complete encoding (truncated,
    trailing bytes, bad UTF-8, an out-of-range index or varint): the codec then decodes or
    refuses it, so a record decoded here has exactly the codec's values.
    """
    if not fp or data[2:SO_HEADER_SIZE] != fp or data[:2] != SINGLE_OBJECT_MARKER:
        return None
    try:
        pos = SO_HEADER_SIZE
        event_id, pos = _text(data, pos)
        match_id, pos = _text(data, pos)
        board, pos = _text(data, pos)
        at, pos = _long(data, pos)
        entries: list[tuple[str, int, Operator | None, dict[str, str] | None]] = []
        count, pos = _long(data, pos)
        while count:
            if count < 0:  # a block with its size in bytes
                count = -count
                _, pos = _long(data, pos)
            for _ in range(count):
                # participant: nearly always a short id (one-byte length)
                size = data[pos]
                if size < 0x80:
                    start = pos + 1
                    pos = start + (size >> 1)
                    if size & 1 or pos > len(data):
                        return None
                    pid = data[start:pos].decode()
                else:
                    pid, pos = _text(data, pos)
                b = data[pos]
                if b < 0x80:
                    score = (b >> 1) ^ -(b & 1)
                    pos += 1
                else:
                    score, pos = _long(data, pos)
                branch = data[pos]
                pos += 1
                op: Operator | None = None
                if branch == 2:  # the enum branch of the union
                    sym = data[pos]
                    pos += 1
                    if sym & 1 or sym >> 1 >= len(_OPERATOR_SYMBOLS):
                        return None
                    op = _OPERATOR_SYMBOLS[sym >> 1]
                elif branch:
                    return None
                meta: dict[str, str] | None = None
                pairs, pos = _long(data, pos) if data[pos] else (0, pos + 1)
                while pairs:
                    if pairs < 0:
                        pairs = -pairs
                        _, pos = _long(data, pos)
                    if meta is None:
                        meta = {}
                    for _ in range(pairs):
                        key, pos = _text(data, pos)
                        meta[key], pos = _text(data, pos)
                    pairs, pos = _long(data, pos)
                entries.append((pid, score, op, meta))
            count, pos = _long(data, pos)
    except (_Irregular, IndexError, UnicodeDecodeError):
        return None
    if pos != len(data):
        return None
    return event_id, match_id, board, at, tuple(entries)
