"""The apply scripts' reply decoder (projections/results.py), without Redis."""

from __future__ import annotations

import msgpack

from projections.results import (
    ChangeRow,
    NoticeRow,
    RecordResult,
    decode,
    to_change,
    to_changes,
    to_notice,
)
from projections.store import SourceRecord
from streams.events import (
    MatchResultSubmitted,
    NotificationKind,
    ParticipantNotified,
    RankChange,
    ScoreEntry,
)

#: One call's reply as the script packs it: one msgpack blob per record, ``false`` for none.
RECORDS = [
    [
        7,
        [[0, "all", "p1", False, 3, False, 10, 41, "incr", 10]],
        [["entered_top_n", "all", "p1", 3, False, 41, 5, 0]],
        [[1, "score 9007199254740992 would leave the exact range |score| < 2^53"]],
        False,
        [["2026-11-01", 41]],
    ],
    [8, [], [], [], "duplicate event id e1", []],
    [9, [[0, "all", "p2", 2, False, 5, 7, 42, "set", 7, 4, 3]], [], [], False, []],
    # submission 3 of a coalesced record: the script names its position (offset:index)
    [10, [[3, "all", "p3", False, 1, False, 5, 43, "best", 5]], [], [], False, [], "10:3"],
]
REPLY = [msgpack.packb(r) for r in RECORDS]


def test_decode_unpacks_each_record_and_reads_false_as_none() -> None:
    got = decode(REPLY)
    assert got[0] == RecordResult(
        7,
        [ChangeRow(0, "all", "p1", None, 3, None, 10, 41, "incr", 10)],
        [tuple(NoticeRow("entered_top_n", "all", "p1", 3, None, 41, 5, 0))],
        [(1, "score 9007199254740992 would leave the exact range |score| < 2^53")],
        None,
        [("2026-11-01", 41)],
        "7",  # a result stored without a position: its offset
    )
    assert got[3].position == "10:3" and got[3].offset == 10
    assert got[3].changes[0].entry_index == 3
    assert got[1].refused == "duplicate event id e1" and got[1].changes == []
    assert got[2].changes[0].band_before == 4 and got[2].changes[0].band_after == 3
    assert got[2].changes[0].new_rank is None and got[2].changes[0].old_rank == 2
    assert got[0].changes[0].band_before == 0  # a plain board sends no band sizes


def test_rows_to_events() -> None:
    ev = MatchResultSubmitted("e1", "m1", "b", 1_000, (ScoreEntry("p1", 10),))
    rec = SourceRecord(2, 7, ev)
    res = decode(REPLY)[0]
    change = to_change(rec, res.changes[0])
    assert (change.version, change.old_rank, change.new_rank, change.new_score) == (41, None, 3, 10)
    assert (change.event_id, change.source_partition, change.source_offset) == ("e1", 2, 7)
    note = to_notice("b", res.notices[0])
    assert note.kind is NotificationKind.ENTERED_TOP_N and note.by_participant_id is None


def test_rows_to_events_field_by_field() -> None:
    """Every field lands where it belongs (the rows are turned into events positionally)."""
    ev = MatchResultSubmitted("e1", "m1", "b", 900, (ScoreEntry("p1", 10),))
    rec = SourceRecord(2, 7, ev, 1_000)
    row = ChangeRow(4, "2026-11", "p1", 6, 3, 8, 12, 41, "incr", 9)
    assert to_changes(rec, [row, row._replace(new_rank=None)]) == [
        RankChange(
            version=41,
            period="2026-11",
            participant_id="p1",
            old_rank=6,
            new_rank=3,
            old_score=8,
            new_score=12,
            submitted_score=9,
            operator="incr",
            event_id="e1",
            match_id="m1",
            entry_index=4,
            occurred_at=1_000,
            source_partition=2,
            source_offset=7,
            claimed_at=900,
        ),
        RankChange(41, "2026-11", "p1", 6, 0, 8, 12, 9, "incr", "e1", "m1", 4, 1_000, 2, 7, 900),
    ]
    notice = NoticeRow("overtaken", "all", "p2", 3, "p1", 17, 5, 2)
    assert to_notice("b", notice) == ParticipantNotified(
        leaderboard_id="b",
        period="all",
        participant_id="p2",
        kind=NotificationKind.OVERTAKEN,
        rank=3,
        by_participant_id="p1",
        version=17,
        top_n=5,
        omitted=2,
    )


def test_an_overtaken_row_names_its_passed_members_and_becomes_a_row_each() -> None:
    """The script answers one ``overtaken`` row per change (the passed participants' members,
    the first one's rank, the count left out); the decoder makes the rows the notices are:
    one per passed participant, ids cut from the members, ranks counted up, the last row
    carrying ``omitted``. A row stored in the one-per-participant form decodes as before."""
    prefix = "5Vl40g--------Cc--"
    result = [
        11,
        [[0, "all", "p9", 7, 2, 5, 50, 44, "best", 50]],
        [
            ["overtaken", "all", [prefix + "p4", prefix + "p5", prefix + "p6"], 3, "p9", 44, 0, 2],
            ["entered_top_n", "all", "p9", 2, False, 44, 3, 0],
            ["left_top_n", "all", "p6", 4, "p9", 44, 3, 0],
        ],
        [],
        False,
        [],
    ]
    stored = [12, [], [["overtaken", "all", "p1", 2, "p2", 45, 0, 1]], [], False, []]
    first, second = decode([msgpack.packb(result), msgpack.packb(stored)])
    assert [NoticeRow(*n) for n in first.notices] == [
        NoticeRow("overtaken", "all", "p4", 3, "p9", 44, 0, 0),
        NoticeRow("overtaken", "all", "p5", 4, "p9", 44, 0, 0),
        NoticeRow("overtaken", "all", "p6", 5, "p9", 44, 0, 2),
        NoticeRow("entered_top_n", "all", "p9", 2, None, 44, 3, 0),
        NoticeRow("left_top_n", "all", "p6", 4, "p9", 44, 3, 0),
    ]
    assert [NoticeRow(*n) for n in second.notices] == [
        NoticeRow("overtaken", "all", "p1", 2, "p2", 45, 0, 1)
    ]
