"""RankingStore's public API in memory, on the reference model: same outcomes, no Redis.

Behaves like the Redis store result for result (tests/contract holds both to one contract):
the entry checks run before the apply as the store does them, then streams.model applies
what the script would; the watermark per (board, partition), the outbox of unacknowledged
results and the tie order are the Redis store's. Sharding metadata is ignored: a sharded
board is one board here, as its readers present it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from projections.keys import BoardKeys
from projections.store import BoardOutcome, Entry, Neighbours, Rejection, SourceRecord
from streams import rules
from streams.events import LeaderboardConfigured, SortOrder
from streams.model import OVERTAKEN_LIMIT, ModelBoard, RecordResult, split_entries
from streams.ports import RankingReader, RankingRebuilder, RankingWriter

#: The write side of the ranking stores (RankingStore, MemoryStore; ShardedStore lacks the swap).
Writer: TypeAlias = RankingRebuilder[SourceRecord, BoardOutcome]
#: The read side of the ranking stores (RankingStore, ShardedStore, MemoryStore).
Reader: TypeAlias = RankingReader[Entry]


@dataclass(slots=True)
class _Board:
    """One board: the model's state plus what the Redis store keeps beside it."""

    model: ModelBoard
    watermarks: dict[int, int] = field(default_factory=dict)
    #: results by position (``SourceRecord.position``: the offset, or ``offset:index``)
    outbox: dict[str, RecordResult] = field(default_factory=dict)


class MemoryStore(Neighbours):
    """Leaderboards in process memory, written through the same idempotent batch apply."""

    def __init__(
        self,
        *,
        prefix: str = "lb",
        overtaken_limit: int = OVERTAKEN_LIMIT,
        grace_ms: int = 60_000,
        dedup: tuple[int, int] = (rules.DEDUP_WINDOW_MS, rules.DEDUP_MAX_IDS),
        fold: bool = False,
    ) -> None:
        """``fold`` keeps only the final state (``ModelBoard.fold``): no per-entry results,
        and the standings are read through ``folded`` once the log is applied."""
        self.prefix = prefix
        self.fold = fold
        self.overtaken_limit = overtaken_limit
        self.grace_ms = grace_ms
        self.dedup = dedup
        self._boards: dict[str, _Board] = {}

    def keys(self, board: str) -> BoardKeys:
        """Key names the Redis store would use for ``board`` under this store's prefix."""
        return BoardKeys(board, self.prefix)

    def _board(self, config: LeaderboardConfigured) -> _Board:
        found = self._boards.get(config.leaderboard_id)
        if found is None:
            model = ModelBoard(
                config, self.grace_ms, self.overtaken_limit, dedup=self.dedup, fold=self.fold
            )
            found = self._boards[config.leaderboard_id] = _Board(model)
        else:  # the configuration of each call rules, as for the apply script
            found.model.config = config
            found.model.grace_ms = self.grace_ms
            found.model.overtaken_limit = self.overtaken_limit
            found.model.dedup = self.dedup
        return found

    # ------------------------------------------------------------------ apply
    async def apply(
        self,
        batches: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]],
    ) -> list[BoardOutcome]:
        """Apply each board's records (in log order); idempotent like RankingStore.apply."""
        outcomes: list[BoardOutcome] = []
        for config, records in batches:
            outcome = BoardOutcome(config.leaderboard_id)
            outcomes.append(outcome)
            prepared = []
            for rec in records:  # invalid entries refuse their match, through the script
                valid, bad = split_entries(rec.event)  # the text of rules.entries_refusal
                refusal = "; ".join(f"entries[{idx}]: {reason}" for idx, reason in bad)
                if rec.index is not None:  # a coalesced submission: its entry is at its index
                    valid = [(rec.index, entry) for _, entry in valid]
                prepared.append((rec, valid, refusal))
            board = self._board(config)
            # one call per board: the first record's partition names the watermark
            partition = records[0].partition if records else 0
            wm = board.watermarks.get(partition, -1)
            new_wm = wm
            for rec, valid, refusal in prepared:
                if rec.offset <= wm:
                    stored = board.outbox.get(rec.position)
                    if stored is None:
                        continue
                    result = stored
                else:
                    new_wm = rec.offset
                    result = board.model.apply_valid(
                        rec.partition,
                        rec.offset,
                        rec.event,
                        valid,
                        refusal,
                        at=rec.time,
                        moderation=rec.moderation,
                    )
                    board.outbox[rec.position] = result
                outcome.offsets.append(rec.offset)
                outcome.positions.append(rec.position)
                outcome.changes += result.changes
                outcome.notifications += result.notifications
                outcome.rejections += [
                    Rejection(rec.partition, rec.offset, reason, idx, rec.index)
                    for idx, reason in result.rejections
                ]
                outcome.periods_ended += result.periods_ended
            board.watermarks[partition] = new_wm
        return outcomes

    async def acknowledge(self, outcomes: Sequence[BoardOutcome]) -> None:
        """Drop published results from each board's outbox."""
        for outcome in outcomes:
            board = self._boards.get(outcome.board)
            if board is not None:
                for position in outcome.positions:
                    board.outbox.pop(position, None)

    # ------------------------------------------------------------------ rebuild
    def state(self, config: LeaderboardConfigured) -> tuple[ModelBoard, dict[int, int]]:
        """The board's model and its watermark per partition, both live (created if new): a
        rebuild's fold applies plain matches to them directly (``ModelBoard.apply_valid``)."""
        found = self._board(config)
        return found.model, found.watermarks

    def folded(self, board: str) -> tuple[ModelBoard, dict[int, int]] | None:
        """The board's settled model and watermarks (for a bulk load), or None if unknown."""
        found = self._boards.get(board)
        if found is None:
            return None
        found.model.settle()
        return found.model, dict(found.watermarks)

    async def board_keys(self, board: str) -> list[str]:
        """The keys the Redis store would hold for the board now, sorted."""
        found = self._boards.get(board)
        if found is None:
            return []
        keys = self.keys(board)
        m = found.model
        names = [keys.state]
        parts = [
            (keys.outbox, found.outbox),
            (keys.events, m.seen_events),
            (keys.open_periods, m.open_periods),
            (keys.ended_periods, m.ended),
            (keys.metadata, m.metadata),
        ]
        names += [name for name, part in parts if part]
        names += keys.event_fields(m.seen_events.items())
        for period, table in m.periods.items():
            if table:
                names += [
                    keys.zset(period),
                    *keys.index_names(period, table.members),
                ]
        return sorted(names)

    async def clear(self, board: str) -> int:
        """Delete everything of the board; returns how many Redis keys that would be."""
        n = len(await self.board_keys(board))
        self._boards.pop(board, None)
        return n

    async def watermark(self, board: str, partition: int) -> int:
        """Offset of the last record applied from ``partition`` (-1 if none)."""
        found = self._boards.get(board)
        return found.watermarks.get(partition, -1) if found else -1

    async def swap_from(self, shadow: MemoryStore, board: str, partition: int) -> bool:
        """Replace this store's ``board`` by ``shadow``'s (see RankingStore.swap_from).

        Returns False (nothing changed) while the shadow is behind the live watermark.
        """
        live = await self.watermark(board, partition)
        if await shadow.watermark(board, partition) < live:
            return False
        moved = shadow._boards.pop(board, None)
        self._boards.pop(board, None)
        if moved is not None:
            # results at or below the live watermark were published by the live worker
            moved.outbox = {
                o: r for o, r in moved.outbox.items() if int(o.partition(":")[0]) > live
            }
            self._boards[board] = moved
        return True

    # ------------------------------------------------------------------ queries
    async def version(self, board: str) -> int:
        """The board's version (0 if it has no applied change)."""
        found = self._boards.get(board)
        return found.model.version if found else 0

    def _table_rows(self, board: str, period: str) -> list[tuple[int, str]]:
        found = self._boards.get(board)
        table = found.model.periods.get(period) if found else None
        return table.order if table else []

    async def count(self, board: str, period: str) -> int:
        """Participants in one period's standings."""
        return len(self._table_rows(board, period))

    async def top(
        self, board: str, period: str, sort: SortOrder, *, limit: int = 10, offset: int = 0
    ) -> list[Entry]:
        """Rows ``offset+1 .. offset+limit`` of the standings, best first."""
        if limit <= 0:
            return []
        found = self._boards.get(board)
        table = found.model.periods.get(period) if found else None
        if table is None:
            return []
        rows = table.window(offset, offset + limit - 1)
        return [_entry(offset + i + 1, m, k, sort) for i, (k, m) in enumerate(rows)]

    async def ranks(
        self, board: str, period: str, sort: SortOrder, pids: Sequence[str]
    ) -> list[Entry | None]:
        """Rank and score of many participants."""
        found = self._boards.get(board)
        table = found.model.periods.get(period) if found else None
        out: list[Entry | None] = []
        for pid in pids:
            row = table.members.get(pid) if table else None
            if table is None or row is None:
                out.append(None)
                continue
            key = row[0]
            out.append(Entry(table.rank_of(row), pid, -key if sort is SortOrder.DESC else key))
        return out

    async def standings(
        self, board: str, period: str, sort: SortOrder, *, chunk: int = 10_000
    ) -> list[Entry]:
        """The whole standings, best first (``chunk`` only matters to Redis)."""
        rows = self._table_rows(board, period)
        return [_entry(i + 1, m, k, sort) for i, (k, m) in enumerate(rows)]

    async def checksum(self, board: str, period: str, sort: SortOrder) -> tuple[str, int]:
        """SHA-256 of the standings and their participant count."""
        rows = await self.standings(board, period, sort)
        digest = rules.standings_checksum((e.rank, e.participant_id, e.score) for e in rows)
        return digest, len(rows)

    async def periods(self, board: str) -> list[str]:
        """Every period of the board that has standings, sorted."""
        found = self._boards.get(board)
        if found is None:
            return []
        return sorted(p for p, table in found.model.periods.items() if table)

    async def metadata(self, board: str, pids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Latest metadata of participants (missing ones omitted)."""
        found = self._boards.get(board)
        if found is None or not pids:
            return {}
        meta = found.model.metadata
        return {p: dict(meta[p]) for p in pids if p in meta}


def _entry(rank: int, member: str, key: int, sort: SortOrder) -> Entry:
    return Entry(rank, rules.participant_of(member), -key if sort is SortOrder.DESC else key)


if TYPE_CHECKING:
    from projections.sharded import ShardedStore
    from projections.store import RankingStore

    def _fits(memory: MemoryStore, redis_store: RankingStore, sharded: ShardedStore) -> None:
        """For mypy only: each store fits the ports it is used through."""
        rebuilders: list[Writer] = [memory, redis_store]
        writers: list[RankingWriter[SourceRecord, BoardOutcome]] = [memory, redis_store, sharded]
        readers: list[Reader] = [memory, redis_store, sharded]
        del rebuilders, writers, readers


__all__ = ["MemoryStore", "Reader", "Writer"]
