"""Reference model of the ranking rules in plain Python (no I/O), for tests and the memory store.

The live projector and replay use the Redis apply script (projections/lua/apply.lua); this
model states the same rules in plain Python, result for result: the same rank changes (old and
new rank and score, versions), ``overtaken`` and top-N notices, rejection reasons, period ends
and tie order. projections/memory.py serves it behind the store's interface, and the store
contract (tests/contract) holds the Redis store, the sharded store and this model to one
behaviour.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from streams import rules
from streams.events import (
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    ModerationAction,
    NotificationKind,
    Operator,
    ParticipantNotified,
    RankChange,
    ScoreEntry,
    SortOrder,
)


class FoldEntry(NamedTuple):
    """A score entry as a fold reads it: ``ScoreEntry``'s fields, in its order, in a tuple.

    A replay's decoder yields each entry as a plain tuple; ``FoldEntry._make`` turns it into
    this at C speed, where building a frozen ``ScoreEntry`` costs a Python call and four
    attribute stores (about a tenth of a rebuild's CPU). The model reads only these fields.
    """

    participant_id: str
    score: int
    operator: Operator | None
    metadata: dict[str, str] | None


#: Operators whose result can leave the exact range.
_ARITH = frozenset({Operator.INCR, Operator.DECR})
#: Most participants an ``overtaken`` notice list names by default (the store's default).
OVERTAKEN_LIMIT = 100
#: The parts of a standings row (sort key, member), for ``Standings.settle``.
_SORT_KEY, _MEMBER = itemgetter(0), itemgetter(1)


@dataclass(slots=True)
class Standings:
    """One period's standings as Redis keeps them: (sort key, member) pairs in ascending order.

    The sort key is the stored score negated for descending boards (``rules.sort_key``) and the
    member carries the tie-break prefix (``rules.member``), so the order is exactly the sorted
    set's: sort key, then the member's code-point (= UTF-8 byte) order.
    """

    order: list[tuple[int, str]] = field(default_factory=list)
    members: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.members)

    def settle(self) -> None:
        """Rebuild the order from the members (after a fold, which keeps only the members).

        Two stable sorts on one key each (member, then sort key) give the order of the
        (sort key, member) pairs (members are unique) at about a third of the CPU of one sort
        of the pairs: each pass compares plain ints or plain strings, never tuples."""
        order = sorted(self.members.values(), key=_MEMBER)
        order.sort(key=_SORT_KEY)
        self.order = order

    def rank(self, participant_id: str) -> int | None:
        """1-based rank of a participant, or None if absent."""
        found = self.members.get(participant_id)
        return None if found is None else self.rank_of(found)

    def rank_of(self, row: tuple[int, str]) -> int:
        """1-based rank of a stored (sort key, member) row."""
        return bisect.bisect_left(self.order, row) + 1

    def put(self, participant_id: str, key: int, member: str) -> int:
        """Store (or move) a participant under a new key and member; returns its new rank."""
        old = self.members.get(participant_id)
        if old is not None:
            del self.order[bisect.bisect_left(self.order, old)]
        row = (key, member)
        self.members[participant_id] = row
        at = bisect.bisect_left(self.order, row)
        self.order.insert(at, row)
        return at + 1

    def remove(self, participant_id: str) -> None:
        """Take a participant off the standings (it must be on them)."""
        row = self.members.pop(participant_id)
        del self.order[bisect.bisect_left(self.order, row)]

    def window(self, start: int, stop: int) -> list[tuple[int, str]]:
        """Rows ``start..stop`` (0-based, inclusive, negative from the end), as ZRANGE."""
        n = len(self.order)
        if start < 0:
            start = max(start + n, 0)
        if stop < 0:
            stop += n
        if start > stop or start >= n:
            return []
        return self.order[start : min(stop, n - 1) + 1]


@dataclass(slots=True)
class RecordResult:
    """What applying one record did: the apply script's result lines, as values."""

    changes: list[RankChange] = field(default_factory=list)
    notifications: list[ParticipantNotified] = field(default_factory=list)
    #: (entry index or None for the whole record, reason)
    rejections: list[tuple[int | None, str]] = field(default_factory=list)
    periods_ended: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class ModelBoard:
    """Standings of every period of one board, applied record by record."""

    config: LeaderboardConfigured
    grace_ms: int = 60_000
    overtaken_limit: int = OVERTAKEN_LIMIT
    periods: dict[str, Standings] = field(default_factory=dict)
    #: event id -> event time, within the dedup horizon (see rules.dedup_forget)
    seen_events: dict[str, int] = field(default_factory=dict)
    dedup: tuple[int, int] = (rules.DEDUP_WINDOW_MS, rules.DEDUP_MAX_IDS)
    #: event times below this are refused: their duplicates could no longer be detected
    horizon: int = 0
    open_periods: dict[str, int] = field(default_factory=dict)
    #: ended period -> board version when it ended
    ended: dict[str, int] = field(default_factory=dict)
    #: participant -> metadata of its latest applied entry that had any
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    max_time: int = -1
    version: int = 0
    #: banned participant -> the event id of the ban
    banned: dict[str, str] = field(default_factory=dict)
    #: period -> participant -> matches applied (kept only with tournament limits)
    attempts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: period -> participant -> retained entries (prefix, operator, submitted), retain_entries
    history: dict[str, dict[str, list[tuple[str, Operator, int]]]] = field(default_factory=dict)
    #: retained match event id -> (period, members "prefix+participant" of its entries)
    matches: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    #: Fold: apply every rule but keep no order, ranks or results per entry (the final state
    #: only, for a bulk rebuild); ``settle`` then sorts the standings once.
    fold: bool = False
    #: day of event time (rules.dedup_day) -> the remembered ids of that day, to forget by day
    _seen_days: dict[int, list[str]] = field(default_factory=dict, repr=False)

    @property
    def scores(self) -> dict[str, dict[str, int]]:
        """Score of every participant of every period that has standings."""
        return {
            period: {pid: self._score(key) for pid, (key, _) in table.members.items()}
            for period, table in self.periods.items()
            if table
        }

    def apply(
        self, offset: int, record: MatchResultSubmitted, log_time: int | None = None
    ) -> list[str]:
        """Apply one record with every rule; returns the reasons of what was rejected.

        ``log_time`` is the broker's append time of the record, when the log has one.
        """
        reason = rules.reject_reason(self.config, record, log_time)
        if reason:
            return [reason]
        valid, _ = split_entries(record)
        at = rules.ranking_time(self.config, record, log_time)
        refusal = rules.entries_refusal(record.entries)
        result = self.apply_valid(0, offset, record, valid, refusal, at=at)
        return [r for _, r in result.rejections]

    def moderate(
        self, offset: int, event: LeaderboardModerated, log_time: int | None = None
    ) -> list[str]:
        """Apply one moderation with every rule; returns the reasons it was refused (if so)."""
        reason = rules.moderation_reason(self.config, event) or rules.event_time_reason(
            event.occurred_at, log_time
        )
        if reason:
            return [reason]
        carrier = MatchResultSubmitted(
            event.event_id,
            f"{event.issued_by}: {event.reason}",
            event.leaderboard_id,
            event.occurred_at,
            (),
        )
        at = rules.ranking_time(self.config, carrier, log_time)
        result = self.apply_valid(0, offset, carrier, (), at=at, moderation=event)
        return [r for _, r in result.rejections]

    def tick(self, offset: int, log_time: int) -> RecordResult:
        """A clock mark at ``log_time``: the board's time moves on, ending what it ends."""
        mark = MatchResultSubmitted("", "", self.config.leaderboard_id, log_time, ())
        return self.apply_valid(0, offset, mark, (), at=log_time)

    def apply_valid(
        self,
        partition: int,
        offset: int,
        record: MatchResultSubmitted,
        entries: Sequence[tuple[int, ScoreEntry]],
        refusal: str = "",
        *,
        at: int | None = None,
        moderation: LeaderboardModerated | None = None,
    ) -> RecordResult:
        """Apply the entries of one record that passed ``rules.entry_reject_reason``.

        The apply script's steps in its order: late (closed period), duplicate event id, the
        refusal decided before (``refusal``: invalid entries) or a result out of range (the
        whole match refused), then each entry (score, rank, notices), then the periods the
        record's time ends. ``at`` is the record's ranking time (default: its claimed time);
        a record with an empty event id is a clock mark, which only moves the time. A
        ``moderation`` (``record`` is then its carrier) goes through the same checks, a ban or
        a void without the late one, then applies instead of entries.
        """
        cfg = self.config
        out = RecordResult()
        if at is None:
            at = record.occurred_at
        period = rules.board_period(cfg, at)
        if moderation is not None and moderation.period:
            period = moderation.period
        closes = rules.period_closes_at(cfg, period, self.grace_ms)
        mark = not record.event_id
        # a board closed since its periods opened: every open period ends at the cut at the
        # latest; and a mark opens a period that has standings but could not end when it
        # opened (an all-time board closed since), so that it can end now
        cut = rules.closing_cut(cfg, self.grace_ms)
        if cut != rules.NEVER:
            for name, ends in self.open_periods.items():
                self.open_periods[name] = min(ends, cut)
        if mark and closes != rules.NEVER and period not in self.open_periods:
            if period not in self.ended and self.periods.get(period):
                self.open_periods[period] = closes
        if mark:
            self._advance(at, out)
            return out
        timeless = moderation is not None and (
            moderation.action is not ModerationAction.PARTICIPANT_REMOVED
        )
        if not timeless and (
            period in self.ended or (closes != rules.NEVER and self.max_time >= closes)
        ):
            # ended, or would have ended had it been opened: the board's time is past it
            out.rejections.append((None, f"period {period} is closed: late event"))
            return out
        if at < self.horizon:
            out.rejections.append(
                (
                    None,
                    f"event time is older than the deduplication horizon {self.horizon}: "
                    "a duplicate of it could no longer be detected",
                )
            )
            return out
        if record.event_id in self.seen_events:
            out.rejections.append((None, f"duplicate event id {record.event_id}"))
            return out
        if moderation is not None:
            refused = self._moderate(partition, offset, record, moderation, period, at, out)
            if refused:
                out.rejections.append((None, refused))
                return out
            self._remember(record.event_id, at)
            self._advance(at, out)
            return out
        table = self.periods.get(period)
        if table is None:
            table = Standings()
        overflow = refusal or self._overflow(table, entries) or self._limits(period, entries)
        if overflow:
            out.rejections.append((None, overflow))
            return out
        self._remember(record.event_id, at)
        if closes != rules.NEVER and period not in self.open_periods:
            self.open_periods[period] = closes
        table = self.periods.setdefault(period, table)
        if self.fold:
            self._fold_entries(offset, at, table, entries)
        else:
            for idx, entry in entries:
                self._apply_entry(partition, offset, record, at, period, table, idx, entry, out)
        if cfg.retain_entries:
            self._retain(offset, record, at, period, entries)
        self._advance(at, out)
        return out

    def _limits(self, period: str, entries: Sequence[tuple[int, ScoreEntry]]) -> str | None:
        """Why bans or tournament limits refuse the match (``rules.banned_reason``,
        ``rules.limit_reason``), or None; counts its attempts when they do not."""
        for _, entry in entries:
            if entry.participant_id in self.banned:
                return rules.banned_reason(entry.participant_id)
        cfg = self.config
        if cfg.max_attempts is None and cfg.max_participants is None:
            return None
        used = self.attempts.setdefault(period, {})
        admitted = len(used)
        order = list(dict.fromkeys(entry.participant_id for _, entry in entries))
        for pid in order:
            count = used.get(pid, 0)
            reason = rules.limit_reason(cfg, period, pid, count, admitted)
            if reason:
                return reason
            admitted += count == 0
        for pid in order:
            used[pid] = used.get(pid, 0) + 1
        return None

    def _retain(
        self,
        offset: int,
        record: MatchResultSubmitted,
        at: int,
        period: str,
        entries: Sequence[tuple[int, ScoreEntry]],
    ) -> None:
        """Keep the match's applied entries (retain_entries boards), for exact voids."""
        rows = self.history.setdefault(period, {})
        members = []
        for idx, entry in entries:
            pre = rules.member(at, offset, idx, "")
            op = entry.operator or self.config.operator
            rows.setdefault(entry.participant_id, []).append((pre, op, entry.score))
            members.append(pre + entry.participant_id)
        self.matches[record.event_id] = (period, members)

    def _moderate(
        self,
        partition: int,
        offset: int,
        record: MatchResultSubmitted,
        mod: LeaderboardModerated,
        period: str,
        at: int,
        out: RecordResult,
    ) -> str | None:
        """Apply one moderation; returns why it is refused (nothing changed), or None."""
        target = mod.target
        if mod.action is ModerationAction.PARTICIPANT_BANNED:
            self.banned[target] = record.event_id
            return None
        if mod.action is ModerationAction.PARTICIPANT_UNBANNED:
            self.banned.pop(target, None)
            return None
        sort = self.config.sort_order

        def change(
            i: int, name: str, pid: str, old: tuple[int | None, int | None], new: tuple[int, int]
        ) -> None:
            self.version += 1
            out.changes.append(
                RankChange(
                    version=self.version,
                    period=name,
                    participant_id=pid,
                    old_rank=old[0],
                    new_rank=new[0],
                    old_score=old[1],
                    new_score=new[1],
                    submitted_score=0,
                    operator=mod.action.value,
                    event_id=record.event_id,
                    match_id=record.match_id,
                    entry_index=i,
                    occurred_at=at,
                    source_partition=partition,
                    claimed_at=None if record.occurred_at == at else record.occurred_at,
                    source_offset=offset,
                )
            )

        if mod.action is ModerationAction.PARTICIPANT_REMOVED:
            table = self.periods.get(period)
            if table is None or target not in table.members:
                return f"participant {target} has no record in period {period}"
            gone_row = table.members[target]
            old = (table.rank_of(gone_row), self._score(gone_row[0]))
            table.remove(target)
            self.history.get(period, {}).pop(target, None)
            change(0, period, target, old, (0, 0))
            return None
        found = self.matches.get(target)
        if found is None:
            return rules.unknown_match_reason(target)
        name, members = found
        if name in self.ended:
            return f"period {name} is closed: its final standings stay as they are"
        table = self.periods.setdefault(name, Standings())
        rows = self.history.setdefault(name, {})
        drop: dict[str, set[str]] = {}
        for m in members:
            drop.setdefault(rules.participant_of(m), set()).add(m[: rules.TIEBREAK_WIDTH])
        for i, (pid, gone) in enumerate(drop.items()):
            keep = [r for r in rows.get(pid, []) if r[0] not in gone]
            row = table.members.get(pid)
            before: tuple[int | None, int | None] = (None, None)
            if row is not None:
                before = (table.rank_of(row), self._score(row[0]))
            refolded = rules.refold(keep, sort)
            if refolded is None:
                if row is not None:
                    table.remove(pid)
                rows.pop(pid, None)
                new = (0, 0)
            else:
                score, pre = refolded
                mem = pre + pid
                if row is None or row != (rules.sort_key(score, sort), mem):
                    table.put(pid, rules.sort_key(score, sort), mem)
                rows[pid] = keep
                new = (table.rank(pid) or 0, score)
            if row is not None or new[0]:
                change(i, name, pid, before, new)
        del self.matches[target]
        return None

    def _advance(self, at: int, out: RecordResult) -> None:
        """Move the board's time to ``at`` (if later): end the periods it passes, move the
        dedup horizon, and keep at most the cap of event ids."""
        if at > self.max_time:
            self.max_time = at
            for name in sorted(self.open_periods):
                if self.max_time >= self.open_periods[name]:
                    del self.open_periods[name]
                    self.ended[name] = self.version
                    out.periods_ended.append((name, self.version))
            self._forget()
        elif len(self.seen_events) > self.dedup[1]:
            self._forget()

    def _remember(self, event_id: str, at: int) -> None:
        """Remember an applied record's event id under its day of event time."""
        self.seen_events[event_id] = at
        day = rules.dedup_day(at)
        ids = self._seen_days.get(day)
        if ids is None:
            ids = self._seen_days[day] = []
        ids.append(event_id)

    def _forget(self) -> None:
        """Move the dedup horizon (rules.dedup_forget), forgetting the ids of whole days."""
        start = self.max_time - self.dedup[0]
        if start - start % rules.DEDUP_DAY_MS <= self.horizon and (
            len(self.seen_events) <= self.dedup[1]
        ):
            return  # the rule would move nothing (no remembered day is below the horizon)
        days = {d: len(ids) for d, ids in self._seen_days.items()}
        self.horizon, gone = rules.dedup_forget(
            days, self.horizon, self.max_time, self.dedup[0], self.dedup[1]
        )
        for day in gone:
            for eid in self._seen_days.pop(day):
                del self.seen_events[eid]

    def settle(self) -> None:
        """Sort every period's standings once after a fold (no-op otherwise)."""
        if self.fold:
            for table in self.periods.values():
                table.settle()

    def _fold_entries(
        self, offset: int, at: int, table: Standings, entries: Sequence[tuple[int, ScoreEntry]]
    ) -> None:
        """``_apply_entry`` of a fold for one record's entries: the same state, without ranks,
        order or results, and with the record's tie-break prefix computed once."""
        desc = self.config.sort_order is SortOrder.DESC
        sort = self.config.sort_order
        default = self.config.operator
        members = table.members
        base = rules.tiebreak_base(at, offset)
        pairs = rules.TIEBREAK_PAIRS
        combine = rules.combine
        for idx, entry in entries:
            pid = entry.participant_id
            op = entry.operator or default
            old = members.get(pid)
            if old is None:
                new = -entry.score if op is Operator.DECR else entry.score
            else:
                old_score = -old[0] if desc else old[0]
                new = combine(op, old_score, entry.score, sort)
                if new == old_score:  # unchanged: the member keeps its time of reaching it
                    if entry.metadata:
                        self.metadata[pid] = dict(entry.metadata)
                    continue
            mem = base + pairs[idx] + pid if idx < 4096 else rules.member(at, offset, idx, pid)
            members[pid] = (-new if desc else new, mem)
            if entry.metadata:
                self.metadata[pid] = dict(entry.metadata)
        self.version += len(entries)

    def _apply_entry(
        self,
        partition: int,
        offset: int,
        record: MatchResultSubmitted,
        at: int,
        period: str,
        table: Standings,
        idx: int,
        entry: ScoreEntry,
        out: RecordResult,
    ) -> None:
        sort = self.config.sort_order
        op = entry.operator or self.config.operator
        pid = entry.participant_id
        old = table.members.get(pid)
        old_score = self._score(old[0]) if old else None
        new = rules.combine(op, old_score, entry.score, sort)
        if self.fold:  # the same state, without ranks, order or results
            if old is None or new != old_score:
                table.members[pid] = (rules.sort_key(new, sort), rules.member(at, offset, idx, pid))
            if entry.metadata:
                self.metadata[pid] = dict(entry.metadata)
            self.version += 1
            return
        old_rank = table.rank(pid)
        if old is None or new != old_score:
            mem = rules.member(at, offset, idx, pid)
            new_rank = table.put(pid, rules.sort_key(new, sort), mem)
        else:  # unchanged: the member keeps its place (and its time of reaching the score)
            new_rank = table.rank_of(old)
        if entry.metadata:
            self.metadata[pid] = dict(entry.metadata)
        self.version += 1
        ver = self.version
        out.changes.append(
            RankChange(
                version=ver,
                period=period,
                participant_id=pid,
                old_rank=old_rank,
                new_rank=new_rank,
                old_score=old_score,
                new_score=new,
                submitted_score=entry.score,
                operator=str(op),
                event_id=record.event_id,
                match_id=record.match_id,
                entry_index=idx,
                occurred_at=at,
                source_partition=partition,
                claimed_at=None if record.occurred_at == at else record.occurred_at,
                source_offset=offset,
            )
        )
        self._notify(table, period, pid, old_rank, new_rank, out)

    def _notify(
        self,
        table: Standings,
        period: str,
        pid: str,
        old_rank: int | None,
        new_rank: int,
        out: RecordResult,
    ) -> None:
        """The notices of one move: the participants passed, and top-N entries and exits."""
        ver = self.version
        notes = out.notifications

        def note(
            kind: NotificationKind, who: str, rank: int, by: str | None, top: int, omitted: int = 0
        ) -> None:
            notes.append(
                ParticipantNotified(
                    self.config.leaderboard_id, period, who, kind, rank, ver, by, top, omitted
                )
            )

        if old_rank is not None and new_rank < old_rank and self.overtaken_limit > 0:
            last = min(old_rank, new_rank + self.overtaken_limit)
            passed = table.window(new_rank, last - 1)
            omitted = (old_rank - new_rank) - len(passed)
            for i, (_, m) in enumerate(passed, start=1):
                who = rules.participant_of(m)
                note(
                    NotificationKind.OVERTAKEN,
                    who,
                    new_rank + i,
                    pid,
                    0,
                    omitted * (i == len(passed)),
                )
        watch = self.config.watch_top_n
        if watch > 0:
            was = old_rank is not None and old_rank <= watch
            now = new_rank <= watch
            if now and not was:
                note(NotificationKind.ENTERED_TOP_N, pid, new_rank, None, watch)
                for _, m in table.window(watch, watch):
                    note(
                        NotificationKind.LEFT_TOP_N, rules.participant_of(m), watch + 1, pid, watch
                    )
            elif was and not now:
                note(NotificationKind.LEFT_TOP_N, pid, new_rank, None, watch)
                for _, m in table.window(watch - 1, watch - 1):
                    note(
                        NotificationKind.ENTERED_TOP_N, rules.participant_of(m), watch, None, watch
                    )

    def _overflow(self, table: Standings, entries: Sequence[tuple[int, ScoreEntry]]) -> str | None:
        """Why the entries cannot all apply (a result outside the exact range), or None."""
        # best and set keep a score inside the range (every valid submitted score is): only
        # incr and decr can leave it, so a match without them needs no look-up (as the script)
        default = self.config.operator
        if not any((e.operator or default) in _ARITH for _, e in entries):
            return None
        sim: dict[str, int] = {}
        for idx, entry in entries:
            pid = entry.participant_id
            old = sim.get(pid)
            if old is None and pid in table.members:
                old = self._score(table.members[pid][0])
            op = entry.operator or self.config.operator
            new = rules.combine(op, old, entry.score, self.config.sort_order)
            if not rules.in_exact_range(new):
                # the script computes in doubles: its message shows the rounded value
                return (
                    f"entries[{idx}]: score {float(new):.0f} would leave the exact range "
                    "|score| < 2^53"
                )
            sim[pid] = new
        return None

    def _score(self, key: int) -> int:
        return -key if self.config.sort_order is SortOrder.DESC else key

    def standings(self, period: str) -> list[tuple[int, str, int]]:
        """(rank, participant, score) best first, ties broken by who reached it first."""
        return list(self.rows(period, self.config.sort_order))

    def rows(self, period: str, sort: SortOrder) -> Iterator[tuple[int, str, int]]:
        """(rank, participant, score) of a period, read as ``sort`` (as the store reads)."""
        table = self.periods.get(period)
        for i, (key, m) in enumerate(table.order if table else ()):
            yield i + 1, rules.participant_of(m), -key if sort is SortOrder.DESC else key


def split_entries(
    record: MatchResultSubmitted,
) -> tuple[list[tuple[int, ScoreEntry]], list[tuple[int, str]]]:
    """The record's entries that pass ``rules.entry_reject_reason``, and why the others fail."""
    valid: list[tuple[int, ScoreEntry]] = []
    bad: list[tuple[int, str]] = []
    for idx, entry in enumerate(record.entries):
        reason = rules.entry_reject_reason(entry.score, entry.participant_id)
        if reason:
            bad.append((idx, reason))
        else:
            valid.append((idx, entry))
    return valid, bad


__all__ = [
    "OVERTAKEN_LIMIT",
    "FoldEntry",
    "ModelBoard",
    "RecordResult",
    "Standings",
    "split_entries",
]
