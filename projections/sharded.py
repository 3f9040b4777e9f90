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
is a drop-in for RankingStore: unsharded boards go to the wrapped store unchanged.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import json
import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from projections.keys import BoardKeys
from projections.redis_client import RedisClient
from projections.store import (
    BoardOutcome,
    Entry,
    RankingStore,
    Rejection,
    SourceRecord,
    change_from_fields,
)
from streams import rules
from streams.errors import LeaderboardError
from streams.events import (
    LeaderboardConfigured,
    NotificationKind,
    ParticipantNotified,
    SortOrder,
)

log = logging.getLogger(__name__)

#: Configuration metadata key choosing the sharding of a board.
SHARDS_KEY = "shards"

_LUA = resources.files("projections").joinpath("lua")


class Script:
    """A Lua script run by EVALSHA (reloaded once when a node lost its script cache)."""

    def __init__(self, name: str) -> None:
        self.text = _LUA.joinpath(name).read_text()
        self.sha: str | None = None

    async def run_many(
        self, client: RedisClient, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run one call per (keys, args) in one pipeline (each call's keys share one slot)."""
        if not calls:
            return []
        if self.sha is None:
            self.sha = await client.script_load(self.text)
        for attempt in (1, 2):
            pipe: Any = client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                self.sha = await client.script_load(self.text)
        raise AssertionError("unreachable")


APPLY = Script("apply.lua")
RANGE_APPLY = Script("range_apply.lua")
COUNT_BETTER = Script("count_better.lua")


@dataclass(frozen=True, slots=True)
class ShardLayout:
    """How a board is split: ``hash`` by participant or ``range`` by score bands."""

    kind: str
    count: int
    bounds: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ShardLayout:
        """Parse ``hash:N`` or ``range:B1,B2,...`` (ascending integer score boundaries)."""
        kind, _, rest = text.strip().partition(":")
        try:
            if kind == "hash":
                n = int(rest)
                if n < 1:
                    raise ValueError(rest)
                return cls("hash", n)
            if kind == "range":
                bounds = tuple(int(b) for b in rest.split(","))
                if list(bounds) != sorted(set(bounds)):
                    raise ValueError(rest)
                if not all(rules.in_exact_range(b) for b in bounds):
                    raise ValueError(rest)
                return cls("range", len(bounds) + 1, bounds)
        except ValueError:
            pass
        raise LeaderboardError(
            f"bad shards setting {text!r}: use hash:N (N >= 1) or range:B1,B2,... "
            "(strictly ascending integer score boundaries)"
        )

    @property
    def spec(self) -> str:
        """The setting text this layout was parsed from (normalized)."""
        if self.kind == "hash":
            return f"hash:{self.count}"
        return "range:" + ",".join(str(b) for b in self.bounds)

    def shard_ids(self, board: str) -> list[str]:
        """Board ids of the shards: ``board#0`` .. (each its own hash tag)."""
        return [f"{board}#{i}" for i in range(self.count)]

    def home(self, pid: str) -> int:
        """Shard of a participant on a hash-sharded board."""
        return zlib.crc32(pid.encode()) % self.count

    def band(self, score: int) -> int:
        """Shard of a score on a range-sharded board."""
        return bisect.bisect_right(self.bounds, score)

    def best_first(self, sort: SortOrder) -> list[int]:
        """Range shards in standings order (the best band first)."""
        order = list(range(self.count))
        return order[::-1] if sort is SortOrder.DESC else order

    def above(self, band: int, sort: SortOrder) -> range:
        """Range shards whose entries all rank above those of ``band``."""
        return range(band + 1, self.count) if sort is SortOrder.DESC else range(band)


def layout_of(config: LeaderboardConfigured | None) -> ShardLayout | None:
    """The sharding a board's configuration asks for, or None for a plain board.

    An unparsable setting is logged and the board stays plain: a configuration typo must not
    stop the projector (fix the setting before the board's first record to shard it).
    """
    if config is None or SHARDS_KEY not in config.metadata:
        return None
    try:
        return ShardLayout.parse(config.metadata[SHARDS_KEY])
    except LeaderboardError as exc:
        log.error("board %s: %s; treated as unsharded", config.leaderboard_id, exc)
        return None


@dataclass(slots=True)
class _Line:
    shard: int
    fields: list[str]


@dataclass(slots=True)
class _Record:
    rec: SourceRecord
    entries: list[tuple[int, str, int, str, str]] = field(default_factory=list)


class ShardedStore:
    """RankingStore's apply/acknowledge and read interface, sharded boards included."""

    def __init__(self, base: RankingStore) -> None:
        self.base = base
        self.client = base.client
        self.prefix = base.prefix
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
                outcomes[i] = await self._apply_sharded(cfg, records, layout)
        return [o for o in outcomes if o is not None]

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
                for shard in layout.shard_ids(out.board):
                    pipe.hdel(BoardKeys(shard, self.prefix).outbox, *map(str, out.offsets))
                    n += 1
        if n:
            await pipe.execute()
        await self.base.acknowledge(plain)

    async def _apply_sharded(
        self, cfg: LeaderboardConfigured, records: Sequence[SourceRecord], layout: ShardLayout
    ) -> BoardOutcome:
        board = cfg.leaderboard_id
        outcome = BoardOutcome(board)
        periods: dict[str, int] = {}
        prepared: list[_Record] = []
        for rec in records:
            period = rules.period_key(cfg.reset_period, rec.event.occurred_at)
            periods.setdefault(period, len(periods) + 1)
            item = _Record(rec)
            for idx, entry in enumerate(rec.event.entries):
                reason = rules.entry_reject_reason(entry.score, entry.participant_id)
                if reason:
                    outcome.rejections.append(Rejection(rec.partition, rec.offset, reason, idx))
                    continue
                op = entry.operator or cfg.operator
                meta = json.dumps(entry.metadata, sort_keys=True) if entry.metadata else ""
                item.entries.append((idx, entry.participant_id, entry.score, str(op), meta))
            prepared.append(item)
        shards = layout.shard_ids(board)
        before: dict[tuple[str, str], int] = {}
        if layout.kind == "hash":
            before = await self._batch_ranks(cfg, prepared)
        calls = [
            self._shard_call(cfg, layout, i, sid, periods, prepared) for i, sid in enumerate(shards)
        ]
        script = APPLY if layout.kind == "hash" else RANGE_APPLY
        replies = await script.run_many(self.client, calls)
        results: list[dict[int, list[list[str]]]] = []
        for reply in replies:
            res: dict[int, list[list[str]]] = {}
            for offset_text, text in reply:
                body = _text(text)
                res[int(offset_text)] = [ln.split("\t") for ln in body.split("\n")] if body else []
            results.append(res)
        offsets = sorted({o for r in results for o in r})
        by_offset = {r.offset: r for r in records}
        if layout.kind == "hash":
            await self._merge_hash(cfg, layout, outcome, results, offsets, by_offset, before)
        else:
            self._merge_range(cfg, layout, outcome, results, offsets, by_offset)
        outcome.offsets = offsets
        return outcome

    def _shard_call(
        self,
        cfg: LeaderboardConfigured,
        layout: ShardLayout,
        shard: int,
        shard_id: str,
        periods: dict[str, int],
        prepared: Sequence[_Record],
    ) -> tuple[list[str], list[Any]]:
        keys = BoardKeys(shard_id, self.prefix)
        key_list = [
            keys.state,
            keys.outbox,
            keys.events,
            keys.open_periods,
            keys.ended_periods,
            keys.metadata,
        ]
        if layout.kind == "hash":
            head: list[Any] = [
                prepared[0].rec.partition if prepared else 0,
                str(cfg.sort_order),
                0,
                0,
            ]
        else:
            lo = str(layout.bounds[shard - 1]) if shard > 0 else ""
            hi = str(layout.bounds[shard]) if shard < len(layout.bounds) else ""
            head = [prepared[0].rec.partition if prepared else 0, str(cfg.sort_order), lo, hi]
        head.append(len(periods))
        for period in periods:
            key_list += [keys.zset(period), keys.members(period)]
            if layout.kind == "range":
                key_list.append(directory_key(keys, period))
            head += [period, rules.period_closes_at(cfg.reset_period, period, self.base.grace_ms)]
        body: list[Any] = []
        for item in prepared:
            ev = item.rec.event
            period = rules.period_key(cfg.reset_period, ev.occurred_at)
            mine = [e for e in item.entries if layout.kind == "range" or layout.home(e[1]) == shard]
            body += [item.rec.offset, ev.event_id, ev.occurred_at, periods[period], len(mine)]
            for e in mine:
                body += list(e)
        if layout.kind == "hash":  # apply.lua's last argument: the projection marker (or none)
            body.append(self.base.guard_key or "")
        return key_list, [*head, len(prepared), *body]

    async def _batch_ranks(
        self, cfg: LeaderboardConfigured, prepared: Sequence[_Record]
    ) -> dict[tuple[str, str], int]:
        """Global ranks of the batch's participants (hash boards: batch-boundary ranks)."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for item in prepared:
            period = rules.period_key(cfg.reset_period, item.rec.event.occurred_at)
            wanted[period].update(e[1] for e in item.entries)
        out: dict[tuple[str, str], int] = {}
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
        results: list[dict[int, list[list[str]]]],
        offsets: list[int],
        by_offset: dict[int, SourceRecord],
        before: dict[tuple[str, str], int],
    ) -> None:
        """Versions = sum of shard versions (equal to an unsharded board's); ranks at batch ends."""
        first: dict[int, int] = {}
        for s, res in enumerate(results):
            for o in offsets:
                for f in res.get(o, []):
                    if f[0] == "C" and s not in first:
                        first[s] = int(f[8]) - 1
        missing = [s for s in range(layout.count) if s not in first]
        if missing:
            pipe: Any = self.client.pipeline(transaction=False)
            for s in missing:
                pipe.hget(
                    BoardKeys(layout.shard_ids(cfg.leaderboard_id)[s], self.prefix).state, "ver"
                )
            for s, v in zip(missing, await pipe.execute(), strict=True):
                first[s] = int(v) if v is not None else 0
        version = sum(first.values())
        changes: list[tuple[SourceRecord, list[str]]] = []
        for o in offsets:
            rec = by_offset[o]
            lines = [_Line(s, f) for s, res in enumerate(results) for f in res.get(o, [])]
            cs = sorted(
                (ln for ln in lines if ln.fields[0] == "C"), key=lambda ln: int(ln.fields[1])
            )
            for ln in cs:
                version += 1
                ln.fields[8] = str(version)
                changes.append((rec, ln.fields))
            self._other_lines(outcome, rec, lines, version)
        pids = {(f[2], f[3]) for _, f in changes}
        after: dict[tuple[str, str], int] = {}
        for period in {p for p, _ in pids}:
            plist = sorted(pid for p, pid in pids if p == period)
            found = await self.ranks(cfg.leaderboard_id, period, cfg.sort_order, plist)
            after.update({(period, p): e.rank for p, e in zip(plist, found, strict=True) if e})
        seen: set[tuple[str, str]] = set()
        for rec, f in changes:
            key = (f[2], f[3])
            old = before.get(key) if key not in seen else after.get(key)
            seen.add(key)
            f[4] = str(old) if old is not None and f[6] else ""
            f[5] = str(after.get(key, 0))
            self._change(cfg, outcome, rec, f)

    def _merge_range(
        self,
        cfg: LeaderboardConfigured,
        layout: ShardLayout,
        outcome: BoardOutcome,
        results: list[dict[int, list[list[str]]]],
        offsets: list[int],
        by_offset: dict[int, SourceRecord],
    ) -> None:
        """Exact global ranks: local rank + sizes of the bands above at that very change."""
        sort = cfg.sort_order
        for o in offsets:
            rec = by_offset[o]
            per_shard = [res.get(o) for res in results]
            ref = next(r for r in per_shard if r is not None)
            lines = [_Line(0, f) for f in ref]
            self._other_lines(outcome, rec, lines, None)
            cs = [f for f in ref if f[0] == "C"]
            for k, f in enumerate(cs):
                views = [
                    [g for g in r if g[0] == "C"][k] if r is not None else None for r in per_shard
                ]
                old = new = None
                if f[6]:
                    band = layout.band(int(f[6]))
                    v = views[band]
                    if v is not None and v[4]:
                        old = int(v[4]) + sum(
                            int(_view(views, t)[11]) for t in layout.above(band, sort)
                        )
                band = layout.band(int(f[7]))
                v = views[band]
                if v is not None and v[5]:
                    new = int(v[5]) + sum(
                        int(_view(views, t)[12]) for t in layout.above(band, sort)
                    )
                g = list(f[:11])
                g[4] = str(old) if old is not None else ""
                g[5] = str(new) if new is not None else "0"
                self._change(cfg, outcome, rec, g)

    @staticmethod
    def _other_lines(
        outcome: BoardOutcome, rec: SourceRecord, lines: list[_Line], version: int | None
    ) -> None:
        reasons_seen = False
        for ln in lines:
            f = ln.fields
            if f[0] == "R":
                outcome.rejections.append(Rejection(rec.partition, rec.offset, f[2], int(f[1])))
            elif f[0] in ("D", "L") and not reasons_seen:
                outcome.rejections.append(Rejection(rec.partition, rec.offset, f[1]))
                reasons_seen = True
            elif f[0] == "E" and ln.shard == lines[0].shard:
                ver = version if version is not None else int(f[2])
                if (f[1], ver) not in outcome.periods_ended:
                    outcome.periods_ended.append((f[1], ver))

    @staticmethod
    def _change(
        cfg: LeaderboardConfigured, outcome: BoardOutcome, rec: SourceRecord, f: list[str]
    ) -> None:
        change = change_from_fields(rec, f)
        outcome.changes.append(change)
        n = cfg.watch_top_n
        if n <= 0:
            return
        was = change.old_rank is not None and change.old_rank <= n
        now = change.new_rank <= n
        if was != now:
            kind = NotificationKind.ENTERED_TOP_N if now else NotificationKind.LEFT_TOP_N
            outcome.notifications.append(
                ParticipantNotified(
                    leaderboard_id=outcome.board,
                    period=change.period,
                    participant_id=change.participant_id,
                    kind=kind,
                    rank=change.new_rank,
                    by_participant_id=None,
                    version=change.version,
                    top_n=n,
                    omitted=0,
                )
            )

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

    async def rank(self, board: str, period: str, sort: SortOrder, pid: str) -> Entry | None:
        """Rank and score of one participant, or None if not on the board."""
        return (await self.ranks(board, period, sort, [pid]))[0]

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
            pipe.hmget(BoardKeys(ids[s], self.prefix).members(period), plist)
        mems = await pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        asked: list[tuple[str, bytes]] = []
        for (s, plist), ms in zip(order, mems, strict=True):
            for pid, m in zip(plist, ms, strict=True):
                if m is not None:
                    pipe.zscore(BoardKeys(ids[s], self.prefix).zset(period), m)
                    asked.append((pid, _bytes(m)))
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

    async def around(
        self, board: str, period: str, sort: SortOrder, pid: str, k: int = 5
    ) -> list[Entry]:
        """The participant with up to ``k`` neighbours above and below; [] if absent."""
        me = await self.rank(board, period, sort, pid)
        if me is None:
            return []
        start = max(0, me.rank - 1 - k)
        return await self.top(board, period, sort, limit=me.rank + k - start, offset=start)

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


def directory_key(keys: BoardKeys, period: str) -> str:
    """Hash of a range shard: participant → ``score<TAB>member`` for every participant."""
    return f"{keys.base}:a:{period}"


def _view(views: list[list[str] | None], shard: int) -> list[str]:
    v = views[shard]
    if v is None:
        raise LeaderboardError(
            "a range shard has no result for a record the others applied; its outbox was "
            "acknowledged early: rebuild the board with `leaderboard replay`"
        )
    return v


def _row(rank: int, member: Any, key: float, sort: SortOrder) -> Entry:
    k = int(key)
    return Entry(rank, rules.participant_of(_text(member)), -k if sort is SortOrder.DESC else k)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


__all__ = ["SHARDS_KEY", "ShardLayout", "ShardedStore", "directory_key", "layout_of"]
