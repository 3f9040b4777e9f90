"""Redis read model: the idempotent batch apply (one Lua call per board) and the queries."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections.keys import (
    PAIR_VALUES,
    BoardKeys,
    base_value,
    event_bucket,
    event_key,
    index_bucket,
    index_member,
    index_value,
)
from projections.redis_client import RedisClient
from projections.results import RecordResult, decode, to_changes, to_notice
from projections.scripts import APPLY, SWAP_LUA, Call, ProjectionLost
from streams import rules
from streams.events import (
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    Operator,
    ParticipantNotified,
    RankChange,
    SortOrder,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A decoded score record, its position in the log and the time that ranks it.

    ``at`` is ``rules.ranking_time`` of the record (None: its claimed ``occurred_at``). A clock
    mark reaches a board as a record with an empty event id and no entries: it only moves
    the board's time to ``at``. ``index`` is set for submission ``index`` of a coalesced
    ``ScoresSubmitted`` record (``event`` is then that submission as a one-entry match): it is
    the entry index of its one entry and part of its position.
    """

    partition: int
    offset: int
    event: MatchResultSubmitted
    at: int | None = None
    #: set when the record is a moderation: ``event`` is then its carrier (see ``moderation``)
    moderation: LeaderboardModerated | None = None
    index: int | None = None

    @property
    def position(self) -> str:
        """Where the record's result is kept: its offset, or ``offset:index``."""
        return str(self.offset) if self.index is None else f"{self.offset}:{self.index}"

    @property
    def time(self) -> int:
        """The record's ranking time."""
        return self.event.occurred_at if self.at is None else self.at


@dataclass(slots=True)
class Rejection:
    """A record (or some of its entries) that was not applied, and why."""

    partition: int
    offset: int
    reason: str
    entry_index: int | None = None
    #: the submission of a coalesced record that was refused (None: the record)
    index: int | None = None


class BoardOutcome:
    """What applying one batch did to one board.

    A plain board's apply keeps the script's result rows (``results``) and builds its
    ``changes`` and ``notifications`` from them only when they are read: the projector writes
    its output records straight from the rows (``pending`` / ``take_pending``), so on its hot
    path no RankChange or notice object is made.
    """

    __slots__ = (
        "_changes",
        "_notifications",
        "_pending",
        "board",
        "offsets",
        "periods_ended",
        "positions",
        "rejections",
    )

    def __init__(
        self,
        board: str,
        changes: list[RankChange] | None = None,
        notifications: list[ParticipantNotified] | None = None,
        rejections: list[Rejection] | None = None,
        periods_ended: list[tuple[str, int]] | None = None,
        offsets: list[int] | None = None,
        positions: list[str] | None = None,
    ) -> None:
        self.board = board
        self._changes: list[RankChange] = [] if changes is None else changes
        self._notifications: list[ParticipantNotified] = (
            [] if notifications is None else notifications
        )
        self.rejections: list[Rejection] = [] if rejections is None else rejections
        self.periods_ended: list[tuple[str, int]] = [] if periods_ended is None else periods_ended
        self.offsets: list[int] = [] if offsets is None else offsets
        #: the outbox fields of the results (``SourceRecord.position``), beside ``offsets``
        self.positions: list[str] = [] if positions is None else positions
        #: result rows not yet turned into ``changes`` / ``notifications``, in log order
        self._pending: list[tuple[SourceRecord, RecordResult]] = []

    @property
    def changes(self) -> list[RankChange]:
        """The applied entries, in order (built from the pending result rows, once)."""
        if self._pending:
            self._settle()
        return self._changes

    @changes.setter
    def changes(self, value: list[RankChange]) -> None:
        if self._pending:
            self._settle()
        self._changes = value

    @property
    def notifications(self) -> list[ParticipantNotified]:
        """The notices, in order (built from the pending result rows, once)."""
        if self._pending:
            self._settle()
        return self._notifications

    @notifications.setter
    def notifications(self, value: list[ParticipantNotified]) -> None:
        if self._pending:
            self._settle()
        self._notifications = value

    @property
    def pending(self) -> list[tuple[SourceRecord, RecordResult]] | None:
        """The result rows (with their records) when they are all this outcome's changes and
        notices, None once any was built or added another way (read ``changes`` then)."""
        if self._changes or self._notifications:
            return None
        return self._pending

    def change_count(self) -> int:
        """How many entries were applied (``len(changes)``, without building them)."""
        return len(self._changes) + sum(len(res.changes) for _, res in self._pending)

    def add_rows(self, rec: SourceRecord, res: RecordResult) -> None:
        """Keep one record's result rows for ``changes`` and ``notifications``."""
        if res.changes or res.notices:
            self._pending.append((rec, res))

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        board = self.board
        for rec, res in pending:
            self._changes += to_changes(rec, res.changes)
            self._notifications += [to_notice(board, row) for row in res.notices]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoardOutcome):
            return NotImplemented
        return _fields(self) == _fields(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return "BoardOutcome(" + ", ".join(f"{k}={v!r}" for k, v in _fields(self).items()) + ")"


def _fields(out: BoardOutcome) -> dict[str, Any]:
    return {
        "board": out.board,
        "changes": out.changes,
        "notifications": out.notifications,
        "rejections": out.rejections,
        "periods_ended": out.periods_ended,
        "offsets": out.offsets,
        "positions": out.positions,
    }


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the standings."""

    rank: int
    participant_id: str
    score: int


class Neighbours:
    """``rank`` and ``around``, written once for every store from its ``ranks`` and ``top``."""

    async def top(
        self, board: str, period: str, sort: SortOrder, *, limit: int = 10, offset: int = 0
    ) -> list[Entry]:
        """Rows ``offset+1 .. offset+limit`` of the standings, best first."""
        raise NotImplementedError

    async def ranks(
        self, board: str, period: str, sort: SortOrder, pids: Sequence[str]
    ) -> list[Entry | None]:
        """Rank and score of many participants (None for those not on the board)."""
        raise NotImplementedError

    async def rank(self, board: str, period: str, sort: SortOrder, pid: str) -> Entry | None:
        """Rank and score of one participant, or None if not on the board."""
        found = await self.ranks(board, period, sort, [pid])
        return found[0]

    async def around(
        self, board: str, period: str, sort: SortOrder, pid: str, k: int = 5
    ) -> list[Entry]:
        """The participant with up to ``k`` neighbours above and below; [] if absent."""
        me = await self.rank(board, period, sort, pid)
        if me is None:
            return []
        start = max(0, me.rank - 1 - k)
        return await self.top(board, period, sort, limit=me.rank + k - start, offset=start)


@dataclass(slots=True)
class PreparedApply:
    """An apply call made ready in Python (``RankingStore.prepare``): its script calls, and
    how their replies become the boards' outcomes (``settle``)."""

    batches: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]]
    calls: list[Call]

    def settle(self, replies: Sequence[Any]) -> list[BoardOutcome]:
        """The boards' outcomes from the calls' replies (in call order)."""
        outcomes: list[BoardOutcome] = []
        for (config, records), reply in zip(self.batches, replies, strict=True):
            outcome = BoardOutcome(config.leaderboard_id)
            outcomes.append(outcome)
            by_position = {r.position: r for r in records}
            for res in decode(reply):
                rec = by_position[res.position]
                outcome.offsets.append(rec.offset)
                outcome.positions.append(res.position)  # rec.position, already made
                add_result(outcome, rec, res)
        return outcomes


class RankingStore(Neighbours):
    """Leaderboards in Redis sorted sets, written only through the apply script.

    Works on a single node and on Redis Cluster alike: every command of one call names keys
    of one board only, and they share the board's hash tag (one slot).
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "lb",
        overtaken_limit: int = 100,
        grace_ms: int = 60_000,
        guard_key: str | None = None,
        dedup: tuple[int, int] = (rules.DEDUP_WINDOW_MS, rules.DEDUP_MAX_IDS),
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.overtaken_limit = overtaken_limit
        self.grace_ms = grace_ms
        #: (window in ms of event time, max ids) of duplicate detection per board.
        self.dedup = dedup
        #: Key that must exist for the apply to run (single node; see processors/workers/epoch.py).
        self.guard_key = guard_key

    def keys(self, board: str) -> BoardKeys:
        """Key names of ``board`` under this store's prefix."""
        return BoardKeys(board, self.prefix)

    # ------------------------------------------------------------------ apply
    async def apply(
        self,
        batches: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]],
    ) -> list[BoardOutcome]:
        """Apply each board's records (in log order) in one pipelined round trip.

        Idempotent: a record at or below the board's watermark for its partition changes
        nothing and yields its stored result again until ``acknowledge`` drops it.
        """
        call = self.prepare(batches)
        return call.settle(await APPLY.run_many(self.client, call.calls, packed=True))

    def prepare(
        self, batches: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]]
    ) -> PreparedApply:
        """``apply``'s first half, without I/O: the script calls of ``batches``, packed."""
        calls: list[Call] = []
        for config, records in batches:
            periods, prepared = prepare_batch(config, records)
            calls.append(
                apply_call(
                    self.keys(config.leaderboard_id),
                    config,
                    (config.watch_top_n, self.overtaken_limit),
                    periods,
                    prepared,
                    self.grace_ms,
                    self.guard_key,
                    dedup=self.dedup,
                )
            )
        return PreparedApply(batches, APPLY.packed_calls(calls))

    async def send(self, call: PreparedApply) -> asyncio.Future[list[Any]]:
        """Put a prepared apply on the wire now; the returned task reads its replies (for
        ``call.settle``), or raises what ``apply`` would raise."""
        return await APPLY.send(self.client, call.calls)

    async def acknowledge(self, outcomes: Sequence[BoardOutcome]) -> None:
        """Drop published results from each board's outbox (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for outcome in outcomes:
            fields = outcome.positions or [str(o) for o in outcome.offsets]
            if fields:
                pipe.hdel(self.keys(outcome.board).outbox, *fields)
                n += 1
        if n:
            await pipe.execute()

    # ------------------------------------------------------------------ rebuild
    async def board_keys(self, board: str) -> list[str]:
        """Every existing key of the board under this store's prefix.

        SCAN walks the whole keyspace; 10,000 slots per call keeps a rebuild's three walks per
        board (clear, then both sides of the swap) to a few round trips, each a few ms of Redis.
        """
        return [
            _text(k)
            async for k in self.client.scan_iter(match=self.keys(board).pattern, count=10_000)
        ]

    async def clear(self, board: str) -> int:
        """Delete every key of the board under this store's prefix; returns how many."""
        keys = await self.board_keys(board)
        for i in range(0, len(keys), 500):
            await self.client.delete(*keys[i : i + 500])
        return len(keys)

    async def watermark(self, board: str, partition: int) -> int:
        """Offset of the last record applied from ``partition`` (-1 if none)."""
        value = await self.client.hget(self.keys(board).state, f"wm:{partition}")
        return int(value) if value is not None else -1

    async def swap_from(self, shadow: RankingStore, board: str, partition: int) -> bool:
        """Atomically replace this store's keys of ``board`` by ``shadow``'s.

        Returns False (nothing changed) while the shadow is behind the live watermark.
        """
        live, shade = self.keys(board), shadow.keys(board)
        shadow_keys = await shadow.board_keys(board)
        live_keys = await self.board_keys(board)
        pairs: list[str] = []
        for key in shadow_keys:
            pairs += [key, live.base + key[len(shade.base) :]]
        key_list = [live.state, shade.state, shade.outbox, *pairs, *live_keys]
        done = await self.client.eval(
            SWAP_LUA, len(key_list), *key_list, partition, len(pairs) // 2
        )
        return bool(done)

    # ------------------------------------------------------------------ queries
    async def version(self, board: str) -> int:
        """The board's version (0 if it has no applied change)."""
        value = await self.client.hget(self.keys(board).state, "ver")
        return int(value) if value is not None else 0

    async def count(self, board: str, period: str) -> int:
        """Participants in one period's standings."""
        return int(await self.client.zcard(self.keys(board).zset(period)))

    async def top(
        self, board: str, period: str, sort: SortOrder, *, limit: int = 10, offset: int = 0
    ) -> list[Entry]:
        """Rows ``offset+1 .. offset+limit`` of the standings, best first."""
        if limit <= 0:
            return []
        raw: list[Any] = await self.client.zrange(
            self.keys(board).zset(period), offset, offset + limit - 1, withscores=True
        )
        return [_entry(offset + i + 1, m, s, sort) for i, (m, s) in enumerate(raw)]

    async def ranks(
        self, board: str, period: str, sort: SortOrder, pids: Sequence[str]
    ) -> list[Entry | None]:
        """Rank and score of many participants in two round trips."""
        keys = self.keys(board)
        if not pids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            pipe.hget(keys.index(period, pid), pid)
        mems = [index_member(pre, pid) for pre, pid in zip(await pipe.execute(), pids, strict=True)]
        pipe = self.client.pipeline(transaction=False)
        present = [m for m in mems if m is not None]
        for mem in present:
            pipe.zrank(keys.zset(period), mem)
            pipe.zscore(keys.zset(period), mem)
        res = await pipe.execute() if present else []
        out: list[Entry | None] = []
        i = 0
        for pid, m in zip(pids, mems, strict=True):
            if m is None or res[i] is None:
                out.append(None)
                if m is not None:
                    i += 2
                continue
            key = int(res[i + 1])
            out.append(Entry(int(res[i]) + 1, pid, -key if sort is SortOrder.DESC else key))
            i += 2
        return out

    async def standings(
        self, board: str, period: str, sort: SortOrder, *, chunk: int = 10_000
    ) -> list[Entry]:
        """The whole standings, best first, read in chunks."""
        out: list[Entry] = []
        while True:
            page = await self.top(board, period, sort, limit=chunk, offset=len(out))
            out += page
            if len(page) < chunk:
                return out

    async def checksum(self, board: str, period: str, sort: SortOrder) -> tuple[str, int]:
        """SHA-256 of the standings and their participant count."""
        rows = await self.standings(board, period, sort)
        return rules.standings_checksum((e.rank, e.participant_id, e.score) for e in rows), len(
            rows
        )

    async def periods(self, board: str) -> list[str]:
        """Every period of the board that has standings in Redis, sorted."""
        keys = self.keys(board)
        prefix = keys.zset("")
        found = [
            _text(k)[len(prefix) :]
            async for k in self.client.scan_iter(match=_glob(prefix) + "*", count=1000)
        ]
        return sorted(found)

    async def metadata(self, board: str, pids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Latest metadata of participants (missing ones omitted)."""
        if not pids:
            return {}
        vals = await self.client.hmget(self.keys(board).metadata, list(pids))
        return {p: json.loads(v) for p, v in zip(pids, vals, strict=True) if v}


@dataclass(slots=True)
class Prepared:
    """One record of a batch: its period and its entries as apply-script arguments.

    ``refusal`` (when set) refuses the whole record in the script, after the late and duplicate
    checks, through its watermark and outbox like any other result.
    """

    rec: SourceRecord
    period: str
    #: (entry index, participant, score, operator, metadata JSON, tie-break prefix, index
    #: bucket, the prefix as the index stores it): the script's arguments of one entry
    #: (lua/rules.lua)
    entries: list[tuple[int, str, int, str, str, str, str, bytes]] = field(default_factory=list)
    refusal: str = ""
    #: a moderation's action and target ("" for a match)
    action: str = ""
    target: str = ""


def prepare_batch(
    config: LeaderboardConfigured, records: Sequence[SourceRecord]
) -> tuple[dict[str, int], list[Prepared]]:
    """The batch's periods (name → 1-based index) and records to apply.

    A match applies whole or not at all: a record with an invalid entry goes to the script
    with its entries' reasons as its refusal and no entry, so it registers no event id and
    moves no time (and a redelivery finds its result like any other record's).
    """
    periods: dict[str, int] = {}
    prepared: list[Prepared] = []
    # the submissions of a coalesced record share its time and offset, so its tie-break base
    last: tuple[int, int, str, bytes] = (-1, -1, "", b"")
    for rec in records:
        ev = rec.event
        mod = rec.moderation
        period = mod.period if mod is not None and mod.period else None
        item = Prepared(rec, period or rules.board_period(config, rec.time))
        periods.setdefault(item.period, len(periods) + 1)
        if mod is not None:
            item.action, item.target = mod.action.value, mod.target
            prepared.append(item)
            continue
        item.refusal = rules.entries_refusal(ev.entries)
        if item.refusal:
            prepared.append(item)
            continue
        first = 0 if rec.index is None else rec.index  # a submission has one entry
        # each entry's tie-break prefix and index bucket, computed here once by the functions
        # the model and the fold use, so the script computes neither
        at, offset = rec.time, rec.offset
        if not ev.entries:
            base, bval = "", b""
        elif last[0] == at and last[1] == offset:
            base, bval = last[2], last[3]
        else:
            base = rules.tiebreak_base(at, offset)
            bval = base_value(base)
            last = (at, offset, base, bval)
        pairs = rules.TIEBREAK_PAIRS
        for idx, entry in enumerate(ev.entries, first):
            op = entry.operator or config.operator
            meta = json.dumps(entry.metadata, sort_keys=True) if entry.metadata else ""
            pid = entry.participant_id
            if idx < 4096:
                pre, ival = base + pairs[idx], bval + PAIR_VALUES[idx]
            else:
                pre = rules.member(at, offset, idx, "")
                ival = index_value(pre)
            bucket = index_bucket(pid)
            item.entries.append((idx, pid, entry.score, str(op), meta, pre, bucket, ival))
        prepared.append(item)
    return periods, prepared


def apply_call(
    keys: BoardKeys,
    config: LeaderboardConfigured,
    board_args: tuple[Any, Any],
    periods: dict[str, int],
    prepared: Sequence[Prepared],
    grace_ms: int,
    guard_key: str | None,
    *,
    dedup: tuple[int, int] = (rules.DEDUP_WINDOW_MS, rules.DEDUP_MAX_IDS),
    directory: bool = False,
    mine: Callable[[str], bool] | None = None,
) -> Call:
    """KEYS and ARGV of one apply.lua / range_apply.lua call (layout: lua/rules.lua).

    The arguments go packed (``Script.packed``): ints where the script calls ``tonumber``,
    strings where it compares or concatenates.

    ``board_args`` are the script's two board arguments, ``directory`` adds a range shard's
    directory hash per period and ``mine`` keeps only the entries of those participants.
    """
    key_list = [
        keys.state,
        keys.outbox,
        keys.events,
        keys.open_periods,
        keys.ended_periods,
        keys.metadata,
    ]
    partition = prepared[0].rec.partition if prepared else 0
    cut = rules.closing_cut(config, grace_ms)
    head: list[Any] = [partition, str(config.sort_order), *board_args, *dedup, cut]
    head += [_limit(config.max_attempts), _limit(config.max_participants)]
    # the script compares this one as text ('1'); the numbers it calls tonumber on go as ints
    head += ["1" if config.retain_entries else "0", f"{keys.base}:", len(periods)]
    for period in periods:
        key_list += [keys.zset(period), keys.members(period)]
        if directory:
            key_list.append(keys.directory(period))
        head += [period, rules.period_closes_at(config, period, grace_ms)]
    body: list[Any] = []
    for item in prepared:
        ev = item.rec.event
        entries = item.entries if mine is None else [e for e in item.entries if mine(e[1])]
        ek = event_key(ev.event_id)
        body += [item.rec.position, ev.event_id, ek, event_bucket(ek) if ek else ""]
        body += [item.rec.time, periods[item.period]]
        body += [item.refusal, item.action, item.target, len(entries)]
        for idx, pid, score, op, meta, pre, bucket, ival in entries:
            # the score as text: the script also writes it into retained rows (a Lua number
            # would print as %.14g there, inexact past 10^14)
            body += (idx, pid, str(score), op, meta, pre, bucket, ival)
    return key_list, [*head, len(prepared), *body, guard_key or ""]


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def moderation_carrier(mod: LeaderboardModerated) -> MatchResultSubmitted:
    """The match-shaped record a moderation travels as through the apply: its event id and
    time, no entry, and ``match_id`` naming who did it and why (what the audit keeps)."""
    return MatchResultSubmitted(
        mod.event_id, f"{mod.issued_by}: {mod.reason}", mod.leaderboard_id, mod.occurred_at, ()
    )


def add_result(outcome: BoardOutcome, rec: SourceRecord, res: RecordResult) -> None:
    """Add what the apply script did to one record of a plain board to ``outcome``."""
    outcome.add_rows(rec, res)
    outcome.rejections += [
        Rejection(rec.partition, rec.offset, r, i, rec.index) for i, r in res.rejected
    ]
    if res.refused is not None:
        outcome.rejections.append(
            Rejection(rec.partition, rec.offset, res.refused, None, rec.index)
        )
    outcome.periods_ended += res.ended


def _entry(rank: int, member: Any, key: float, sort: SortOrder) -> Entry:
    k = int(key)
    return Entry(rank, rules.participant_of(_text(member)), -k if sort is SortOrder.DESC else k)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


__all__ = [
    "BoardOutcome",
    "Entry",
    "Operator",
    "Prepared",
    "ProjectionLost",
    "RankingStore",
    "Rejection",
    "SourceRecord",
    "add_result",
    "apply_call",
    "moderation_carrier",
    "prepare_batch",
]
