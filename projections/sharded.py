"""Sharded boards: one board spread over sub-boards (``{board#i}``) by score range or by hash.

A board is sharded when its configuration metadata holds ``shards``:

- ``"hash:N"``: participant ``p`` lives in shard ``crc32(p) % N``; each shard is a plain board
  written by apply.lua with the entries of its participants (every shard sees every record,
  so duplicate ids, late events and period ends agree). Top N = k-way merge of each shard's
  top N; rank = 1 + the sum over shards of the entries ranking above (exact, tie-break too).
- ``"range:B1,B2,..."``: shard ``i`` holds the scores in ``[B_i, B_{i+1})`` (ascending score
  bands; ``N = len(bounds) + 1``). Every shard applies every entry with range_apply.lua and
  keeps only its band in its sorted set, so a participant leaving a band leaves one shard and
  enters another at the same log offset; rank = local rank + sizes of the bands above.

Both are behind RankingStore's read interface with the same tie-break, and ``ShardedStore``
is a drop-in for RankingStore: unsharded boards go to the wrapped store unchanged. The layout
is in projections/layout.py, the merge of the shards' apply results in shard_merge.py.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from projections.keys import BoardKeys, index_member
from projections.layout import SHARDS_KEY, ShardLayout, directory_key, layout_of
from projections.redis_client import is_cluster
from projections.results import decode
from projections.scripts import APPLY, COUNT_BETTER, RANGE_APPLY, SWAP_SHARDED_LUA, Call
from projections.shard_checks import refuse_hash_overflows
from projections.shard_merge import (
    Ranks,
    ShardResults,
    add_hash_changes,
    first_versions,
    merge_range,
    number_hash_changes,
)
from projections.store import (
    BoardOutcome,
    Entry,
    Neighbours,
    Prepared,
    RankingStore,
    SourceRecord,
    apply_call,
    prepare_batch,
)
from streams import rules
from streams.errors import LeaderboardError
from streams.events import LeaderboardConfigured, SortOrder

log = logging.getLogger(__name__)

#: Entries per script call when a sharded board's batch is applied (see _apply_sliced).
SLICE_ENTRIES = 2_000


class ShardedStore(Neighbours):
    """RankingStore's apply/acknowledge and read interface, sharded boards included."""

    def __init__(
        self, base: RankingStore, *, ranks: bool = True, slice_entries: int = SLICE_ENTRIES
    ) -> None:
        self.base = base
        self.client = base.client
        self.prefix = base.prefix
        #: Whether applies read the global ranks of hash boards' changes (a rebuild whose
        #: results nobody publishes skips them: they are reads, the state is the same).
        self.read_ranks = ranks
        #: Entries per script call of a sharded board's batch (a bigger batch is sliced).
        self.slice_entries = slice_entries
        self._layouts: dict[str, ShardLayout | None] = {}

    # ------------------------------------------------------------------ layout
    def layout_key(self, board: str) -> str:
        """String key remembering the layout a board was first written with."""
        return f"{BoardKeys(board, self.prefix).base}:shards"

    def topk_key(self, board: str, period: str) -> str:
        """String key of the cached global top K of one period."""
        return f"{BoardKeys(board, self.prefix).base}:topk:{period}"

    async def layout(self, board: str) -> ShardLayout | None:
        """The board's stored layout (None for a plain board), cached in the process."""
        if board not in self._layouts:
            raw = await self.client.get(self.layout_key(board))
            if raw is None:
                return None  # not cached: the board may become sharded by its first apply
            self._layouts[board] = ShardLayout.parse(_text(raw))
        return self._layouts[board]

    async def _pin(self, board: str, wanted: ShardLayout) -> ShardLayout:
        """Record the layout on first write; a later different setting is ignored (logged)."""
        cached = self._layouts.get(board)
        if cached is None:
            key = self.layout_key(board)
            await self.client.set(key, wanted.spec, nx=True)
            cached = ShardLayout.parse(_text(await self.client.get(key)))
            self._layouts[board] = cached
        if cached != wanted:
            log.error(
                "board %s is sharded as %s; the configured %s is ignored (replay into a new "
                "board id to reshard)",
                board,
                cached.spec,
                wanted.spec,
            )
        return cached

    def shard_store(self) -> RankingStore:
        """A plain store on the same client and prefix, for reading one shard as a board."""
        return RankingStore(self.client, prefix=self.prefix, grace_ms=self.base.grace_ms)

    # ------------------------------------------------------------------ apply
    async def apply(
        self,
        batches: Sequence[tuple[LeaderboardConfigured, Sequence[SourceRecord]]],
    ) -> list[BoardOutcome]:
        """RankingStore.apply for any mix of plain and sharded boards (same outcome order)."""
        outcomes: list[BoardOutcome | None] = [None] * len(batches)
        plain = [i for i, (cfg, _) in enumerate(batches) if layout_of(cfg) is None]
        if plain:
            done = await self.base.apply([batches[i] for i in plain])
            for i, out in zip(plain, done, strict=True):
                outcomes[i] = out
        for i, (cfg, records) in enumerate(batches):
            wanted = layout_of(cfg)
            if wanted is not None:
                layout = await self._pin(cfg.leaderboard_id, wanted)
                outcomes[i] = await self._apply_sliced(cfg, records, layout)
        return [o for o in outcomes if o is not None]

    async def _apply_sliced(
        self, cfg: LeaderboardConfigured, records: Sequence[SourceRecord], layout: ShardLayout
    ) -> BoardOutcome:
        """A sharded board's batch in slices of about ``slice_entries`` entries, in log order.

        Every range shard runs every entry, so one script over a rebuild's chunk (thousands of
        records) would hold Redis for seconds (other clients get BUSY); slices keep each
        script call short. Their outcomes are concatenated (a period ends once).
        """
        slices = _slices(records, self.slice_entries)
        if len(slices) == 1:
            return await self._apply_sharded(cfg, records, layout)
        out = BoardOutcome(cfg.leaderboard_id)
        for part in slices:
            got = await self._apply_sharded(cfg, part, layout)
            out.changes += got.changes
            out.notifications += got.notifications
            out.rejections += got.rejections
            out.periods_ended += [e for e in got.periods_ended if e not in out.periods_ended]
            out.offsets += got.offsets
            out.positions += got.positions
        return out

    async def acknowledge(self, outcomes: Sequence[BoardOutcome]) -> None:
        """Drop published results from the outboxes (every shard's for sharded boards)."""
        plain: list[BoardOutcome] = []
        pipe: Any = self.client.pipeline(transaction=False)
        n = 0
        for out in outcomes:
            layout = self._layouts.get(out.board)
            if layout is None:
                plain.append(out)
            elif out.offsets:
                ids = layout.shard_ids(out.board)
                for shard in ids:
                    pipe.hdel(BoardKeys(shard, self.prefix).outbox, *map(str, out.offsets))
                    n += 1
                if layout.kind == "hash":
                    pipe.hdel(BoardKeys(ids[0], self.prefix).bases, *map(str, out.offsets))
        if n:
            await pipe.execute()
        await self.base.acknowledge(plain)

    async def _apply_sharded(
        self, cfg: LeaderboardConfigured, records: Sequence[SourceRecord], layout: ShardLayout
    ) -> BoardOutcome:
        outcome = BoardOutcome(cfg.leaderboard_id)
        periods, prepared = prepare_batch(cfg, records)
        before: Ranks = {}
        if layout.kind == "hash":
            await refuse_hash_overflows(
                self.client, self.prefix, cfg, layout, prepared, self.base.grace_ms, self.base.dedup
            )
            if self.read_ranks:
                before = await self._batch_ranks(cfg, prepared)
        calls = [self._shard_call(cfg, layout, i, periods, prepared) for i in range(layout.count)]
        script = APPLY if layout.kind == "hash" else RANGE_APPLY
        replies = await script.run_many(self.client, calls)
        results: ShardResults = [{r.offset: r for r in decode(reply)} for reply in replies]
        offsets = sorted({o for r in results for o in r})
        by_offset = {r.offset: r for r in records}
        if layout.kind == "hash":
            await self._merge_hash(cfg, layout, outcome, results, offsets, by_offset, before)
        else:
            merge_range(cfg, layout, outcome, results, offsets, by_offset)
        outcome.offsets = offsets
        return outcome

    def _shard_call(
        self,
        cfg: LeaderboardConfigured,
        layout: ShardLayout,
        shard: int,
        periods: dict[str, int],
        prepared: Sequence[Prepared],
    ) -> Call:
        keys = BoardKeys(layout.shard_ids(cfg.leaderboard_id)[shard], self.prefix)
        grace = self.base.grace_ms
        if layout.kind == "hash":  # apply.lua, no notifications; only the shard's participants
            return apply_call(
                keys,
                cfg,
                (0, 0),
                periods,
                prepared,
                grace,
                self.base.guard_key,
                dedup=self.base.dedup,
                mine=lambda pid: layout.home(pid) == shard,
            )
        lo = str(layout.bounds[shard - 1]) if shard > 0 else ""
        hi = str(layout.bounds[shard]) if shard < len(layout.bounds) else ""
        # range_apply.lua: every entry, the band's bounds; the projection marker is checked
        # as for hash shards (an emptied Redis would restart the shard's versions)
        return apply_call(
            keys,
            cfg,
            (lo, hi),
            periods,
            prepared,
            grace,
            self.base.guard_key,
            dedup=self.base.dedup,
            directory=True,
        )

    async def _batch_ranks(self, cfg: LeaderboardConfigured, prepared: Sequence[Prepared]) -> Ranks:
        """Global ranks of the batch's participants (hash boards: batch-boundary ranks)."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for item in prepared:
            wanted[item.period].update(e[1] for e in item.entries)
        return await self._ranks_of(cfg, wanted)

    async def _ranks_of(self, cfg: LeaderboardConfigured, wanted: dict[str, set[str]]) -> Ranks:
        out: Ranks = {}
        for period, pids in wanted.items():
            plist = sorted(pids)
            found = await self.ranks(cfg.leaderboard_id, period, cfg.sort_order, plist)
            out.update({(period, p): e.rank for p, e in zip(plist, found, strict=True) if e})
        return out

    async def _merge_hash(
        self,
        cfg: LeaderboardConfigured,
        layout: ShardLayout,
        outcome: BoardOutcome,
        results: ShardResults,
        offsets: list[int],
        by_offset: dict[int, SourceRecord],
        before: Ranks,
    ) -> None:
        """Versions = sum of shard versions (equal to an unsharded board's); ranks at batch ends.

        A shard without a change in the batch gives its current version, which is the one
        before the batch only while it has applied nothing after it: a record applied again
        (redelivered after a crash, with later batches applied meanwhile, or applied by a
        rebuild before the live projector gets it) is numbered from the version its first
        apply gave it, kept in shard 0's ``bases`` until its results are acknowledged.
        """
        first = first_versions(results, offsets)
        missing = [s for s in range(layout.count) if s not in first]
        ids = layout.shard_ids(cfg.leaderboard_id)
        bases_key = BoardKeys(ids[0], self.prefix).bases
        pipe: Any = self.client.pipeline(transaction=False)
        for s in missing:
            pipe.hget(BoardKeys(ids[s], self.prefix).state, "ver")
        if offsets:
            pipe.hmget(bases_key, [str(o) for o in offsets])
        replies = await pipe.execute() if missing or offsets else []
        for s, v in zip(missing, replies, strict=False):
            first[s] = int(v) if v is not None else 0
        kept = replies[len(missing)] if offsets else []
        known = {o: int(v) for o, v in zip(offsets, kept, strict=True) if v is not None}
        bases: dict[int, int] = {}
        changes = number_hash_changes(
            outcome, results, offsets, by_offset, sum(first.values()), known, bases
        )
        if offsets:
            await self.client.hset(bases_key, mapping={str(o): v for o, v in bases.items()})
        wanted: dict[str, set[str]] = defaultdict(set)
        for _, row in changes:
            wanted[row.period].add(row.participant_id)
        after = await self._ranks_of(cfg, wanted) if self.read_ranks else {}
        add_hash_changes(cfg, outcome, changes, before, after)

    # ------------------------------------------------------------------ reads
    async def version(self, board: str) -> int:
        """Board version: sum of shard versions (hash) or the shared shard version (range)."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.version(board)
        store = self.shard_store()
        vers = await asyncio.gather(*(store.version(s) for s in layout.shard_ids(board)))
        return sum(vers) if layout.kind == "hash" else max(vers)

    async def count(self, board: str, period: str) -> int:
        """Participants in one period's standings."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.count(board, period)
        return sum(await self._sizes(board, layout, period))

    async def _sizes(self, board: str, layout: ShardLayout, period: str) -> list[int]:
        store = self.shard_store()
        return list(
            await asyncio.gather(*(store.count(s, period) for s in layout.shard_ids(board)))
        )

    async def top(
        self, board: str, period: str, sort: SortOrder, *, limit: int = 10, offset: int = 0
    ) -> list[Entry]:
        """Rows ``offset+1 .. offset+limit``: k-way merge (hash) or band walk (range)."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.top(board, period, sort, limit=limit, offset=offset)
        if limit <= 0:
            return []
        ids = layout.shard_ids(board)
        if layout.kind == "hash":
            stop = offset + limit - 1
            raw: list[Any] = await asyncio.gather(
                *(
                    self.client.zrange(
                        BoardKeys(s, self.prefix).zset(period), 0, stop, withscores=True
                    )
                    for s in ids
                )
            )
            merged = heapq.merge(*[[(float(k), _bytes(m)) for m, k in rows] for rows in raw])
            rows = [
                row for i, row in zip(range(offset + limit), merged, strict=False) if i >= offset
            ]
            return [_row(offset + i + 1, m, k, sort) for i, (k, m) in enumerate(rows)]
        sizes = await self._sizes(board, layout, period)
        out: list[Entry] = []
        start = 0
        for band in layout.best_first(sort):
            size = sizes[band]
            lo = max(offset + len(out) - start, 0)
            if lo < size and len(out) < limit:
                want = limit - len(out)
                raw_rows: list[Any] = await self.client.zrange(
                    BoardKeys(ids[band], self.prefix).zset(period),
                    lo,
                    lo + want - 1,
                    withscores=True,
                )
                base = start + lo
                out += [_row(base + i + 1, m, k, sort) for i, (m, k) in enumerate(raw_rows)]
            start += size
        return out

    async def ranks(
        self, board: str, period: str, sort: SortOrder, pids: Sequence[str]
    ) -> list[Entry | None]:
        """Exact global ranks: ZCOUNT-style sums over shards (hash) or band offsets (range)."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.ranks(board, period, sort, pids)
        if not pids:
            return []
        ids = layout.shard_ids(board)
        if layout.kind == "range":
            return await self._range_ranks(board, layout, period, sort, list(pids))
        found: dict[str, tuple[float, bytes]] = {}
        homes: dict[int, list[str]] = defaultdict(list)
        for pid in pids:
            homes[layout.home(pid)].append(pid)
        pipe: Any = self.client.pipeline(transaction=False)
        order: list[tuple[int, list[str]]] = sorted(homes.items())
        for s, plist in order:
            for pid in plist:
                pipe.hget(BoardKeys(ids[s], self.prefix).index(period, pid), pid)
        flat = iter(await pipe.execute())
        mems = [[index_member(next(flat), pid) for pid in plist] for _, plist in order]
        pipe = self.client.pipeline(transaction=False)
        asked: list[tuple[str, bytes]] = []
        for (s, plist), ms in zip(order, mems, strict=True):
            for pid, mem in zip(plist, ms, strict=True):
                if mem is not None:
                    pipe.zscore(BoardKeys(ids[s], self.prefix).zset(period), mem)
                    asked.append((pid, mem.encode()))
        scores = await pipe.execute() if asked else []
        for (pid, m), sc in zip(asked, scores, strict=True):
            if sc is not None:
                found[pid] = (float(sc), m)
        if not found:
            return [None] * len(pids)
        plist = list(found)
        args: list[Any] = []
        for pid in plist:
            k, m = found[pid]
            args += [str(int(k)), m]
        calls = [([BoardKeys(s, self.prefix).zset(period)], args) for s in ids]
        counts = await COUNT_BETTER.run_many(self.client, calls)
        result: dict[str, Entry] = {}
        for j, pid in enumerate(plist):
            k = int(found[pid][0])
            above = sum(int(c[j]) for c in counts)
            result[pid] = Entry(above + 1, pid, -k if sort is SortOrder.DESC else k)
        return [result.get(p) for p in pids]

    async def _range_ranks(
        self, board: str, layout: ShardLayout, period: str, sort: SortOrder, pids: list[str]
    ) -> list[Entry | None]:
        ids = layout.shard_ids(board)
        raw = await self.client.hmget(directory_key(BoardKeys(ids[0], self.prefix), period), pids)
        sizes_task = asyncio.ensure_future(self._sizes(board, layout, period))
        pipe: Any = self.client.pipeline(transaction=False)
        asked: list[tuple[int, str, int]] = []
        for j, (pid, val) in enumerate(zip(pids, raw, strict=True)):
            if val is None:
                continue
            score_text, _, mem = _text(val).partition("\t")
            score = int(score_text)
            band = layout.band(score)
            pipe.zrank(BoardKeys(ids[band], self.prefix).zset(period), mem)
            asked.append((j, pid, score))
        local = await pipe.execute() if asked else []
        sizes = await sizes_task
        out: list[Entry | None] = [None] * len(pids)
        for (j, pid, score), r in zip(asked, local, strict=True):
            if r is None:
                continue
            band = layout.band(score)
            out[j] = Entry(int(r) + 1 + sum(sizes[t] for t in layout.above(band, sort)), pid, score)
        return out

    async def standings(
        self, board: str, period: str, sort: SortOrder, *, chunk: int = 10_000
    ) -> list[Entry]:
        """The whole standings, best first (each shard read once, then merged)."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.standings(board, period, sort, chunk=chunk)
        ids = layout.shard_ids(board)
        parts = [await self._raw(BoardKeys(s, self.prefix).zset(period), chunk) for s in ids]
        if layout.kind == "range":
            raw = [row for band in layout.best_first(sort) for row in parts[band]]
        else:
            raw = list(heapq.merge(*parts))
        return [_row(i + 1, m, k, sort) for i, (k, m) in enumerate(raw)]

    async def _raw(self, zset: str, chunk: int) -> list[tuple[float, bytes]]:
        out: list[tuple[float, bytes]] = []
        while True:
            page: list[Any] = await self.client.zrange(
                zset, len(out), len(out) + chunk - 1, withscores=True
            )
            out += [(float(k), _bytes(m)) for m, k in page]
            if len(page) < chunk:
                return out

    async def checksum(self, board: str, period: str, sort: SortOrder) -> tuple[str, int]:
        """SHA-256 of the standings and their participant count (same as an unsharded board)."""
        rows = await self.standings(board, period, sort)
        digest = rules.standings_checksum((e.rank, e.participant_id, e.score) for e in rows)
        return digest, len(rows)

    async def periods(self, board: str) -> list[str]:
        """Every period with standings in any shard, sorted."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.periods(board)
        store = self.shard_store()
        found = await asyncio.gather(*(store.periods(s) for s in layout.shard_ids(board)))
        return sorted({p for ps in found for p in ps})

    async def watermark(self, board: str, partition: int) -> int:
        """Offset applied by every shard from ``partition`` (the lowest shard watermark)."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.watermark(board, partition)
        store = self.shard_store()
        return min([await store.watermark(s, partition) for s in layout.shard_ids(board)])

    async def metadata(self, board: str, pids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Latest metadata of participants (missing ones omitted)."""
        layout = await self.layout(board)
        if layout is None:
            return await self.base.metadata(board, pids)
        ids = layout.shard_ids(board)
        store = self.shard_store()
        if layout.kind == "range":
            return await store.metadata(ids[0], pids)
        out: dict[str, dict[str, str]] = {}
        for s in range(layout.count):
            out.update(await store.metadata(ids[s], [p for p in pids if layout.home(p) == s]))
        return out

    async def board_keys(self, board: str) -> list[str]:
        """Every existing key of the board and of its shards under this store's prefix."""
        layout = await self.layout(board)
        keys = await self.base.board_keys(board)
        if layout is not None:
            store = self.shard_store()
            for s in layout.shard_ids(board):
                keys += await store.board_keys(s)
        return keys

    async def swap_from(self, shadow: ShardedStore, board: str, partition: int) -> bool:
        """Atomically replace this store's keys of ``board`` (every shard) by ``shadow``'s.

        A plain board swaps as RankingStore.swap_from does. A sharded board swaps all its
        shards and its board keys (layout, cached top K) in one script, so readers and the
        live projector never see some shards rebuilt and others not; that needs one node
        (on Redis Cluster the shards sit in different slots: refused). Returns False
        (nothing changed) while any shadow shard is behind the highest live shard watermark.
        """
        theirs = await shadow.layout(board)
        if theirs is None:
            return await self.base.swap_from(shadow.base, board, partition)
        refuse_cluster_swap(self.client, board)
        mine = await self.layout(board)
        if mine is not None and mine != theirs:
            raise LeaderboardError(
                f"{board} is sharded as {mine.spec} live but {theirs.spec} rebuilt: a swap "
                "cannot reshard a board; replay into a new board id instead"
            )
        live_ids = [BoardKeys(s, self.prefix) for s in theirs.shard_ids(board)]
        shade_ids = [BoardKeys(s, shadow.prefix) for s in theirs.shard_ids(board)]
        heads: list[str] = []
        for live, shade in zip(live_ids, shade_ids, strict=True):
            heads += [live.state, shade.state, shade.outbox]
        pairs: list[str] = []
        for key in await shadow.board_keys(board):
            pairs += [key, self.prefix + key[len(shadow.prefix) :]]
        key_list = [*heads, *pairs, *await self.board_keys(board)]
        done = await self.client.eval(
            SWAP_SHARDED_LUA, len(key_list), *key_list, partition, theirs.count, len(pairs) // 2
        )
        if done:
            self._layouts[board] = theirs
            shadow._layouts.pop(board, None)
        return bool(done)

    async def clear(self, board: str) -> int:
        """Delete every key of the board and of its shards; returns how many."""
        layout = await self.layout(board)
        n = 0
        if layout is not None:
            store = self.shard_store()
            for s in layout.shard_ids(board):
                n += await store.clear(s)
        self._layouts.pop(board, None)
        return n + await self.base.clear(board)


def _slices(records: Sequence[SourceRecord], entries: int) -> list[Sequence[SourceRecord]]:
    """``records`` cut in log order into runs of at most ``entries`` entries (at least one
    record each)."""
    out: list[Sequence[SourceRecord]] = []
    start = n = 0
    for i, rec in enumerate(records):
        size = max(1, len(rec.event.entries))
        if n and n + size > entries:
            out.append(records[start:i])
            start, n = i, 0
        n += size
    out.append(records[start:])
    return out


def refuse_cluster_swap(client: Any, board: str) -> None:
    """One clear error when a sharded board would be swapped on Redis Cluster."""
    if is_cluster(client):
        raise LeaderboardError(
            f"{board} is a sharded board on Redis Cluster: its shards sit in different slots, "
            "so no one atomic step can swap them all; replay it with --verify or --dry-run, "
            "or rebuild it on a single node (docs/operations.md)"
        )


def _row(rank: int, member: Any, key: float, sort: SortOrder) -> Entry:
    k = int(key)
    return Entry(rank, rules.participant_of(_text(member)), -k if sort is SortOrder.DESC else k)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


__all__ = [
    "SHARDS_KEY",
    "ShardLayout",
    "ShardedStore",
    "directory_key",
    "layout_of",
    "refuse_cluster_swap",
]
