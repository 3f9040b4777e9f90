"""The ranking store contract: one set of cases every backend must pass unchanged.

``StoreContract`` is abstract (pytest does not collect it): a backend subclasses it as
``Test<Backend>`` and provides the ``store`` fixture (and ``shadow_of`` when it can swap).
tests/contract/test_memory_store.py runs it in memory; test_redis_store.py on the Redis single
node, on Redis Cluster and on sharded boards. A sharded board differs where sharding documents
it (projections/sharded.py): hash shards report batch-boundary ranks and rejections shard by
shard, and sharded boards notify only the mover of top-N moves; the flags below say so.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from projections.memory import MemoryStore
from projections.store import BoardOutcome, Entry, Rejection, SourceRecord
from streams import rules
from streams.errors import LeaderboardError
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    NotificationKind,
    Operator,
    ParticipantNotified,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.model import ModelBoard
from tests.contract.records import BASE, DAY, mark, random_records, rec

#: Overtaken-list bound every backend is built with (small, so ``omitted`` is exercised).
OVERTAKEN = 2
#: Period grace every backend is built with.
GRACE = DAY
#: Duplicate detection every backend is built with: small, so the random sequences move
#: the horizon both ways (by event time and by the id cap).
DEDUP = (4 * DAY, 40)

N = NotificationKind


def note(
    kind: NotificationKind,
    pid: str,
    rank: int,
    version: int,
    by: str | None = None,
    top_n: int = 2,
    omitted: int = 0,
) -> ParticipantNotified:
    """A notice of board ``board``, period ``all``."""
    return ParticipantNotified("board", "all", pid, kind, rank, version, by, top_n, omitted)


class StoreContract:
    """Cases of the store contract; subclasses provide the ``store`` fixture."""

    #: Per-change old/new ranks are exact (hash shards: ranks at batch boundaries).
    exact_ranks: bool = True
    #: Rejections come in the apply script's order (hash shards: shard by shard).
    ordered_rejections: bool = True
    #: The backend sends "all" the script's notices, or only the "mover"'s top-N moves.
    notices: str = "all"
    #: Text of the error a swap (``shadow_of``) must raise instead (sharded, Redis Cluster).
    swap_refused: str | None = None
    #: The store applies coalesced submissions at positions (offset, index).
    coalesced: bool = True
    #: Configuration metadata ``shards`` of every board (sharded backends).
    shards: str | None = None

    # ------------------------------------------------------------------ backend hooks
    @pytest.fixture
    def store(self) -> Any:
        """The store under test, empty, built with OVERTAKEN and GRACE."""
        raise NotImplementedError

    def shadow_of(self, store: Any) -> Any:
        """A second, empty store of the same backend (for swap_from)."""
        raise NotImplementedError

    def config(self, board: str = "board", **kw: Any) -> LeaderboardConfigured:
        """A board configuration for this backend (sharded backends add their layout)."""
        cfg = LeaderboardConfigured(board, **kw)
        if self.shards:
            cfg = replace(cfg, metadata={**cfg.metadata, "shards": self.shards})
        return cfg

    # ------------------------------------------------------------------ helpers
    async def one_by_one(
        self, store: Any, cfg: LeaderboardConfigured, records: list[SourceRecord]
    ) -> list[BoardOutcome]:
        """Apply each record in its own batch (so even hash shards report exact ranks)."""
        out = []
        for r in records:
            (got,) = await store.apply([(cfg, [r])])
            await store.acknowledge([got])
            out.append(got)
        return out

    def rejections(self, outcome: BoardOutcome) -> list[Rejection]:
        """The outcome's rejections, in order where the backend keeps the script's order."""
        if self.ordered_rejections:
            return list(outcome.rejections)
        return sorted(outcome.rejections, key=_rejection_key)

    def expected_notices(
        self, full: list[ParticipantNotified], outcome: BoardOutcome
    ) -> list[ParticipantNotified]:
        """What this backend notifies of ``full`` (the apply script's notices)."""
        if self.notices == "all":
            return full
        mover = {c.version: c.participant_id for c in outcome.changes}
        return [
            n
            for n in full
            if n.kind is not N.OVERTAKEN
            and n.by_participant_id is None
            and mover.get(n.version) == n.participant_id
        ]

    def assert_same_outcome(self, got: BoardOutcome, want: BoardOutcome) -> None:
        """``got`` is ``want`` (the reference's), up to what the backend documents."""
        assert got.board == want.board
        assert got.offsets == want.offsets
        assert got.periods_ended == want.periods_ended
        if self.exact_ranks:
            assert got.changes == want.changes
        else:
            assert list(map(_rankless, got.changes)) == list(map(_rankless, want.changes))
        assert self.rejections(got) == self.rejections(want)
        if self.exact_ranks:  # notices follow from the ranks
            assert got.notifications == self.expected_notices(want.notifications, want)

    # ------------------------------------------------------------------ the cases
    async def test_change_reports_old_and_new_rank_and_score(self, store: Any) -> None:
        cfg = self.config()
        outs = await self.one_by_one(
            store,
            cfg,
            [
                rec(0, "e0", BASE, ("a", 10)),
                rec(1, "e1", BASE + 1, ("b", 20)),
                rec(2, "e2", BASE + 2, ("c", 15)),
                rec(3, "e3", BASE + 3, ("a", 30)),
                rec(4, "e4", BASE + 4, ("c", 5)),  # best of 15 and 5: unchanged, still a change
            ],
        )
        got = [
            (c.version, c.participant_id, c.old_rank, c.new_rank, c.old_score, c.new_score)
            for o in outs
            for c in o.changes
        ]
        assert got == [
            (1, "a", None, 1, None, 10),
            (2, "b", None, 1, None, 20),
            (3, "c", None, 2, None, 15),
            (4, "a", 3, 1, 10, 30),
            (5, "c", 3, 3, 15, 15),
        ]
        last = outs[-1].changes[0]
        assert (last.submitted_score, last.operator, last.event_id, last.match_id) == (
            5,
            "best",
            "e4",
            "m",
        )
        assert (last.entry_index, last.occurred_at, last.source_partition, last.source_offset) == (
            0,
            BASE + 4,
            0,
            4,
        )
        assert [o.offsets for o in outs] == [[0], [1], [2], [3], [4]]
        assert await store.version("board") == 5

    @pytest.mark.parametrize("sort", [SortOrder.DESC, SortOrder.ASC])
    async def test_first_to_reach_a_score_ranks_higher(self, store: Any, sort: SortOrder) -> None:
        cfg = self.config(sort_order=sort)
        await self.one_by_one(
            store,
            cfg,
            [
                rec(3, "e3", BASE + 100, ("late", 7)),
                rec(5, "e5", BASE + 50, ("early", 7)),
                rec(9, "e9", BASE + 50, ("same-time", 7)),
                rec(10, "e10", BASE + 200, ("late", 7)),  # unchanged: keeps its time
                rec(11, "e11", BASE + 300, ("early", 7, Operator.SET)),  # same score: same place
            ],
        )
        rows = await store.standings("board", "all", sort)
        assert rows == [
            Entry(1, "early", 7),
            Entry(2, "same-time", 7),
            Entry(3, "late", 7),
        ]

    async def test_ties_in_a_match_of_the_schemas_largest_size(self, store: Any) -> None:
        """10,000 equal scores in one match (the schema's maximum): entry order decides, and
        every participant id comes back intact (the entry index never overflows its width)."""
        cfg = self.config(watch_top_n=0)
        entries = [(f"q{i}", 7) for i in range(10_000)]
        await store.apply([(cfg, [rec(2**40, "big", BASE, *entries)])])
        rows = await store.standings("board", "all", cfg.sort_order)
        assert [r.participant_id for r in rows] == [pid for pid, _ in entries]

    async def test_overtaken_and_top_n_notices(self, store: Any) -> None:
        cfg = self.config(watch_top_n=2)
        records = [
            rec(0, "e0", BASE, ("a", 10)),
            rec(1, "e1", BASE + 1, ("b", 20)),
            rec(2, "e2", BASE + 2, ("c", 5)),
            rec(3, "e3", BASE + 3, ("c", 25)),
            rec(4, "e4", BASE + 4, ("a", 30)),
            rec(5, "e5", BASE + 5, ("a", 1, Operator.SET)),
            rec(6, "e6", BASE + 6, ("d", 0)),
            rec(7, "e7", BASE + 7, ("d", 100)),
        ]
        outs = await self.one_by_one(store, cfg, records)
        full = [
            note(N.ENTERED_TOP_N, "a", 1, 1),
            note(N.ENTERED_TOP_N, "b", 1, 2),
            note(N.OVERTAKEN, "b", 2, 4, "c", 0),
            note(N.OVERTAKEN, "a", 3, 4, "c", 0),
            note(N.ENTERED_TOP_N, "c", 1, 4),
            note(N.LEFT_TOP_N, "a", 3, 4, "c"),
            note(N.OVERTAKEN, "c", 2, 5, "a", 0),
            note(N.OVERTAKEN, "b", 3, 5, "a", 0),
            note(N.ENTERED_TOP_N, "a", 1, 5),
            note(N.LEFT_TOP_N, "b", 3, 5, "a"),
            note(N.LEFT_TOP_N, "a", 3, 6),
            note(N.ENTERED_TOP_N, "b", 2, 6),
            note(N.OVERTAKEN, "c", 2, 8, "d", 0),
            note(N.OVERTAKEN, "b", 3, 8, "d", 0, omitted=1),  # passed 3, named OVERTAKEN
            note(N.ENTERED_TOP_N, "d", 1, 8),
            note(N.LEFT_TOP_N, "b", 3, 8, "d"),
        ]
        merged = BoardOutcome("board", changes=[c for o in outs for c in o.changes])
        want = self.expected_notices(full, merged)
        assert [n for o in outs for n in o.notifications] == want

    async def test_a_match_applies_whole_or_not_at_all(self, store: Any) -> None:
        """A match with a bad entry, or whose result would leave the exact range, changes
        nothing: no entry applied, no event id registered (the corrected resend applies)."""
        cfg = self.config(operator=Operator.INCR)
        batch = [
            rec(0, "e0", BASE, ("", 5), ("p", 2**53), ("q", 1)),
            rec(1, "e1", BASE + 1, ("q", 2**53 - 2)),
            rec(2, "e2", BASE + 2, ("r", 1), ("q", 5), ("s", 1)),
            rec(3, "e2", BASE + 3, ("r", 1)),  # the resend of the refused match
            rec(4, "e1", BASE + 4, ("t", 1)),  # a duplicate event id
            rec(5, "e5", BASE + 5, ("bad\tid", 1), ("x" * 129, 1)),
        ]
        (out,) = await store.apply([(cfg, batch)])
        # the script computes in doubles: 2^53 - 2 + 5 shows rounded to even
        overflow = "entries[1]: score 9007199254740996 would leave the exact range |score| < 2^53"
        want = [
            Rejection(
                0,
                0,
                "entries[0]: empty participant_id; "
                "entries[1]: score 9007199254740992 outside the exact range |score| < 2^53",
            ),
            Rejection(0, 2, overflow),
            Rejection(0, 4, "duplicate event id e1"),
            Rejection(
                0,
                5,
                "entries[0]: participant_id contains control characters; "
                "entries[1]: participant_id longer than 128 characters",
            ),
        ]
        assert self.rejections(out) == self.rejections(BoardOutcome("board", rejections=want))
        assert [(c.participant_id, c.new_score, c.version) for c in out.changes] == [
            ("q", 2**53 - 2, 1),
            ("r", 1, 2),
        ]
        assert out.offsets == [0, 1, 2, 3, 4, 5]

    async def test_a_period_never_opened_is_late_once_the_board_passed_it(self, store: Any) -> None:
        """No event of 2026-10-31 was ever applied; once the board's time is past its end plus
        the grace, an event for it is late all the same (it gets no "final" standings)."""
        cfg = self.config(reset_period=ResetPeriod.DAILY)
        outs = await self.one_by_one(
            store,
            cfg,
            [
                rec(0, "e0", BASE + GRACE + 5, ("a", 5)),  # 2026-11-02, past 10-31's end + grace
                rec(1, "e1", BASE - 1, ("b", 7)),  # 2026-10-31T23:59:59.999Z
                rec(2, "e2", BASE + GRACE - 1, ("c", 1)),  # 2026-11-01: still open
            ],
        )
        assert outs[1].rejections == [Rejection(0, 1, "period 2026-10-31 is closed: late event")]
        assert [c.participant_id for o in outs for c in o.changes] == ["a", "c"]
        assert sorted(await store.periods("board")) == ["2026-11-01", "2026-11-02"]

    async def test_duplicates_are_remembered_within_a_bounded_horizon(self, store: Any) -> None:
        """Ids are kept by day of event time (rules.dedup_forget): at least DEDUP's window, the
        horizon moving in whole days, and past the newest day at most DEDUP's count; a record
        older than the horizon is refused, since its duplicate could no longer be told."""
        window, cap = DEDUP
        cfg = self.config()
        older = "event time is older than the deduplication horizon {}: " + (
            "a duplicate of it could no longer be detected"
        )
        d4 = BASE + window  # the day the window ends on for ids of day 0
        recs = [rec(0, "e0", BASE, ("a", 1)), rec(1, "e1", d4 + DAY - 1, ("b", 1))]
        recs += [
            rec(2, "e0", d4 + DAY - 1, ("c", 1)),  # day 0 is still remembered: a duplicate
            rec(3, "e2", d4 + DAY, ("d", 1)),  # the board's time moves a day: day 0 forgotten
            rec(4, "e0", d4 + DAY + 1, ("e", 1)),  # e0 is forgotten: a new record
            rec(5, "e9", BASE + DAY - 1, ("f", 1)),  # older than the horizon (BASE + DAY)
        ]
        # the id cap: cap more ids a day later forget the older days whole, oldest first
        recs += [rec(6 + i, f"f{i}", d4 + 2 * DAY + i, (f"p{i}", 1)) for i in range(cap)]
        recs += [
            rec(6 + cap, "e2", d4 + DAY, ("g", 1)),  # its day was forgotten: too old
            rec(7 + cap, "f0", d4 + 2 * DAY + cap, ("h", 1)),  # the newest day is all kept
        ]
        outs = await self.one_by_one(store, cfg, recs)
        reasons = [[r.reason for r in o.rejections] for o in outs]
        assert reasons[2] == ["duplicate event id e0"]
        assert [c.participant_id for c in outs[4].changes] == ["e"]
        assert reasons[5] == [older.format(BASE + DAY)]
        assert all(not r for r in reasons[6 : 6 + cap])
        assert reasons[6 + cap] == [older.format(d4 + 2 * DAY)]
        assert reasons[7 + cap] == ["duplicate event id f0"]

    async def test_the_dedup_horizon_moves_inside_one_batch_as_record_by_record(
        self, store: Any
    ) -> None:
        """The records of the test above in ONE batch: ids registered earlier in the batch are
        duplicates, a day forgotten inside the batch takes its ids along, as one by one."""
        window, cap = DEDUP
        cfg = self.config()
        older = "event time is older than the deduplication horizon {}: " + (
            "a duplicate of it could no longer be detected"
        )
        d4 = BASE + window
        recs = [rec(0, "e0", BASE, ("a", 1)), rec(1, "e1", d4 + DAY - 1, ("b", 1))]
        recs += [
            rec(2, "e0", d4 + DAY - 1, ("c", 1)),
            rec(3, "e2", d4 + DAY, ("d", 1)),
            rec(4, "e0", d4 + DAY + 1, ("e", 1)),
            rec(5, "e9", BASE + DAY - 1, ("f", 1)),
        ]
        recs += [rec(6 + i, f"f{i}", d4 + 2 * DAY + i, (f"p{i}", 1)) for i in range(cap)]
        recs += [
            rec(6 + cap, "e2", d4 + DAY, ("g", 1)),
            rec(7 + cap, "f0", d4 + 2 * DAY + cap, ("h", 1)),
        ]
        (out,) = await store.apply([(cfg, recs)])
        assert {r.offset: r.reason for r in out.rejections} == {
            2: "duplicate event id e0",
            5: older.format(BASE + DAY),
            6 + cap: older.format(d4 + 2 * DAY),
            7 + cap: "duplicate event id f0",
        }
        assert "e" in {c.participant_id for c in out.changes}

    async def test_ids_of_an_earlier_batch_meet_a_day_forgotten_inside_the_next(
        self, store: Any
    ) -> None:
        """The records above in two batches: ids remembered by the first are duplicates in
        the second until a record of the second forgets their day; then they are new (the
        script reads a batch's remembered ids before applying any of its records)."""
        window = DEDUP[0]
        cfg = self.config()
        d4 = BASE + window
        first = [rec(0, "e0", BASE, ("a", 1)), rec(1, "e1", d4 + DAY - 1, ("b", 1))]
        second = [
            rec(2, "e0", d4 + DAY - 1, ("c", 1)),  # remembered by the first batch: a duplicate
            rec(3, "e1", d4 + DAY - 1, ("c", 2)),  # a duplicate too
            rec(4, "e2", d4 + DAY, ("d", 1)),  # forgets day 0 (e0), keeps e1's day
            rec(5, "e0", d4 + DAY + 1, ("e", 1)),  # e0 is forgotten: a new record
            rec(6, "e1", d4 + DAY + 2, ("f", 1)),  # e1 is still remembered
            rec(7, "e0", d4 + DAY + 3, ("g", 1)),  # e0 again: registered by offset 5
        ]
        (out1,) = await store.apply([(cfg, first)])
        assert not out1.rejections
        (out2,) = await store.apply([(cfg, second)])
        assert {r.offset: r.reason for r in out2.rejections} == {
            2: "duplicate event id e0",
            3: "duplicate event id e1",
            6: "duplicate event id e1",
            7: "duplicate event id e0",
        }
        assert [c.participant_id for c in out2.changes] == ["d", "e"]

    async def test_the_ranking_time_breaks_ties_not_the_claim(self, store: Any) -> None:
        """Records rank by their ranking time (the broker's, on log-time boards): a claim
        backdated before an equal score's does not outrank it, and is kept as information."""
        cfg = self.config()
        first = rec(0, "e0", BASE + 10, ("a", 5))
        backdated = SourceRecord(
            0,
            1,
            MatchResultSubmitted("e1", "m", "board", BASE - 3_600_000, (ScoreEntry("b", 5),)),
            BASE + 20,
        )
        outs = await self.one_by_one(store, cfg, [first, backdated])
        assert await store.standings("board", "all", SortOrder.DESC) == [
            Entry(1, "a", 5),
            Entry(2, "b", 5),
        ]
        (change,) = outs[1].changes
        assert (change.occurred_at, change.claimed_at) == (BASE + 20, BASE - 3_600_000)
        assert outs[0].changes[0].claimed_at is None

    async def test_clock_marks_end_periods_and_windows_without_scores(self, store: Any) -> None:
        """A clock mark moves the board's time: the period (or tournament window) it passes
        ends at the current version, with no score after it; a record for it is then late."""
        if self.shards:
            pytest.skip("clock marks move unsharded boards only (Projector._clocked_boards)")
        hour = 3_600_000
        daily = self.config(reset_period=ResetPeriod.DAILY)
        outs = await self.one_by_one(
            store,
            daily,
            [
                rec(0, "e0", BASE + hour, ("a", 5)),
                mark(1, BASE + DAY + GRACE - 1),  # 2026-11-01 is still open
                mark(2, BASE + DAY + GRACE),
                rec(3, "e3", BASE + 2 * hour, ("b", 7)),
            ],
        )
        assert [o.periods_ended for o in outs] == [[], [], [("2026-11-01", 1)], []]
        assert [o.offsets for o in outs] == [[0], [1], [2], [3]]
        assert outs[3].rejections == [Rejection(0, 3, "period 2026-11-01 is closed: late event")]
        assert await store.version("board") == 1

        window = self.config("cup", starts_at=BASE, ends_at=BASE + 2 * hour)
        outs = await self.one_by_one(
            store,
            window,
            [
                rec(0, "c0", BASE + hour, ("a", 5), board="cup"),
                mark(1, BASE + 2 * hour + GRACE, board="cup"),
            ],
        )
        assert outs[1].periods_ended == [("all", 1)]
        assert await store.standings("cup", "all", SortOrder.DESC) == [Entry(1, "a", 5)]

        # a close ends the open periods at its time: an all-time board's "all", and today's
        # period of a daily board before the day is over
        for board, reset, period in (
            ("solo", ResetPeriod.NONE, "all"),
            ("day", ResetPeriod.DAILY, "2026-11-01"),
        ):
            cfg = self.config(board, reset_period=reset)
            await self.one_by_one(store, cfg, [rec(0, "s0", BASE + hour, ("a", 5), board=board)])
            closed = replace(cfg, status=BoardStatus.CLOSED, closed_at=BASE + 2 * hour)
            outs = await self.one_by_one(
                store,
                closed,
                [
                    mark(1, BASE + 2 * hour + GRACE - 1, board),
                    mark(2, BASE + 2 * hour + GRACE, board),
                ],
            )
            assert [o.periods_ended for o in outs] == [[], [(period, 1)]], board

    async def test_periods_end_on_event_time_and_refuse_late_events(self, store: Any) -> None:
        cfg = self.config(reset_period=ResetPeriod.DAILY)
        hour = 3_600_000
        outs = await self.one_by_one(
            store,
            cfg,
            [
                rec(0, "e0", BASE + hour, ("a", 5)),
                rec(1, "e1", BASE + DAY + hour, ("b", 7)),
                rec(2, "e2", BASE + 2 * DAY + hour, ("c", 1)),  # ends 2026-11-01 (grace 1 day)
                rec(3, "e3", BASE + hour + 5, ("d", 9)),  # late for 2026-11-01
                rec(4, "e4", BASE + DAY + 5, ("a", 3)),  # 2026-11-02 is still open
                rec(5, "e3", BASE + 2 * DAY + 2 * hour, ("c", 2)),  # a late record's id is free
            ],
        )
        assert [o.periods_ended for o in outs] == [[], [], [("2026-11-01", 3)], [], [], []]
        assert outs[3].rejections == [Rejection(0, 3, "period 2026-11-01 is closed: late event")]
        assert outs[3].changes == [] and outs[3].offsets == [3]
        assert [c.version for o in outs for c in o.changes] == [1, 2, 3, 4, 5]
        assert [c.period for o in outs for c in o.changes] == [
            "2026-11-01",
            "2026-11-02",
            "2026-11-03",
            "2026-11-02",
            "2026-11-03",
        ]
        assert await store.periods("board") == ["2026-11-01", "2026-11-02", "2026-11-03"]
        assert await store.standings("board", "2026-11-02", SortOrder.DESC) == [
            Entry(1, "b", 7),
            Entry(2, "a", 3),
        ]
        assert await store.standings("board", "2026-11-03", SortOrder.DESC) == [Entry(1, "c", 2)]

    async def test_redelivery_is_idempotent_per_board_and_partition(self, store: Any) -> None:
        cfg = self.config()
        first = [rec(o, f"e{o}", BASE + o, (f"p{o}", o)) for o in range(3)]
        (out,) = await store.apply([(cfg, first)])
        (again,) = await store.apply([(cfg, first)])
        assert [c.version for c in again.changes] == [c.version for c in out.changes] == [1, 2, 3]
        assert again.offsets == out.offsets == [0, 1, 2]
        if self.exact_ranks:
            assert again.changes == out.changes
        await store.acknowledge([out])
        (after_ack,) = await store.apply([(cfg, first)])
        assert after_ack.changes == [] and after_ack.offsets == []
        # a batch overlapping the watermark applies only what is new
        (overlap,) = await store.apply([(cfg, [*first[1:], rec(3, "e3", BASE + 3, ("p3", 3))])])
        assert [c.version for c in overlap.changes] == [4] and overlap.offsets == [3]
        assert await store.watermark("board", 0) == 3
        assert await store.watermark("board", 1) == -1
        # another partition has its own watermark
        other = [rec(o, f"f{o}", BASE + 10 + o, (f"q{o}", o), partition=1) for o in range(2)]
        (out1,) = await store.apply([(cfg, other)])
        assert [c.version for c in out1.changes] == [5, 6]
        assert [c.source_partition for c in out1.changes] == [1, 1]
        assert await store.watermark("board", 1) == 1
        assert await store.version("board") == 6
        assert await store.count("board", "all") == 6

    async def test_submissions_of_a_coalesced_record_stand_on_their_own(self, store: Any) -> None:
        """Submission i of the record at offset o is a one-entry record at position (o, i):
        its own event id, refusal and outbox result; ties inside the record go by index."""
        if not self.coalesced:
            pytest.skip("sharded boards take no coalesced records (docs/scaling.md)")
        cfg = self.config()

        def sub(offset: int, index: int, eid: str, pid: str, score: int) -> SourceRecord:
            one = rec(offset, eid, BASE + offset, (pid, score))
            return SourceRecord(one.partition, offset, one.event, one.at, index=index)

        first = [sub(0, 0, "e0", "zed", 5), sub(0, 1, "e1", "amy", 5), sub(0, 2, "e0", "bob", 9)]
        (out,) = await store.apply([(cfg, first)])
        assert [(c.participant_id, c.entry_index, c.version) for c in out.changes] == [
            ("zed", 0, 1),
            ("amy", 1, 2),
        ]
        assert [(r.offset, r.index, r.reason) for r in out.rejections] == [
            (0, 2, "duplicate event id e0")
        ]
        assert out.positions == ["0:0", "0:1", "0:2"] and out.offsets == [0, 0, 0]
        # zed's submission came first in the record: it wins the tie against amy
        top = await store.top("board", "all", cfg.sort_order, limit=3)
        assert [e.participant_id for e in top] == ["zed", "amy"]
        # redelivered: every submission finds its own stored result, nothing changes
        (again,) = await store.apply([(cfg, first)])
        assert again.changes == out.changes and again.positions == out.positions
        assert [(r.index, r.reason) for r in again.rejections] == [(2, "duplicate event id e0")]
        await store.acknowledge([out])
        (after_ack,) = await store.apply([(cfg, first)])
        assert after_ack.changes == [] and after_ack.positions == []
        assert await store.watermark("board", 0) == 0 and await store.version("board") == 2

    async def test_two_boards_in_one_apply(self, store: Any) -> None:
        x, y = self.config("x"), self.config("y", sort_order=SortOrder.ASC)
        outs = await store.apply(
            [
                (x, [rec(0, "e0", BASE, ("a", 1), ("b", 2), board="x")]),
                (y, [rec(1, "e1", BASE, ("a", 1), ("b", 2), board="y")]),
            ]
        )
        assert [o.board for o in outs] == ["x", "y"]
        assert [(c.participant_id, c.new_rank) for c in outs[1].changes] == [("a", 1), ("b", 2)]
        assert await store.standings("x", "all", SortOrder.DESC) == [
            Entry(1, "b", 2),
            Entry(2, "a", 1),
        ]
        assert await store.version("x") == await store.version("y") == 2

    async def test_reads(self, store: Any) -> None:
        cfg = self.config()
        await self.one_by_one(
            store,
            cfg,
            [
                rec(0, "e0", BASE, ("a", 10)),
                rec(1, "e1", BASE, ScoreEntry("b", 20, metadata={"team": "red"})),
                rec(2, "e2", BASE + 1, ("c", 10), ("d", 5)),
                rec(3, "e3", BASE + 2, ("e", 30)),
            ],
        )
        d = SortOrder.DESC
        assert await store.standings("board", "all", d) == [
            Entry(1, "e", 30),
            Entry(2, "b", 20),
            Entry(3, "a", 10),
            Entry(4, "c", 10),
            Entry(5, "d", 5),
        ]
        assert await store.top("board", "all", d, limit=2, offset=1) == [
            Entry(2, "b", 20),
            Entry(3, "a", 10),
        ]
        assert await store.top("board", "all", d) == await store.standings("board", "all", d)
        assert await store.top("board", "all", d, limit=0) == []
        assert await store.top("board", "all", d, limit=3, offset=10) == []
        assert await store.top("board", "2026-11", d) == []
        assert await store.rank("board", "all", d, "c") == Entry(4, "c", 10)
        assert await store.rank("board", "all", d, "nobody") is None
        assert await store.ranks("board", "all", d, ["d", "nobody", "e"]) == [
            Entry(5, "d", 5),
            None,
            Entry(1, "e", 30),
        ]
        assert await store.ranks("board", "all", d, []) == []
        assert [e.participant_id for e in await store.around("board", "all", d, "a", 1)] == [
            "b",
            "a",
            "c",
        ]
        assert [e.rank for e in await store.around("board", "all", d, "e", 1)] == [1, 2]
        assert await store.around("board", "all", d, "nobody") == []
        assert await store.count("board", "all") == 5
        assert await store.count("board", "2026-11") == 0
        rows = await store.standings("board", "all", d)
        want = rules.standings_checksum((e.rank, e.participant_id, e.score) for e in rows)
        assert await store.checksum("board", "all", d) == (want, 5)
        assert await store.version("board") == 5
        assert await store.version("unknown") == 0
        assert await store.periods("board") == ["all"]
        assert await store.periods("unknown") == []
        assert await store.metadata("board", ["b", "a"]) == {"b": {"team": "red"}}
        assert await store.metadata("board", []) == {}

    async def test_clear_forgets_the_board(self, store: Any) -> None:
        cfg = self.config()
        await self.one_by_one(store, cfg, [rec(0, "e0", BASE, ("a", 1), ("b", 2))])
        assert await store.clear("board") > 0
        assert await store.periods("board") == []
        assert await store.version("board") == 0
        assert await store.watermark("board", 0) == -1
        (out,) = await store.apply([(cfg, [rec(0, "e0", BASE, ("a", 1))])])
        assert [c.version for c in out.changes] == [1]

    async def test_swap_in_a_rebuilt_shadow(self, store: Any) -> None:
        cfg = self.config(reset_period=ResetPeriod.MONTHLY)
        records = random_records(random.Random(7), "board", 60)
        shadow = self.shadow_of(store)
        await store.apply([(cfg, records[:40])])
        await shadow.apply([(cfg, records[:30])])
        if self.swap_refused:
            with pytest.raises(LeaderboardError, match=self.swap_refused):
                await store.swap_from(shadow, "board", 0)
            return
        assert not await store.swap_from(shadow, "board", 0)  # the shadow lags
        await shadow.apply([(cfg, records[30:])])
        periods = await shadow.periods("board")
        want = {p: await shadow.standings("board", p, SortOrder.DESC) for p in periods}
        version = await shadow.version("board")
        assert await store.swap_from(shadow, "board", 0)
        assert await shadow.board_keys("board") == []
        assert await store.version("board") == version
        assert await store.watermark("board", 0) == 59
        assert await store.periods("board") == periods
        for period, rows in want.items():
            assert await store.standings("board", period, SortOrder.DESC) == rows
        # results the live worker published already are dropped, later ones wait for it
        (again,) = await store.apply([(cfg, records[35:])])
        assert again.offsets == list(range(40, 60))

    @pytest.mark.parametrize("sort", [SortOrder.DESC, SortOrder.ASC])
    @pytest.mark.parametrize(
        "reset,operator,timing",
        [
            (ResetPeriod.NONE, Operator.BEST, ""),
            (ResetPeriod.MONTHLY, Operator.INCR, ""),
            (ResetPeriod.DAILY, Operator.SET, ""),
            (ResetPeriod.WEEKLY, Operator.BEST, ""),
            (ResetPeriod.NONE, Operator.BEST, "window"),
            (ResetPeriod.DAILY, Operator.DECR, "window"),
            (ResetPeriod.WEEKLY, Operator.INCR, "closed"),
            (ResetPeriod.NONE, Operator.SET, "closed"),
        ],
    )
    async def test_random_sequences_match_the_model(
        self, store: Any, sort: SortOrder, reset: ResetPeriod, operator: Operator, timing: str
    ) -> None:
        """Random chunks with redelivery: every outcome is the model's, and so is the state.

        ``timing`` adds a tournament window (its end closes the periods) or a closing in the
        middle of the sequence (every open period ends at the cut).
        """
        rng = random.Random(f"{sort}{reset}{operator}{timing}")
        times: dict[str, Any] = {
            "": {},
            "window": {"starts_at": BASE + 5 * DAY, "ends_at": BASE + 15 * DAY},
            "closed": {"status": BoardStatus.CLOSED, "closed_at": BASE + 10 * DAY},
        }[timing]
        cfg = self.config(
            sort_order=sort, operator=operator, reset_period=reset, watch_top_n=3, **times
        )
        records = random_records(rng, "board", 400, marks=self.shards is None)
        model = ModelBoard(cfg, grace_ms=GRACE, dedup=DEDUP)
        # the projector refuses outside the window and after the closing before the store
        # (rules.reject_reason): the stores get the rest, the model judges every record
        early = sum(
            bool(r.event.event_id and rules.reject_reason(cfg, r.event, r.at)) for r in records
        )
        passed = [
            r
            for r in records
            if not r.event.event_id or not rules.reject_reason(cfg, r.event, r.at)
        ]
        rejected_model = sum(
            bool(model.apply(r.offset, r.event, r.at))
            if r.event.event_id
            else bool(model.tick(r.offset, r.time).rejections)
            for r in records
        )
        reference = MemoryStore(overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP)
        rejected = 0
        i = 0
        while i < len(passed):
            chunk = passed[i : i + rng.randint(1, 50)]
            (out,) = await store.apply([(cfg, chunk)])
            (want,) = await reference.apply([(cfg, chunk)])
            self.assert_same_outcome(out, want)
            (again,) = await store.apply([(cfg, chunk)])  # redelivery: the stored results
            assert [c.version for c in again.changes] == [c.version for c in out.changes]
            if self.exact_ranks:
                self.assert_same_outcome(again, want)
            await store.acknowledge([out])
            await reference.acknowledge([want])
            assert (await store.apply([(cfg, chunk)]))[0].changes == []
            rejected += len({r.offset for r in out.rejections})
            i += len(chunk)
        periods = await store.periods("board")
        assert set(periods) == set(model.scores)
        for period in periods:
            rows = await store.standings("board", period, sort)
            assert [(e.rank, e.participant_id, e.score) for e in rows] == model.standings(period)
        assert await store.version("board") == model.version
        assert rejected + early == rejected_model
        if timing:
            assert early  # the window or the closing refused some


def _rankless(change: Any) -> Any:
    return replace(change, old_rank=None, new_rank=0)


def _rejection_key(r: Rejection) -> tuple[int, int, int, str]:
    return (r.partition, r.offset, -1 if r.entry_index is None else r.entry_index, r.reason)
