"""Contract cases of moderation and tournament limits: the apply script against the model.

Kept apart from ``StoreContract`` (the fold's cases): plain boards only, since moderation and
limits are refused on sharded boards before the apply. ``ModerationContract`` is mixed into the
memory and the Redis single-node / cluster test classes.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from projections.memory import MemoryStore
from projections.store import SourceRecord, moderation_carrier
from streams import rules
from streams.events import (
    LeaderboardConfigured,
    LeaderboardModerated,
    ModerationAction,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from tests.contract.records import BASE, DAY, rec
from tests.contract.store_contract import DEDUP, GRACE, OVERTAKEN

A = ModerationAction


def mod(
    offset: int,
    event_id: str,
    at: int,
    action: ModerationAction,
    target: str,
    *,
    board: str = "board",
    period: str | None = None,
) -> SourceRecord:
    """A moderation record as the projector hands it to a board."""
    void = action is A.MATCH_VOIDED
    event = LeaderboardModerated(
        event_id,
        board,
        action,
        "ops-key",
        "contract",
        at,
        participant_id=None if void else target,
        voided_event_id=target if void else None,
        period=period,
    )
    return SourceRecord(0, offset, moderation_carrier(event), at, moderation=event)


class ModerationContract:
    """Moderation and tournament-limit cases; the class using it provides ``store``."""

    async def _standings(self, store: Any, board: str, sort: SortOrder) -> list[Any]:
        rows = await store.standings(board, "all", sort)
        return [(e.rank, e.participant_id, e.score) for e in rows]

    @pytest.mark.parametrize(
        "operator,sort",
        [
            (Operator.INCR, SortOrder.DESC),
            (Operator.BEST, SortOrder.DESC),
            (Operator.BEST, SortOrder.ASC),
            (Operator.SET, SortOrder.DESC),
        ],
    )
    async def test_a_voided_match_is_as_if_it_never_applied(
        self, store: Any, operator: Operator, sort: SortOrder
    ) -> None:
        """Void the middle match: the standings (ties included) equal a board that never had
        it, while the later match keeps its own result."""
        matches = [
            ("m1", [("a", 10), ("b", 10), ("c", 7)]),
            ("m2", [("a", 50), ("c", 3), ("d", 9)]),  # the one voided
            ("m3", [("a", 20), ("b", 10), ("c", 1)]),
        ]
        voided = LeaderboardConfigured(
            "voided", sort_order=sort, operator=operator, retain_entries=True
        )
        clean = LeaderboardConfigured("clean", sort_order=sort, operator=operator)
        t = BASE + DAY
        recs = [rec(i, eid, t + i, *es, board="voided") for i, (eid, es) in enumerate(matches)]
        (out,) = await store.apply([(voided, recs)])
        assert not out.rejections
        (out,) = await store.apply(
            [(voided, [mod(3, "v1", t + 3, A.MATCH_VOIDED, "m2", board="voided")])]
        )
        assert not out.rejections
        assert {c.participant_id for c in out.changes} == {"a", "c", "d"}
        assert all(c.operator == "match_voided" and c.event_id == "v1" for c in out.changes)
        assert [c.new_rank for c in out.changes if c.participant_id == "d"] == [0]
        kept = [
            rec(i, eid, t + i, *es, board="clean")
            for i, (eid, es) in enumerate(matches)
            if eid != "m2"
        ]
        await store.apply([(clean, kept)])
        # the clean board's members carry other offsets: compare ranks and scores, and the tie
        # order of a and b (equal on incr/set: whoever reached it first ranks higher)
        assert await self._standings(store, "voided", sort) == await self._standings(
            store, "clean", sort
        )
        (again,) = await store.apply(
            [(voided, [mod(4, "v2", t + 4, A.MATCH_VOIDED, "m2", board="voided")])]
        )
        assert [r.reason for r in again.rejections] == [rules.unknown_match_reason("m2")]

    async def test_remove_ban_and_unban(self, store: Any) -> None:
        cfg = LeaderboardConfigured("board")
        t = BASE + DAY
        await store.apply([(cfg, [rec(0, "e0", t, ("a", 5), ("b", 9), ("c", 1))])])
        (out,) = await store.apply([(cfg, [mod(1, "r1", t + 1, A.PARTICIPANT_REMOVED, "b")])])
        (change,) = out.changes
        assert (change.old_rank, change.new_rank, change.old_score) == (1, 0, 9)
        assert await self._standings(store, "board", SortOrder.DESC) == [(1, "a", 5), (2, "c", 1)]
        (out,) = await store.apply([(cfg, [mod(2, "r2", t + 2, A.PARTICIPANT_REMOVED, "zz")])])
        assert [r.reason for r in out.rejections] == ["participant zz has no record in period all"]
        (out,) = await store.apply(
            [
                (
                    cfg,
                    [
                        mod(3, "b1", t + 3, A.PARTICIPANT_BANNED, "a"),
                        rec(4, "e4", t + 4, ("c", 2), ("a", 100)),
                        mod(5, "u1", t + 5, A.PARTICIPANT_UNBANNED, "a"),
                        rec(6, "e4", t + 6, ("c", 2), ("a", 100)),  # the same id: not a duplicate
                    ],
                )
            ]
        )
        assert [(r.offset, r.reason) for r in out.rejections] == [(4, rules.banned_reason("a"))]
        assert [c.source_offset for c in out.changes] == [6, 6]
        assert (await self._standings(store, "board", SortOrder.DESC))[0] == (1, "a", 100)

    async def test_tournament_limits(self, store: Any) -> None:
        cfg = LeaderboardConfigured(
            "board", reset_period=ResetPeriod.DAILY, max_attempts=2, max_participants=2
        )
        t = BASE + DAY
        (out,) = await store.apply(
            [
                (
                    cfg,
                    [
                        rec(0, "e0", t, ("a", 1)),
                        rec(1, "e1", t + 1, ("a", 2), ("b", 1)),
                        rec(2, "e2", t + 2, ("a", 3)),  # a's third attempt
                        rec(3, "e3", t + 3, ("b", 3), ("c", 1)),  # c is the third participant
                        rec(4, "e4", t + 4, ("b", 4)),
                        rec(5, "e5", t + DAY, ("c", 1)),  # next period: limits start again
                    ],
                )
            ]
        )
        period = rules.period_key(ResetPeriod.DAILY, t)
        assert [(r.offset, r.reason) for r in out.rejections] == [
            (2, rules.limit_reason(cfg, period, "a", 2, 2)),
            (3, rules.limit_reason(cfg, period, "c", 0, 2)),
        ]
        assert out.rejections[0].reason.startswith("max_attempts: ")
        assert out.rejections[1].reason.startswith("max_participants: ")
        assert [c.source_offset for c in out.changes] == [0, 1, 1, 4, 5]

    async def test_a_reset_offset_moves_the_periods_and_their_end(self, store: Any) -> None:
        """A daily board reset at 04:00 UTC: 03:59 and 04:00 are two periods, and the first
        ends at the next 04:00 plus the grace, on a later record's time."""
        hour = 3_600_000
        cfg = LeaderboardConfigured(
            "board", reset_period=ResetPeriod.DAILY, reset_offset_ms=4 * hour
        )
        day = BASE + 25 * DAY  # 2026-11-26T00:00Z
        (out,) = await store.apply(
            [
                (
                    cfg,
                    [
                        rec(0, "e0", day + 4 * hour - 1, ("a", 1)),
                        rec(1, "e1", day + 4 * hour, ("b", 2)),
                        rec(2, "e2", day + 4 * hour + GRACE, ("c", 3)),  # ends 11-25's
                        rec(3, "e3", day + 4 * hour - 2, ("d", 4)),  # late for 11-25
                    ],
                )
            ]
        )
        assert [c.period for c in out.changes] == ["2026-11-25", "2026-11-26", "2026-11-27"]
        assert [p for p, _ in out.periods_ended] == ["2026-11-25"]
        assert [r.reason for r in out.rejections] == ["period 2026-11-25 is closed: late event"]

    @pytest.mark.parametrize("operator", [Operator.BEST, Operator.INCR, Operator.SET])
    async def test_moderated_random_sequences_match_the_model(
        self, store: Any, operator: Operator
    ) -> None:
        """Random matches, voids, removals, bans and limits: every outcome and the standings
        are the model's (the reference store), batch after batch with redelivery."""
        rng = random.Random(f"moderation{operator}")
        cfg = LeaderboardConfigured(
            "board",
            operator=operator,
            reset_period=ResetPeriod.DAILY,
            watch_top_n=2,
            max_attempts=3,
            max_participants=9,
            retain_entries=True,
            reset_offset_ms=4 * 3_600_000,  # a daily reset at 04:00 UTC
        )
        players = [f"p{i}" for i in range(11)]
        records: list[SourceRecord] = []
        applied: list[str] = []
        t = BASE + 20 * DAY
        for offset in range(300):
            t += rng.choice([0, 1, 1000, DAY // 3])
            roll = rng.random()
            if roll < 0.12 and applied:
                records.append(mod(offset, f"v{offset}", t, A.MATCH_VOIDED, rng.choice(applied)))
            elif roll < 0.18:
                records.append(
                    mod(offset, f"r{offset}", t, A.PARTICIPANT_REMOVED, rng.choice(players))
                )
            elif roll < 0.22:
                action = rng.choice([A.PARTICIPANT_BANNED, A.PARTICIPANT_UNBANNED])
                records.append(mod(offset, f"b{offset}", t, action, rng.choice(players)))
            else:
                eid = f"e{offset}"
                applied.append(eid)
                entries = tuple(
                    ScoreEntry(
                        rng.choice(players),
                        rng.randint(-20, 20),
                        rng.choice([None, None, Operator.SET, Operator.INCR]),
                    )
                    for _ in range(rng.randint(1, 3))
                )
                records.append(rec(offset, eid, t, *entries))
        reference = MemoryStore(overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP)
        seen: set[str] = set()
        i = 0
        while i < len(records):
            chunk = records[i : i + rng.randint(1, 30)]
            (out,) = await store.apply([(cfg, chunk)])
            (want,) = await reference.apply([(cfg, chunk)])
            assert out.changes == want.changes
            assert out.rejections == want.rejections
            assert out.notifications == want.notifications
            assert out.periods_ended == want.periods_ended
            (again,) = await store.apply([(cfg, chunk)])  # redelivery: the stored results
            assert again.changes == want.changes
            await store.acknowledge([out])
            await reference.acknowledge([want])
            seen |= {c.operator for c in out.changes}
            seen |= {r.reason.split(":")[0] for r in out.rejections}
            i += len(chunk)
        # the sequence went through every rule it is meant to check
        assert {"match_voided", "participant_removed", "banned", "max_attempts"} <= seen
        periods = await store.periods("board")
        assert periods == await reference.periods("board")
        for period in periods:
            got = await store.standings("board", period, cfg.sort_order)
            assert got == await reference.standings("board", period, cfg.sort_order)
        assert await store.version("board") == await reference.version("board")
