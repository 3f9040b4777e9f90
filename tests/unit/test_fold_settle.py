"""The fold's one sort (``Standings.settle``) orders rows exactly as the sorted set does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.model import Standings

#: Few sort keys and short, close members: ties on the key are the rule, not the exception.
rows = st.dictionaries(
    st.text(alphabet="abc\u00e9\u4e16", min_size=1, max_size=4),
    st.tuples(st.integers(-3, 3), st.text(alphabet="0aZ~\u00e9", min_size=0, max_size=3)),
    max_size=60,
)


@given(rows)
def test_settle_orders_by_sort_key_then_member(members: dict[str, tuple[int, str]]) -> None:
    table = Standings()
    # members are unique in a period (the tie-break prefix, then the participant id)
    table.members = {pid: (key, pre + pid) for pid, (key, pre) in members.items()}
    table.settle()
    assert table.order == sorted(table.members.values())
    assert [table.rank(pid) for pid in table.members] == [
        sorted(table.members.values()).index(row) + 1 for row in table.members.values()
    ]
