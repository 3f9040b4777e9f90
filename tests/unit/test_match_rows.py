"""``codec.match_rows``: the hand decode of a match equals the codec's, bytes for bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codec import (
    SINGLE_OBJECT_MARKER,
    SO_HEADER_SIZE,
    SingleObjectCodec,
    match_fingerprint,
    match_rows,
)
from streams.errors import DecodeError
from streams.events import LeaderboardConfigured, MatchResultSubmitted, Operator, ScoreEntry

CODEC = SingleObjectCodec()
FP = match_fingerprint(CODEC.store)
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=80)
ENTRY = st.builds(
    ScoreEntry,
    TEXT,
    LONG,
    st.sampled_from([None, *Operator]),
    st.dictionaries(st.text(max_size=5), st.text(max_size=70), max_size=3),
)
MATCH = st.builds(
    MatchResultSubmitted, TEXT, TEXT, TEXT, LONG, st.lists(ENTRY, max_size=70).map(tuple)
)


def rows_of(ev: MatchResultSubmitted) -> Any:
    """What ``match_rows`` must return for ``ev``."""
    return (
        ev.event_id,
        ev.match_id,
        ev.leaderboard_id,
        ev.occurred_at,
        tuple((e.participant_id, e.score, e.operator, e.metadata or None) for e in ev.entries),
    )


def test_the_fingerprint_is_the_current_schemas() -> None:
    assert FP == CODEC.encode(MatchResultSubmitted("e", "m", "b", 1, ()))[2:SO_HEADER_SIZE]


@settings(max_examples=300)
@given(MATCH)
def test_a_match_decodes_as_the_codec_decodes_it(ev: MatchResultSubmitted) -> None:
    data = CODEC.encode(ev)
    assert match_rows(data, FP) == rows_of(CODEC.decode(data)) == rows_of(ev)


@settings(max_examples=1000)
@given(MATCH, st.data())
def test_damaged_bytes_are_left_to_the_codec_or_decode_as_it(
    ev: MatchResultSubmitted, data: Any
) -> None:
    """A cut, a changed byte or an inserted one: what ``match_rows`` decodes (it may leave
    odd bytes to the codec) the codec decodes too, to the same values."""
    raw = CODEC.encode(ev)
    at = data.draw(st.integers(SO_HEADER_SIZE, len(raw)))
    how = data.draw(st.sampled_from(["cut", "flip", "extra"]))
    if how == "cut":
        bad = raw[:at]
    elif how == "extra":
        bad = raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at:]
    else:
        at = min(at, len(raw) - 1)
        bad = raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1 :]
    got = match_rows(bad, FP)
    if got is not None:
        assert got == rows_of(CODEC.decode(bad))


def test_truncated_and_trailing_bytes_are_left_to_the_codec() -> None:
    raw = CODEC.encode(MatchResultSubmitted("e", "m", "b", 1, (ScoreEntry("p", 5),)))
    for bad in (raw[:-1], raw + b"\x00", raw[:-3] + b"\x07" + raw[-2:]):
        assert match_rows(bad, FP) is None
        with pytest.raises(DecodeError):
            CODEC.decode(bad)


def test_blocks_with_byte_counts_decode() -> None:
    """Arrays and maps may come in blocks of a negative count followed by their size."""
    ev = MatchResultSubmitted(
        "e", "m", "b", 7, (ScoreEntry("p", 3, Operator.INCR, {"k": "v"}), ScoreEntry("q", -1))
    )
    head = CODEC.encode(MatchResultSubmitted("e", "m", "b", 7, ()))[:-1]  # without the end
    e1 = b"\x02p\x06\x02\x04" + b"\x01\x08" + b"\x02k\x02v" + b"\x00"  # map block of -1, 4 bytes
    e2 = b"\x02q\x01\x00\x00"
    data = head + b"\x03" + bytes([2 * (len(e1) + len(e2))]) + e1 + e2 + b"\x00"
    assert rows_of(CODEC.decode(data)) == rows_of(ev) == match_rows(data, FP)


@pytest.mark.parametrize(
    "data",
    [
        CODEC.encode(LeaderboardConfigured("b", configured_at=1)),
        b"\x00\x00\x00\x00\x01" + CODEC.encode(MatchResultSubmitted("e", "m", "b", 1, ()))[10:],
        SINGLE_OBJECT_MARKER + bytes(8) + b"\x02e",
    ],
    ids=["other type", "not single-object", "unknown schema"],
)
def test_other_records_are_left_to_the_codec(data: bytes) -> None:
    assert match_rows(data, FP) is None


def test_nothing_is_decoded_without_the_fingerprint() -> None:
    assert match_rows(CODEC.encode(MatchResultSubmitted("e", "m", "b", 1, ())), b"") is None
