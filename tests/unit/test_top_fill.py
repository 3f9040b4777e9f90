"""Mode top under churn: rows leave the top n and the delta carries the rows that enter (its
``fill``), so the rows a client rebuilds from deltas always equal the true top n."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.gateway.feed import _FILL_FROM, RankFeed, Subscriber, _View
from streams.events import RankChange


def change(pid: str, old: int | None, new: int, version: int) -> RankChange:
    return RankChange(version, "all", pid, old, new, None, 0, 0, "set", "e", "m", 0, 0, 0, 0)


def client_apply(rows: list[str], msg: dict[str, Any], n: int) -> list[str]:
    """The client's steps, as docs/gateway.md gives them (and static/board.js does)."""
    for c in msg["changes"]:
        if c["participant_id"] in rows:
            rows.remove(c["participant_id"])
        if c["new_rank"] <= n and c["new_rank"] <= len(rows) + 1:
            rows.insert(c["new_rank"] - 1, c["participant_id"])
        del rows[n:]
    for row in msg.get("fill", []):
        assert row["rank"] == len(rows) + 1, (row, rows)
        rows.append(row["participant_id"])
    return rows


def flush(sub: Subscriber, order: list[str]) -> dict[str, Any] | None:
    """Emit ``sub``'s pending delta as the feed does; fill it from the true order (as the
    sender's read of Redis at the delta's version does)."""
    feed = RankFeed.__new__(RankFeed)  # _emit touches the subscriber and the board map only
    feed.boards = {}  # a subscriber on its own (no shared view)
    feed._emit(sub)
    if sub.queue.empty():
        return None
    msg: dict[str, Any] = sub.queue.get_nowait()
    if _FILL_FROM in msg:
        start = msg.pop(_FILL_FROM)
        msg["fill"] = [
            {"rank": r, "participant_id": p} for r, p in enumerate(order[start - 1 : sub.n], start)
        ]
    return msg


batches = st.lists(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 40), st.booleans()), min_size=1, max_size=6
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 20), n=st.integers(1, 8), ops=batches)
def test_top_rows_rebuilt_from_deltas_and_fills_are_exact(
    size: int, n: int, ops: list[list[tuple[int, int, bool]]]
) -> None:
    order = [f"p{i}" for i in range(size)]
    sub = Subscriber("b", "top", n=n)
    sub.held, sub.syncing = n, False
    client = order[:n]
    version = 0
    for batch in ops:
        for who, to, newcomer in batch:
            version += 1
            if newcomer or not order:
                pid, old = f"new{version}", None
            else:
                pid = order[who % len(order)]
                old = order.index(pid) + 1
                order.remove(pid)
            new = min(to, len(order) + 1)
            order.insert(new - 1, pid)
            assert RankFeed._top_change(sub, change(pid, old, new, version))
            sub.version = version
        msg = flush(sub, order)
        if msg is not None:
            client = client_apply(client, msg, n)
        assert client == order[:n]
        assert sub.held == n


def test_a_leader_falling_out_sends_a_delta_with_the_row_that_enters() -> None:
    sub = Subscriber("b", "top", n=2)
    sub.held, sub.syncing = 2, False
    order = ["s2", "s1", "s0", "s3"]  # s3 had rank 1 and fell to 4
    assert RankFeed._top_change(sub, change("s3", 1, 4, 5))
    sub.version = 5
    msg = flush(sub, order)
    assert msg is not None and msg["type"] == "delta"
    assert [c["participant_id"] for c in msg["changes"]] == ["s3"]
    assert msg["fill"] == [{"rank": 2, "participant_id": "s1"}]
    assert client_apply(["s3", "s2"], msg, 2) == ["s2", "s1"]


def test_moves_inside_the_top_need_no_fill() -> None:
    sub = Subscriber("b", "top", n=3)
    sub.held, sub.syncing = 3, False
    assert RankFeed._top_change(sub, change("c", 3, 1, 1))  # a swap inside the top 3
    assert RankFeed._top_change(sub, change("x", None, 2, 2))  # a newcomer pushes row 3 out
    msg = flush(sub, ["c", "x", "a", "b"])
    assert msg is not None and "fill" not in msg
    assert client_apply(["a", "b", "c"], msg, 3) == ["c", "x", "a"]


def test_a_view_busy_sending_cuts_the_changes_of_its_wait_as_one_delta() -> None:
    """While a view's pump sends a frame, its lead keeps what arrives; once the pump is idle
    it cuts one delta with all of it (with a fill when rows left), not a queue of deltas."""
    feed = RankFeed.__new__(RankFeed)
    feed.boards = {}
    lead = Subscriber("b", "top", n=2, queue_size=8)
    lead.held, lead.syncing = 2, False
    view = _View(lead)
    lead.leads = view
    view.busy = True  # the pump is sending a frame
    assert RankFeed._top_change(lead, change("a", None, 1, 1))  # a enters: x drops out
    lead.version = 1
    feed._emit(lead)
    assert lead.queue.empty() and view.deferred
    assert RankFeed._top_change(lead, change("b", 1, 4, 2))  # b falls out: a row is missing
    lead.version = 2
    feed._emit(lead)
    assert lead.queue.empty()
    view.busy = False  # what the pump does once its queue is empty
    feed._emit(lead)
    out = lead.queue.get_nowait()
    assert lead.queue.empty()
    msg = dict(out.item)
    assert msg["version"] == 2
    assert [c["participant_id"] for c in msg["changes"]] == ["a", "b"]
    order = ["a", "x", "y", "b"]
    start = msg.pop(_FILL_FROM)
    msg["fill"] = [
        {"rank": r, "participant_id": p} for r, p in enumerate(order[start - 1 : 2], start)
    ]
    assert client_apply(["b", "x"], msg, 2) == order[:2]
