"""Mode around's deltas: whatever moves, the window the server keeps (and the one a client
rebuilds from the deltas it is sent) equals the true window, or the server asks for a snapshot."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.gateway.feed import RankFeed, Subscriber
from streams.events import RankChange

ME = "me"


def change(pid: str, old: int | None, new: int, version: int) -> RankChange:
    return RankChange(version, "all", pid, old, new, None, 0, 0, "set", "e", "m", 0, 0, 0, 0)


def true_window(order: list[str], n: int) -> tuple[list[str], int]:
    rank = order.index(ME) + 1
    lo = max(1, rank - n)
    return order[lo - 1 : rank + n], lo


def client_apply(
    rows: list[str], base: int, changes: list[dict[str, Any]], n: int
) -> tuple[list[str], int]:
    """The client's steps, as docs/gateway.md gives them."""
    for c in changes:
        if c["participant_id"] in rows:
            rows.remove(c["participant_id"])
        elif c["old_rank"] is not None and c["old_rank"] < base:
            base -= 1
        if c["new_rank"] < base:
            base += 1
        elif c["new_rank"] <= base + len(rows):
            rows.insert(c["new_rank"] - base, c["participant_id"])
        rank = base + rows.index(ME)
        lo = max(1, rank - n)
        rows, base = rows[lo - base : rank + n - base + 1], lo
    return rows, base


moves = st.lists(
    st.tuples(st.integers(0, 40), st.integers(1, 40), st.booleans()), min_size=1, max_size=60
)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 25), n=st.integers(1, 4), ops=moves)
def test_the_window_is_always_exact_or_resynced(
    size: int, n: int, ops: list[tuple[int, int, bool]]
) -> None:
    order = [f"p{i}" for i in range(size)]
    order.insert(size // 2, ME)
    sub = Subscriber("b", "around", n=n, participant_id=ME)

    def resync() -> None:
        sub.window, sub.base = true_window(order, n)
        sub.rank = order.index(ME) + 1
        sub.count = len(order)

    resync()
    client, cbase = list(sub.window), sub.base
    deltas = snapshots = 0
    for version, (who, to, newcomer) in enumerate(ops, 1):
        if newcomer:
            pid, old = f"new{version}", None
        else:
            pid = order[who % len(order)]
            old = order.index(pid) + 1
            order.remove(pid)
        new = min(to, len(order) + 1)
        order.insert(new - 1, pid)
        sub.pending.clear()
        ok = RankFeed._around_change(sub, change(pid, old, new, version))
        if not ok:
            snapshots += 1
            resync()
            client, cbase = list(sub.window), sub.base
            continue
        assert (sub.window, sub.base) == true_window(order, n)
        assert sub.rank == order.index(ME) + 1
        if sub.pending:
            deltas += 1
            client, cbase = client_apply(client, cbase, sub.pending, n)
        assert (client, cbase) == (sub.window, sub.base)
    assert deltas + snapshots <= len(ops)


def test_moves_that_keep_the_window_rows_are_deltas_a_pull_from_outside_is_not() -> None:
    sub = Subscriber("b", "around", n=1, participant_id="p4")
    sub.window, sub.base, sub.rank, sub.count = ["p3", "p4", "p5"], 4, 5, 10
    # p8 jumps from 9 to 1: the rows keep their order, one rank lower
    assert RankFeed._around_change(sub, change("p8", 9, 1, 1))
    assert [c["participant_id"] for c in sub.pending] == ["p8"]
    assert (sub.window, sub.base, sub.rank) == (["p3", "p4", "p5"], 5, 6)
    # p0 (rank 2, above) drops to the bottom: the same rows, one rank higher
    assert RankFeed._around_change(sub, change("p0", 2, 10, 2))
    assert (sub.window, sub.base, sub.rank) == (["p3", "p4", "p5"], 4, 5)
    # a move below the window sends nothing
    sub.pending.clear()
    assert RankFeed._around_change(sub, change("p7", 8, 9, 3))
    assert sub.pending == []
    # p3 (in the window, above) drops to the bottom: p2, never sent, enters the window
    assert not RankFeed._around_change(sub, change("p3", 4, 10, 4))
