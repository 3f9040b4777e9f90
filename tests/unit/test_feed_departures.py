"""A participant leaving the standings (``new_rank`` 0: a moderator's removal, the void of its
only match) in each WebSocket mode: a delta when the client can apply it, else a snapshot."""

from __future__ import annotations

from processors.gateway.feed import RankFeed, Subscriber
from streams.events import RankChange


def gone(pid: str, old: int | None, version: int = 1) -> RankChange:
    return RankChange(
        version, "all", pid, old, 0, 7, 0, 0, "participant_removed", "e", "m", 0, 0, 0, 0
    )


def test_top_n_needs_a_snapshot_only_when_a_row_it_shows_leaves() -> None:
    sub = Subscriber("b", "top", n=10)
    assert not RankFeed._departure(sub, gone("a", 3))  # row 3 leaves: row 11 moves in
    assert not RankFeed._departure(sub, gone("a", 10))
    assert RankFeed._departure(sub, gone("a", 11))
    assert RankFeed._departure(sub, gone("a", None))
    assert sub.pending == []


def test_track_follows_its_own_departure_and_one_above_it() -> None:
    sub = Subscriber("b", "track", participant_id="me")
    sub.rank, sub.score = 5, 40
    assert RankFeed._departure(sub, gone("x", 2))  # above: me moves up one
    assert sub.rank == 4
    assert sub.pending[-1] == {
        "participant_id": "me",
        "old_rank": 5,
        "new_rank": 4,
        "old_score": 40,
        "new_score": 40,
        "period": "all",
        "version": 1,
        "by": "x",
    }
    assert RankFeed._departure(sub, gone("y", 9))  # below: nothing
    assert len(sub.pending) == 1 and sub.rank == 4
    assert RankFeed._departure(sub, gone("me", 4, version=2))
    assert sub.rank is None and sub.pending[-1]["new_rank"] == 0


def test_around_keeps_its_window_when_a_row_below_it_leaves() -> None:
    sub = Subscriber("b", "around", n=1, participant_id="p4")
    sub.window, sub.base, sub.rank, sub.count = ["p3", "p4", "p5"], 4, 5, 10
    assert RankFeed._departure(sub, gone("p9", 10))
    assert sub.count == 9 and (sub.window, sub.base) == (["p3", "p4", "p5"], 4)
    assert not RankFeed._departure(sub, gone("p5", 6))  # a row it holds
    assert not RankFeed._departure(sub, gone("p0", 1))  # above: every row shifts
