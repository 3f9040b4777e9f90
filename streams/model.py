"""Reference model of the ranking rules in plain Python (no I/O), for contract tests.

The live projector and replay use the Redis apply script; this model states the same rules
in the simplest possible way so that tests can compare the two on random event sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams import rules
from streams.events import LeaderboardConfigured, MatchResultSubmitted


@dataclass
class ModelBoard:
    """Standings of every period of one board, applied record by record."""

    config: LeaderboardConfigured
    grace_ms: int = 60_000
    scores: dict[str, dict[str, tuple[int, tuple[int, int, int]]]] = field(default_factory=dict)
    seen_events: set[str] = field(default_factory=set)
    open_periods: dict[str, int] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    max_time: int = -1
    version: int = 0

    def apply(self, offset: int, record: MatchResultSubmitted) -> list[str]:
        """Apply one record; returns the reasons of what was rejected (empty if none)."""
        cfg = self.config
        reason = rules.reject_reason(cfg, record)
        if reason:
            return [reason]
        period = rules.period_key(cfg.reset_period, record.occurred_at)
        if period in self.ended:
            return [f"period {period} is closed: late event"]
        if record.event_id in self.seen_events:
            return [f"duplicate event id {record.event_id}"]
        self.seen_events.add(record.event_id)
        closes = rules.period_closes_at(cfg.reset_period, period, self.grace_ms)
        if closes != rules.NEVER:
            self.open_periods.setdefault(period, closes)
        board = self.scores.setdefault(period, {})
        out: list[str] = []
        for idx, entry in enumerate(record.entries):
            bad = rules.entry_reject_reason(entry.score, entry.participant_id)
            if bad:
                out.append(bad)
                continue
            op = entry.operator or cfg.operator
            old = board.get(entry.participant_id)
            new = rules.combine(op, old[0] if old else None, entry.score, cfg.sort_order)
            if not rules.in_exact_range(new):
                out.append("score would leave the exact range")
                continue
            if old is None or new != old[0]:
                board[entry.participant_id] = (new, (record.occurred_at, offset, idx))
            self.version += 1
        if record.occurred_at > self.max_time:
            self.max_time = record.occurred_at
            for name in sorted(self.open_periods):
                if self.max_time >= self.open_periods[name]:
                    del self.open_periods[name]
                    self.ended.add(name)
        return out

    def standings(self, period: str) -> list[tuple[int, str, int]]:
        """(rank, participant, score) best first, ties broken by who reached it first."""
        rows = self.scores.get(period, {})
        ordered = sorted(
            rows.items(),
            key=lambda kv: (rules.sort_key(kv[1][0], self.config.sort_order), kv[1][1], kv[0]),
        )
        return [(i + 1, pid, score) for i, (pid, (score, _)) in enumerate(ordered)]
