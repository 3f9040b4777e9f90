"""The audit's fast decode of rank changes equals the codec's full decode, row for row."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.bootstrap import get_codec
from sinks.audit import OPERATORS, _month_span, audit_rows, months_of, stored_event_id
from sinks.audit_decode import AuditDecoder, RankChangedFields
from streams.codec import SCHEMA_DIR, SINGLE_OBJECT_MARKER, SingleObjectCodec
from streams.errors import DecodeError
from streams.events import PeriodClosed, RankChange, RankChanged
from streams.settings import Settings

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT = st.integers(min_value=-(2**31), max_value=2**31 - 1)
MILLIS = st.integers(min_value=0, max_value=253_402_300_799_999)
TEXT = st.text(max_size=12)
PERIODS = st.sampled_from(["all", "2026-11", "2026-W48", "2026-11-27"])

CHANGES = st.builds(
    RankChange,
    version=LONG,
    period=PERIODS,
    participant_id=TEXT,
    old_rank=st.none() | LONG,
    new_rank=LONG,
    old_score=st.none() | LONG,
    new_score=LONG,
    submitted_score=LONG,
    operator=st.sampled_from(OPERATORS),
    event_id=TEXT,
    match_id=TEXT,
    entry_index=INT,
    occurred_at=MILLIS,
    source_partition=INT,
    source_offset=LONG,
    claimed_at=st.none() | MILLIS,
)
EVENTS = st.builds(
    RankChanged,
    leaderboard_id=st.sampled_from(["b1", "b2", "board/ü"]),
    version_from=LONG,
    version_to=LONG,
    changes=st.lists(CHANGES, max_size=6).map(tuple),
    periods_ended=st.lists(PERIODS, max_size=2).map(tuple),
)
BOARD_IDS = {"b1": 1, "b2": 2, "board/ü": 3}
PERIOD_IDS = {"all": 1, "2026-11": 2, "2026-W48": 3, "2026-11-27": 4}


@pytest.fixture(scope="module")
def codec() -> SingleObjectCodec:
    return SingleObjectCodec()


def _summary(ev: RankChanged | RankChangedFields) -> tuple[Any, ...]:
    return ev.leaderboard_id, ev.version_from, ev.version_to, tuple(ev.periods_ended)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENTS, min_size=1, max_size=4))
def test_fast_decode_gives_the_rows_of_the_full_decode(
    codec: SingleObjectCodec, events: list[RankChanged]
) -> None:
    decoder = AuditDecoder(codec)
    fast: list[RankChanged | RankChangedFields] = []
    full: list[RankChanged | RankChangedFields] = []
    for ev in events:
        data = codec.encode(ev)
        got = decoder.decode(data)
        assert isinstance(got, RankChangedFields)  # the fast path took it
        fast.append(got)
        full.append(codec.decode_as(data, RankChanged))
        assert _summary(got) == _summary(ev)
        assert len(got.changes) == len(ev.changes)
    rows = audit_rows(full, BOARD_IDS, PERIOD_IDS)
    assert audit_rows(fast, BOARD_IDS, PERIOD_IDS) == rows
    assert len(rows) == sum(len(ev.changes) for ev in events)


def test_rows_name_board_period_and_operator_by_id() -> None:
    change = RankChange(3, "2026-11", "p", None, 1, None, 5, 5, "decr", "e", "m", 0, 7, 2, 99, 6)
    (row,) = audit_rows([RankChanged("b2", 3, 3, (change,))], BOARD_IDS, PERIOD_IDS)
    # times in µs since 2000-01-01 (timestamptz's binary form); "e" is no UUID: stored as text
    at, claimed = (7 - 946_684_800_000) * 1000, (6 - 946_684_800_000) * 1000
    assert row == (3, 5, 5, None, 99, at, claimed, 1, None, 2, 0, "p", None, "e", "m", 2, 2, 3)


def test_rows_store_a_canonical_uuid_as_bytes_and_an_equal_match_id_as_null() -> None:
    eid = "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012"
    change = RankChange(3, "2026-11", "p", 2, 1, 4, 5, 5, "set", eid, eid, 0, 7, 2, 99, None)
    (row,) = audit_rows([RankChanged("b1", 3, 3, (change,))], BOARD_IDS, PERIOD_IDS)
    assert row[12:15] == (bytes.fromhex(eid.replace("-", "")), None, None)
    assert row[6] is None  # no claimed time


@pytest.mark.parametrize(
    "event_id",
    [
        "0B8E6F4C-2F7A-4C1E-9D3B-5A6C7E8F9012",  # upper case: PostgreSQL prints lower case
        "0b8e6f4c2f7a4c1e9d3b5a6c7e8f9012",  # no hyphens
        "{0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012}",
        "0b8e6f4c-2f7a-4c1e-9d3b-5a6c7e8f9012\n",
        "e",
        "",
    ],
)
def test_other_event_ids_are_stored_as_text(event_id: str) -> None:
    assert stored_event_id(event_id) == (None, event_id)


def _old_rank_changed(codec: SingleObjectCodec) -> bytes:
    """A record written with the v1 RankChanged schema of schemas/history (no claimed_at)."""
    old = json.loads((SCHEMA_DIR / "history" / "RankChanged.v1.avsc").read_text())
    writer = codec.store.parse_writer(old, "test")
    assert writer.fingerprint in codec.store.by_fingerprint
    change = RankChange(3, "all", "p", None, 1, None, 5, 5, "best", "e", "m", 0, 7, 2, 99)
    body = io.BytesIO()
    schemaless_writer(body, writer.parsed, RankChanged("b1", 3, 3, (change,)).to_avro())
    return SINGLE_OBJECT_MARKER + writer.fingerprint + body.getvalue()


def test_older_writer_schema_takes_the_codec_path(codec: SingleObjectCodec) -> None:
    data = _old_rank_changed(codec)
    got = AuditDecoder(codec).decode(data)
    assert isinstance(got, RankChanged)
    assert got == codec.decode(data)


def test_confluent_wire_format_takes_the_codec_path() -> None:
    codec = get_codec(Settings(schema_registry_url="mock://audit-decode-test"))
    change = RankChange(3, "all", "p", 2, 1, 4, 5, 5, "set", "e", "m", 1, 7, 2, 99)
    data = codec.encode(RankChanged("b1", 3, 3, (change,)))
    got = AuditDecoder(codec).decode(data)
    assert isinstance(got, RankChanged)
    assert got.changes == (change,)


def test_other_events_come_back_as_they_are(codec: SingleObjectCodec) -> None:
    closed = PeriodClosed("b", "2025-01", 10, "ab" * 32, 42)
    assert AuditDecoder(codec).decode(codec.encode(closed)) == closed


@pytest.mark.parametrize("cut", [1, 5, 30])
def test_truncated_records_fail_as_in_the_codec(codec: SingleObjectCodec, cut: int) -> None:
    change = RankChange(3, "all", "p", None, 1, None, 5, 5, "best", "e", "m", 0, 7, 2, 99)
    data = codec.encode(RankChanged("b1", 3, 3, (change,)))[:-cut]
    with pytest.raises(DecodeError) as full:
        codec.decode(data)
    with pytest.raises(DecodeError) as fast:
        AuditDecoder(codec).decode(data)
    assert str(fast.value) == str(full.value)


def test_trailing_bytes_fail_as_in_the_codec(codec: SingleObjectCodec) -> None:
    change = RankChange(3, "all", "p", None, 1, None, 5, 5, "best", "e", "m", 0, 7, 2, 99)
    data = codec.encode(RankChanged("b1", 3, 3, (change,))) + b"\x00\x02"
    with pytest.raises(DecodeError) as full:
        codec.decode(data)
    with pytest.raises(DecodeError) as fast:
        AuditDecoder(codec).decode(data)
    assert str(fast.value) == str(full.value)
    assert "trailing" in str(fast.value)


@given(st.integers(min_value=0, max_value=253_399_622_399_999))  # to November 9999
def test_month_span_holds_the_month_of_every_time(t: int) -> None:
    """The writer skips the partition check when a batch lies inside one known month's span."""
    (year, month), _ = months_of([t])
    start, end = _month_span(year, month)
    assert start <= t < end
    assert months_of([start])[0] == months_of([end - 1])[0] == (year, month)
    assert months_of([end])[0] != (year, month)
