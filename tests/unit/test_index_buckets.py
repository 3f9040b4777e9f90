"""The participant index's bucket names: the bulk loader's and the apply script's must agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from projections.keys import INDEX_BUCKETS, INDEX_DIGITS, BoardKeys, index_bucket
from streams.rules import TIEBREAK_WIDTH


@given(st.lists(st.text(min_size=1, max_size=40), unique=True, max_size=60))
def test_index_fields_files_each_participant_in_its_bucket(ids: list[str]) -> None:
    """Every (participant, prefix) pair lands in ``index_bucket``'s hash, once, in input order."""
    keys = BoardKeys("b")
    members = [(pid, f"{i:0{TIEBREAK_WIDTH}d}{pid}") for i, pid in enumerate(ids)]
    want: dict[str, list[str]] = {}
    for pid, member in members:
        want.setdefault(keys.index("all", pid), []).extend((pid, member[:TIEBREAK_WIDTH]))
    assert keys.index_fields("all", members) == want


def test_bucket_names_are_the_index_keys() -> None:
    names = BoardKeys("b").index_keys("all")
    assert len(set(names)) == INDEX_BUCKETS
    seen = {index_bucket(f"u{i}") for i in range(100_000)}
    assert all(len(b) == INDEX_DIGITS for b in seen)
    assert {n.rsplit(":", 1)[1] for n in names} == seen  # 100,000 ids reach all 4,096
