"""Records for the store contract: hand-made ones and reproducible random sequences."""

from __future__ import annotations

import random

from projections.store import SourceRecord
from streams.events import MatchResultSubmitted, Operator, ScoreEntry

DAY = 86_400_000
BASE = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def rec(
    offset: int,
    event_id: str,
    at: int,
    *entries: ScoreEntry | tuple[str, int] | tuple[str, int, Operator],
    board: str = "board",
    partition: int = 0,
) -> SourceRecord:
    """One record at ``offset``: entries as ScoreEntry or (participant, score[, operator])."""
    made = tuple(e if isinstance(e, ScoreEntry) else ScoreEntry(*e) for e in entries)
    return SourceRecord(partition, offset, MatchResultSubmitted(event_id, "m", board, at, made))


def mark(offset: int, at: int, board: str = "board", partition: int = 0) -> SourceRecord:
    """A clock mark as the projector hands it to a board: no event id, no entries, a time."""
    return SourceRecord(partition, offset, MatchResultSubmitted("", "", board, at, ()), at)


def random_records(
    rng: random.Random, board: str, n: int, *, marks: bool = False
) -> list[SourceRecord]:
    """``n`` records of 12 players: ties, overflow, duplicates, out-of-order and late times.

    Each record ranks by its own time (``at``, as a broker's log time would) while claiming an
    earlier one, which must decide nothing; with ``marks`` some are clock marks.
    """
    players = [f"p{i}" for i in range(12)]
    out = []
    t = BASE + 20 * DAY
    for offset in range(n):
        t += rng.choice([0, 0, 1, 1000, DAY // 2])
        if rng.random() < 0.05:
            t -= 3 * DAY  # out-of-order event time, may be late for a closed period
        if marks and rng.random() < 0.05:
            out.append(mark(offset, t + rng.choice([0, DAY, 2 * DAY]), board))
            continue
        entries = tuple(
            ScoreEntry(
                rng.choice(players),
                rng.choice([rng.randint(-5, 5), rng.randint(-1000, 1000), 2**53 - 2]),
                rng.choice([None, None, Operator.SET, Operator.INCR, Operator.DECR]),
            )
            for _ in range(rng.randint(1, 3))
        )
        eid = f"e{rng.randint(0, n * 2)}"  # some duplicates
        claim = t - rng.choice([0, 0, 1, 5000, DAY])  # backdated claims rank nothing
        out.append(
            SourceRecord(0, offset, MatchResultSubmitted(eid, "m", board, claim, entries), t)
        )
    return out
