"""Output records written straight from the apply script's rows are the events' bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.workers import projector
from processors.workers.projector import output_events, output_records
from projections.results import ChangeRow, NoticeRow, RecordResult
from projections.store import BoardOutcome, SourceRecord
from streams import avro_out
from streams.codec import SingleObjectCodec
from streams.events import (
    MatchResultSubmitted,
    NotificationKind,
    Operator,
    ParticipantsNotified,
    RankChanged,
)

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
UNICODE = st.sampled_from(["p-1", "ü-€-𝄞", "", "名前", "a" * 9000, "x\x00y"])
IDS = UNICODE | TEXT
PERIODS = st.sampled_from(["all", "2026-11", "2026-W48", "2026-11-27"]) | TEXT
# both sides of the varint table (zig-zag values below 2^14) and of every varint length
BOUNDS = st.sampled_from(
    [0, 1, -1, 63, -64, 64, 8191, -8192, 8192, 2**20, -(2**20) - 1, 2**53, -(2**53)]
)
EXTREMES = st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63)])
LONG = st.integers(-(2**63), 2**63 - 1) | BOUNDS | EXTREMES
SMALL = st.integers(0, 20_000) | BOUNDS
INT = st.integers(-(2**31), 2**31 - 1) | BOUNDS
OPERATORS = st.sampled_from([str(op) for op in Operator] + ["match_voided", "removed"]) | TEXT
KINDS = st.sampled_from([k.value for k in NotificationKind])

change_rows = st.builds(
    ChangeRow,
    entry_index=st.integers(0, 3) | INT,
    period=PERIODS,
    participant_id=IDS,
    old_rank=st.none() | SMALL | LONG,
    new_rank=st.none() | SMALL | LONG,  # None: outside a range shard's band, written as 0
    old_score=st.none() | LONG,
    new_score=LONG,
    version=SMALL | LONG,
    operator=OPERATORS,
    submitted=LONG,
)
notice_rows = st.builds(
    NoticeRow,
    kind=KINDS,
    period=PERIODS,
    participant_id=IDS,
    rank=SMALL | LONG,
    by_participant_id=st.none() | IDS,
    version=SMALL | LONG,
    top_n=st.sampled_from([0, 10, 100]) | INT,
    omitted=st.sampled_from([0, 1]) | INT,
)


@st.composite
def results(draw: st.DrawFn) -> tuple[SourceRecord, RecordResult]:
    """One source record (any time, claimed or not, coalesced or not) and its result rows."""
    occurred = draw(st.sampled_from([1_764_000_000_000]) | LONG)
    at = draw(st.none() | st.just(occurred) | LONG)  # None: its claimed time ranks it
    event = MatchResultSubmitted(draw(IDS), draw(IDS), "b", occurred, ())
    offset = draw(st.integers(0, 2**40) | st.sampled_from([0, 2**63 - 1]))
    rec = SourceRecord(draw(st.integers(0, 2**31 - 1)), offset, event, at, None, None)
    res = RecordResult(
        offset,
        draw(st.lists(change_rows, max_size=5)),
        draw(st.lists(notice_rows, max_size=5)),
        [],
        None,
        [],
    )
    return rec, res


CODEC = SingleObjectCodec()


def _compare(board: str, pending: list[tuple[SourceRecord, RecordResult]], ended: list) -> None:
    out = BoardOutcome(board)
    for rec, res in pending:
        out.add_rows(rec, res)
    out.periods_ended = ended
    rows = out.pending
    assert rows is not None
    direct = output_records(board, rows, ended)
    headers = {
        True: CODEC.direct_header(RankChanged.SCHEMA),
        False: CODEC.direct_header(ParticipantsNotified.SCHEMA),
    }
    got = [headers[is_rank] + body for is_rank, body in direct.records]
    events = output_events(out)  # builds the RankChange and notice objects, as before
    assert got == [CODEC.encode(ev) for ev in events]
    assert direct.notices == len(out.notifications)
    assert [isinstance(ev, RankChanged) for ev in events] == [r for r, _ in direct.records]


@settings(max_examples=300, deadline=None)
@given(
    board=IDS,
    pending=st.lists(results(), max_size=6),
    ended=st.lists(st.tuples(PERIODS, SMALL | LONG), max_size=3),
)
def test_records_written_from_rows_are_the_events_bytes(
    board: str, pending: list[tuple[SourceRecord, RecordResult]], ended: list
) -> None:
    _compare(board, pending, ended)


@settings(max_examples=150, deadline=None)
@given(
    board=IDS,
    pending=st.lists(results(), min_size=1, max_size=6),
    ended=st.lists(st.tuples(PERIODS, SMALL), max_size=2),
)
def test_records_split_in_chunks_are_the_events_bytes(
    board: str,
    pending: list[tuple[SourceRecord, RecordResult]],
    ended: list,
) -> None:
    """Over ``RECORD_CHUNK`` changes or notices, both paths split at the same places."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(projector, "RECORD_CHUNK", 3)
        _compare(board, pending, ended)


def test_rows_are_read_in_the_results_order() -> None:
    """The writers read the rows by position: the decoder's fields in the same order."""
    assert ChangeRow._fields[: len(avro_out.CHANGE_ROW)] == avro_out.CHANGE_ROW
    assert NoticeRow._fields == avro_out.NOTICE_ROW


def test_an_unknown_notice_kind_is_a_clear_error() -> None:
    row = NoticeRow("promoted", "all", "p", 1, None, 3, 10, 0)
    with pytest.raises(ValueError, match="'promoted' is not a notification kind"):
        avro_out.notice_rows([], [], [row])


def test_an_empty_outcome_writes_nothing_and_a_period_end_alone_is_one_record() -> None:
    assert output_records("b", [], []).records == []
    (record,) = output_records("b", [], [("2026-11", 9)]).records
    assert record == (True, avro_out.encode_rank_changed(RankChanged("b", 9, 9, (), ("2026-11",))))


def test_a_codec_without_direct_writers_says_so() -> None:
    """A schema-registry codec (Confluent wire format) has no fixed header: events path."""
    from streams.codec import AvroCodec

    assert AvroCodec().direct_header(RankChanged.SCHEMA) is None
    assert CODEC.direct_header("io.leaderboard.events.MatchResultSubmitted") is None
