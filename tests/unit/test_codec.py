"""Avro codec: round trips, schema evolution both ways, property tests and bad bytes."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.bootstrap import faust_codec, get_codec
from processors.kafka.registry import ConfluentCodec
from streams.codec import (
    SCHEMA_DIR,
    SINGLE_OBJECT_MARKER,
    SchemaStore,
    SingleObjectCodec,
    crc64_fingerprint,
    match_from_avro,
    scores_from_avro,
)
from streams.errors import DecodeError
from streams.events import (
    EVENT_TYPES,
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    NotificationKind,
    Operator,
    ParticipantNotified,
    ParticipantProfileUpdated,
    PeriodClosed,
    RankChange,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    ScoresSubmitted,
    ScoreSubmission,
    SortOrder,
)
from streams.settings import Settings

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
MILLIS = st.integers(min_value=0, max_value=253_402_300_799_999)
TEXT = st.text(max_size=20)
META = st.dictionaries(TEXT, TEXT, max_size=3)


@pytest.fixture(scope="module")
def codec() -> SingleObjectCodec:
    return SingleObjectCodec()


def match(**kw: Any) -> MatchResultSubmitted:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "match_id": "m-1",
        "leaderboard_id": "board-1",
        "occurred_at": 1_700_000_000_123,
        "entries": (
            ScoreEntry("alice", 2**53 - 1, Operator.INCR, {"country": "fr"}),
            ScoreEntry("bob", -(2**63)),
        ),
    }
    base.update(kw)
    return MatchResultSubmitted(**base)


def samples() -> list[Any]:
    return [
        match(),
        LeaderboardConfigured("b", SortOrder.ASC, Operator.SET, ResetPeriod.WEEKLY, 1, 2, 3, 10),
        LeaderboardConfigured("b", status=BoardStatus.CLOSED, closed_at=5, metadata={"t": "x"}),
        RankChanged(
            "b",
            3,
            3,
            (RankChange(3, "all", "p", None, 1, None, 5, 5, "best", "e", "m", 0, 7, 2, 99),),
            ("2025-01",),
        ),
        ParticipantNotified("b", "all", "p", NotificationKind.OVERTAKEN, 2, 7, "q", 0, 3),
        PeriodClosed("b", "2025-01", 10, "ab" * 32, 42),
        ParticipantProfileUpdated("p", 1_700_000_000_123),
        ParticipantProfileUpdated(
            "team/ann", 1, "Ann ✓", "https://x.test/a.png", "FR", {"clan": "red"}, "player"
        ),
    ]


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_round_trip_every_event_type(codec: SingleObjectCodec, event: Any) -> None:
    data = codec.encode(event)
    assert data[:2] == SINGLE_OBJECT_MARKER
    assert data[2:10] == codec.store.reader(event.SCHEMA).fingerprint
    assert codec.decode(data) == event
    assert codec.decode_as(data, type(event)) == event


def test_every_event_type_has_a_current_schema(codec: SingleObjectCodec) -> None:
    assert set(EVENT_TYPES) <= set(codec.store.current)


def test_fingerprint_matches_the_avro_spec() -> None:
    # Avro spec / Java SchemaNormalization: fingerprint64("null") = 0x63dd24e7cc258f8a.
    assert crc64_fingerprint("null") == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_timestamps_decode_as_exact_int_millis(codec: SingleObjectCodec) -> None:
    event = codec.decode(codec.encode(match(occurred_at=1_700_000_000_999)))
    assert isinstance(event, MatchResultSubmitted)
    assert event.occurred_at == 1_700_000_000_999
    assert type(event.occurred_at) is int


def test_decode_as_wrong_type(codec: SingleObjectCodec) -> None:
    with pytest.raises(DecodeError, match="expected LeaderboardConfigured, got Match"):
        codec.decode_as(codec.encode(match()), LeaderboardConfigured)


# --- evolution ----------------------------------------------------------------------------


def _old_match_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (SCHEMA_DIR / "history" / "MatchResultSubmitted.v1.avsc").read_text()
    )
    return data


def test_old_writer_new_reader_fills_the_new_optional_field(codec: SingleObjectCodec) -> None:
    """A v1 record (no entry metadata) decodes with the current schema's default ({})."""
    old = _old_match_schema()
    parsed = codec.store.parse_writer(old, "test")
    assert parsed.fingerprint in codec.store.by_fingerprint  # history/ is loaded
    body = io.BytesIO()
    record = {
        "event_id": "e-old",
        "match_id": "m",
        "leaderboard_id": "b",
        "occurred_at": 1_600_000_000_000,
        "entries": [{"participant_id": "p", "score": 7, "operator": "best"}],
    }
    schemaless_writer(body, parsed.parsed, record)
    data = SINGLE_OBJECT_MARKER + parsed.fingerprint + body.getvalue()
    event = codec.decode(data)
    assert event == MatchResultSubmitted(
        "e-old", "m", "b", 1_600_000_000_000, (ScoreEntry("p", 7, Operator.BEST, {}),)
    )


def test_old_board_config_gets_default_status(codec: SingleObjectCodec) -> None:
    old = json.loads((SCHEMA_DIR / "history" / "LeaderboardConfigured.v1.avsc").read_text())
    parsed = codec.store.parse_writer(old, "test")
    body = io.BytesIO()
    cfg = LeaderboardConfigured("b", configured_at=5).to_avro()
    del cfg["status"], cfg["closed_at"]
    schemaless_writer(body, parsed.parsed, cfg)
    event = codec.decode(SINGLE_OBJECT_MARKER + parsed.fingerprint + body.getvalue())
    assert event == LeaderboardConfigured("b", configured_at=5)


def test_new_writer_old_reader_ignores_the_new_field(tmp_path: Path) -> None:
    """An old consumer (v1 current, v2 known as a writer) reads new records, dropping metadata."""
    (tmp_path / "history").mkdir()
    shutil.copy(
        SCHEMA_DIR / "history" / "MatchResultSubmitted.v1.avsc",
        tmp_path / "MatchResultSubmitted.avsc",
    )
    shutil.copy(SCHEMA_DIR / "MatchResultSubmitted.avsc", tmp_path / "history" / "v2.avsc")
    old_reader = SingleObjectCodec(SchemaStore(tmp_path))
    new_writer = SingleObjectCodec()
    data = new_writer.encode(match())
    event = old_reader.decode(data)
    assert isinstance(event, MatchResultSubmitted)
    assert [(e.participant_id, e.score, e.operator, e.metadata) for e in event.entries] == [
        ("alice", 2**53 - 1, Operator.INCR, {}),
        ("bob", -(2**63), None, {}),
    ]
    # ...and the old writer's records are read back by the old reader itself.
    assert old_reader.decode(old_reader.encode(event)) == event


def test_history_schema_without_current_is_refused(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    shutil.copy(SCHEMA_DIR / "PeriodClosed.avsc", tmp_path / "history" / "x.avsc")
    with pytest.raises(Exception, match="no current schema"):
        SchemaStore(tmp_path)


# --- bad bytes ----------------------------------------------------------------------------


def test_random_bytes_are_not_single_object(codec: SingleObjectCodec) -> None:
    with pytest.raises(DecodeError, match="not an Avro single-object record"):
        codec.decode(os.urandom(64).replace(b"\xc3", b"x"))
    with pytest.raises(DecodeError, match="not an Avro single-object record"):
        codec.decode(b"")
    with pytest.raises(DecodeError, match="not an Avro single-object record"):
        codec.decode(b'{"leaderboard_id": "b"}')


def test_unknown_fingerprint(codec: SingleObjectCodec) -> None:
    data = SINGLE_OBJECT_MARKER + (0x0123456789ABCDEF).to_bytes(8, "little") + b"\x00"
    with pytest.raises(DecodeError, match="unknown schema fingerprint 0x0123456789abcdef"):
        codec.decode(data)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_body(codec: SingleObjectCodec, cut: int) -> None:
    data = codec.encode(match())
    with pytest.raises(DecodeError, match="truncated or malformed Avro body"):
        codec.decode(data[:-cut])


def test_trailing_garbage(codec: SingleObjectCodec) -> None:
    with pytest.raises(DecodeError, match="3 trailing bytes"):
        codec.decode(codec.encode(match()) + b"xyz")


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_after_a_known_header_decode_or_raise_decode_error(
    codec: SingleObjectCodec, tail: bytes
) -> None:
    header = SINGLE_OBJECT_MARKER + codec.store.reader(MatchResultSubmitted.SCHEMA).fingerprint
    try:
        event = codec.decode(header + tail)
    except DecodeError:
        return
    assert isinstance(event, MatchResultSubmitted)


# --- property tests -----------------------------------------------------------------------

ENTRIES = st.builds(
    ScoreEntry,
    participant_id=TEXT,
    score=LONG,
    operator=st.none() | st.sampled_from(Operator),
    metadata=META,
)
MATCHES = st.builds(
    MatchResultSubmitted,
    event_id=TEXT,
    match_id=TEXT,
    leaderboard_id=TEXT,
    occurred_at=MILLIS,
    entries=st.lists(ENTRIES, min_size=1, max_size=8).map(tuple),
)
CONFIGS = st.builds(
    LeaderboardConfigured,
    leaderboard_id=TEXT,
    sort_order=st.sampled_from(SortOrder),
    operator=st.sampled_from(Operator),
    reset_period=st.sampled_from(ResetPeriod),
    configured_at=MILLIS,
    starts_at=st.none() | MILLIS,
    ends_at=st.none() | MILLIS,
    watch_top_n=st.integers(0, 2**31 - 1),
    metadata=META,
    status=st.sampled_from(BoardStatus),
    closed_at=st.none() | MILLIS,
)
NOTICES = st.builds(
    ParticipantNotified,
    leaderboard_id=TEXT,
    period=TEXT,
    participant_id=TEXT,
    kind=st.sampled_from(NotificationKind),
    rank=LONG,
    version=LONG,
    by_participant_id=st.none() | TEXT,
    top_n=st.integers(0, 2**31 - 1),
    omitted=st.integers(0, 2**31 - 1),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(MATCHES, CONFIGS, NOTICES))
def test_property_round_trip(codec: SingleObjectCodec, event: Any) -> None:
    assert codec.decode(codec.encode(event)) == event


# --- Confluent wire format ----------------------------------------------------------------


def test_confluent_mock_registry_round_trip() -> None:
    codec = get_codec(Settings(schema_registry_url="mock://codec-test"))
    assert isinstance(codec, ConfluentCodec)
    data = codec.encode(match())
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert schema_id == codec.schema_id(MatchResultSubmitted.SCHEMA)
    assert codec.decode(data) == match()
    # A fresh codec on the same registry resolves the writer through the registry.
    other = ConfluentCodec(codec.client)
    assert other.decode(data) == match()
    # Single-object records stay readable during a migration.
    assert codec.decode(SingleObjectCodec().encode(match())) == match()


def test_confluent_unknown_id_and_garbage() -> None:
    codec = get_codec(Settings(schema_registry_url="mock://codec-test-2"))
    with pytest.raises(DecodeError, match="unknown schema id 999"):
        codec.decode(b"\x00" + (999).to_bytes(4, "big") + b"\x00")
    with pytest.raises(DecodeError, match="not a Confluent"):
        codec.decode(b"\x07garbage")


def test_get_codec_default_is_single_object() -> None:
    assert isinstance(get_codec(Settings()), SingleObjectCodec)


def test_faust_codec_wraps_the_codec(codec: SingleObjectCodec) -> None:
    fc = faust_codec(codec)
    data = fc.dumps(match())
    assert fc.loads(data) == match()


@given(
    st.lists(
        st.tuples(
            st.text(max_size=8),
            LONG,
            st.sampled_from([None, *Operator]),
            st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_lean_match_decode_equals_from_avro(rows: list[Any]) -> None:
    """The positional build of a decoded match equals ``from_avro``, with fresh metadata."""
    event = match(entries=tuple(ScoreEntry(*r) for r in rows))
    codec = SingleObjectCodec()
    data = codec.encode(event)
    decoded = codec.decode(data)
    assert decoded == event == MatchResultSubmitted.from_avro(event.to_avro())
    record = event.to_avro()
    lean = match_from_avro(record)
    assert lean == event
    assert all(a.metadata is not b for a, b in zip(lean.entries, decoded.entries, strict=True))


@given(
    st.lists(
        st.tuples(
            st.text(max_size=8),
            st.text(max_size=8),
            MILLIS,
            st.text(max_size=8),
            LONG,
            st.sampled_from([None, *Operator]),
            st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_lean_scores_decode_equals_from_avro(rows: list[Any]) -> None:
    """The positional build of decoded coalesced submissions equals ``from_avro``."""
    event = ScoresSubmitted("board", tuple(ScoreSubmission(*r) for r in rows))
    codec = SingleObjectCodec()
    decoded = codec.decode(codec.encode(event))
    assert decoded == event == ScoresSubmitted.from_avro(event.to_avro())
    assert scores_from_avro(event.to_avro()) == event
