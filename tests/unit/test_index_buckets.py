"""The participant index's bucket names: the bulk loader's and the apply script's must agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from projections.keys import (
    INDEX_BUCKETS,
    INDEX_DIGITS,
    INDEX_VALUE_WIDTH,
    BoardKeys,
    event_bucket,
    event_key,
    index_bucket,
    index_member,
    index_prefix,
    index_value,
)
from streams import rules
from streams.rules import TIEBREAK_WIDTH


@given(st.lists(st.text(min_size=1, max_size=40), unique=True, max_size=60))
def test_index_fields_files_each_participant_in_its_bucket(ids: list[str]) -> None:
    """Every (participant, prefix) pair lands in ``index_bucket``'s hash, once, in input order."""
    keys = BoardKeys("b")
    members = [(pid, f"{i:0{TIEBREAK_WIDTH}d}{pid}") for i, pid in enumerate(ids)]
    want: dict[str, list[str | bytes]] = {}
    for pid, member in members:
        stored = index_value(member[:TIEBREAK_WIDTH])
        want.setdefault(keys.index("all", pid), []).extend((pid, stored))
    assert keys.index_fields("all", members) == want


def test_bucket_names_are_the_index_keys() -> None:
    names = BoardKeys("b").index_keys("all")
    assert len(set(names)) == INDEX_BUCKETS
    seen = {index_bucket(f"u{i}") for i in range(100_000)}
    assert all(len(b) == INDEX_DIGITS for b in seen)
    assert {n.rsplit(":", 1)[1] for n in names} == seen  # 100,000 ids reach all 4,096


@given(
    st.integers(rules.MIN_EVENT_MS, rules.MAX_EVENT_MS - 1),
    st.integers(0, 2**50 - 1),
    st.integers(0, 9_999),
    st.text(min_size=1, max_size=20),
)
def test_the_index_keeps_a_prefix_in_14_bytes_and_gives_it_back(
    at: int, offset: int, index: int, pid: str
) -> None:
    """index_value packs the 18 digits into 14 bytes; index_member rebuilds the member."""
    member = rules.member(at, offset, index, pid)
    stored = index_value(member[:TIEBREAK_WIDTH])
    assert len(stored) == INDEX_VALUE_WIDTH
    assert index_prefix(stored) == member[:TIEBREAK_WIDTH]
    assert index_member(stored, pid) == member


@given(st.lists(st.tuples(st.text(min_size=1), st.integers(0, 10 * rules.DEDUP_DAY_MS))))
def test_event_fields_file_each_id_under_its_day_and_bucket(pairs: list[tuple[str, int]]) -> None:
    """Every remembered id lands in the bucket of its day that the apply script looks in."""
    keys = BoardKeys("b")
    out = keys.event_fields(pairs)
    for eid, at in pairs:
        name = keys.event_ids(rules.dedup_day(at), event_bucket(event_key(eid)))
        assert event_key(eid) in out[name][::2]
    assert sum(len(f) for f in out.values()) == 2 * len(pairs)
