"""The apply script's arguments: each entry's tie-break prefix, index bucket and index value,
and each record's event key and its bucket, computed in Python by the functions the model and
the fold use (the script computes none of them, lua/rules.lua)."""

from __future__ import annotations

import random
import uuid

from projections.keys import (
    PAIR_VALUES,
    BoardKeys,
    base_value,
    event_bucket,
    event_key,
    index_bucket,
    index_value,
)
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
    got = [(e[0], e[1], e[5], e[6], e[7]) for item in prepared for e in item.entries]
    want = []
    for i, pid, at, offset in [
        *((i, f"p{i}", NOW, 987_654) for i in range(12)),
        (9_999, "q", NOW + 1, 987_655),
    ]:
        pre = rules.member(at, offset, i, "")
        want.append((i, pid, pre, index_bucket(pid), index_value(pre)))
    assert got == want
    _, args = apply_call(BoardKeys("b"), cfg, (0, 0), periods, prepared, 0, None)
    # position, event id, event key, its bucket, ranking time of each record, in order
    first = args.index("987654")
    ek = event_key(eid)
    assert args[first : first + 5] == ["987654", eid, ek, event_bucket(ek), NOW]
    second = args.index("987655:9999")
    ek = event_key("x" * 20)
    assert args[second : second + 5] == ["987655:9999", "x" * 20, ek, event_bucket(ek), NOW + 1]


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


def test_a_record_base_value_and_an_entry_pair_value_make_the_index_value() -> None:
    """``base_value`` + ``PAIR_VALUES`` (what the apply sends per entry) equals
    ``index_value`` of the whole prefix for every entry index below 4096."""
    rng = random.Random(3)
    for _ in range(50):
        at, offset = rng.randrange(1 << 43), rng.randrange(1 << 50)
        base = rules.tiebreak_base(at, offset)
        for i in (0, 1, 63, 64, 4095, rng.randrange(4096)):
            assert base_value(base) + PAIR_VALUES[i] == index_value(rules.member(at, offset, i, ""))
