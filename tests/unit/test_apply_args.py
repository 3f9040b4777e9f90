"""The apply script's arguments: each entry's tie-break prefix and index bucket, and each
record's event key, computed in Python by the functions the model and the fold use (the
script computes none of them, lua/rules.lua)."""

from __future__ import annotations

import uuid

from projections.keys import BoardKeys, event_key, index_bucket
from projections.store import SourceRecord, apply_call, prepare_batch
from streams import rules
from streams.events import LeaderboardConfigured, MatchResultSubmitted, ScoreEntry

NOW = 1_790_000_000_000


def test_each_entry_carries_its_member_prefix_and_index_bucket() -> None:
    cfg = LeaderboardConfigured("b")
    entries = tuple(ScoreEntry(f"p{i}", i) for i in range(12))
    eid = str(uuid.uuid4())
    rec = SourceRecord(3, 987_654, MatchResultSubmitted(eid, "m", "b", NOW - 5, entries), NOW)
    # a coalesced submission past 4,096: its prefix is not the record base's plus a pair
    one = MatchResultSubmitted("x" * 20, "m", "b", NOW, (ScoreEntry("q", 1),))
    sub = SourceRecord(3, 987_655, one, NOW + 1, index=9_999)
    periods, prepared = prepare_batch(cfg, [rec, sub])
    got = [(e[0], e[1], e[5], e[6]) for item in prepared for e in item.entries]
    want = [
        (i, f"p{i}", rules.member(NOW, 987_654, i, ""), index_bucket(f"p{i}")) for i in range(12)
    ]
    want.append((9_999, "q", rules.member(NOW + 1, 987_655, 9_999, ""), index_bucket("q")))
    assert got == want
    _, args = apply_call(BoardKeys("b"), cfg, (0, 0), periods, prepared, 0, None)
    # position, event id, event key, ranking time of each record, in order
    first = args.index("987654")
    assert args[first : first + 4] == ["987654", eid, event_key(eid), NOW]
    second = args.index("987655:9999")
    assert args[second : second + 4] == ["987655:9999", "x" * 20, event_key("x" * 20), NOW + 1]


def test_submissions_of_one_record_and_the_next_records_get_their_own_prefixes() -> None:
    """The submissions of a coalesced record share its tie-break base; a record at the same
    time with another offset, or at another time with the same offset, gets its own."""
    cfg = LeaderboardConfigured("b")

    def sub(offset: int, at: int, index: int) -> SourceRecord:
        one = MatchResultSubmitted(str(uuid.uuid4()), "m", "b", at, (ScoreEntry(f"p{index}", 1),))
        return SourceRecord(0, offset, one, at, index=index)

    recs = [sub(7, NOW, 0), sub(7, NOW, 1), sub(8, NOW, 0), sub(8, NOW + 1, 1), sub(7, NOW, 2)]
    _, prepared = prepare_batch(cfg, recs)
    got = [item.entries[0][5] for item in prepared]
    assert got == [rules.member(r.time, r.offset, r.index or 0, "") for r in recs]
