"""Synthetic workload: random match results and the board configurations they go to."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence

from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)


def match_stream(
    rng: random.Random,
    boards: Sequence[str],
    players: int,
    count: int,
    k: int,
    now_ms: int,
) -> Iterator[MatchResultSubmitted]:
    """``count`` matches of ``k`` distinct random players on uniformly chosen boards."""
    for _ in range(count):
        board = boards[rng.randrange(len(boards))]
        pids = rng.sample(range(players), k)
        entries = tuple(ScoreEntry(f"p{i}", rng.randint(1, 1_000_000)) for i in pids)
        eid = str(uuid.uuid4())
        yield MatchResultSubmitted(eid, eid, board, now_ms, entries)


def now_ms() -> int:
    """Wall-clock time in milliseconds (event timestamps)."""
    return int(time.time() * 1000)


def board_configs(tag: str, n: int, watch: int = 10) -> list[LeaderboardConfigured]:
    """``n`` descending boards named after ``tag``, alternately BEST and INCR."""
    return [
        LeaderboardConfigured(
            f"{tag}-b{i:02d}",
            SortOrder.DESC,
            Operator.BEST if i % 2 == 0 else Operator.INCR,
            ResetPeriod.NONE,
            configured_at=now_ms(),
            watch_top_n=watch,
        )
        for i in range(n)
    ]
