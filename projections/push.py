"""Push reads: consistent snapshots of a board and the subscriber bookkeeping of live deltas."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from projections.keys import BoardKeys
from projections.scripts import INDEX_VALUE_LUA
from streams import rules
from streams.events import LeaderboardConfigured, RankChange, SortOrder

__all__ = [
    "Snapshot",
    "current_period",
    "newest_period",
    "read_many",
    "read_participant",
    "read_top",
]

log = logging.getLogger(__name__)

#: Read-only scripts: the version and the rows come from one atomic step of Redis, so a
#: snapshot's ``version`` is exactly the state its rows show.
_TOP_LUA = """
local ver = redis.call('HGET', KEYS[1], 'ver') or '0'
local n = redis.call('ZCARD', KEYS[2])
local rows, meta = {}, {}
if tonumber(ARGV[2]) > 0 then
  rows = redis.call('ZRANGE', KEYS[2], tonumber(ARGV[1]),
    tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1, 'WITHSCORES')
end
if #rows > 0 then
  local pids = {}
  for i = 1, #rows, 2 do pids[#pids + 1] = string.sub(rows[i], W + 1) end
  meta = redis.call('HMGET', KEYS[3], unpack(pids))
end
return {ver, n, rows, meta}
""".replace("W + 1", str(rules.TIEBREAK_WIDTH + 1))
_MANY_LUA = (
    INDEX_VALUE_LUA
    + """
local ver = redis.call('HGET', KEYS[1], 'ver') or '0'
local n = redis.call('ZCARD', KEYS[2])
local rows = {}
for i, pid in ipairs(ARGV) do
  local pre = redis.call('HGET', KEYS[3] .. ':' .. string.sub(redis.sha1hex(pid), 1, 3), pid)
  local m = pre and pre_text(pre) .. pid
  local r = m and redis.call('ZRANK', KEYS[2], m)
  if r then
    rows[#rows + 1] = i
    rows[#rows + 1] = r
    rows[#rows + 1] = redis.call('ZSCORE', KEYS[2], m)
    rows[#rows + 1] = redis.call('HGET', KEYS[4], pid) or ''
  end
end
return {ver, n, rows}
"""
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows of one period read atomically with the board's version."""

    version: int
    period: str
    count: int
    entries: list[dict[str, Any]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score(raw: Any, sort: SortOrder) -> int:
    key = int(float(_text(raw)))
    return -key if sort is SortOrder.DESC else key


async def current_period(client: aioredis.Redis, cfg: LeaderboardConfigured) -> str:
    """The newest period of the board that Redis knows (open or ended); else the wall clock's."""
    if cfg.reset_period.value == "none":
        return rules.ALL_TIME
    keys = BoardKeys(cfg.leaderboard_id)
    pipe = client.pipeline(transaction=False)
    pipe.hkeys(keys.open_periods)
    pipe.hkeys(keys.ended_periods)
    opened, ended = await pipe.execute()
    return newest_period(cfg, [*opened, *ended])


def newest_period(cfg: LeaderboardConfigured, known: list[Any]) -> str:
    """The newest of the periods Redis knows of a periodic board (the names read from its
    open and ended period hashes); else the wall clock's (``current_period``'s rule, for
    callers that read those hashes in a pipeline of their own)."""
    found = [_text(p) for p in known]
    if found:
        return max(found)
    return rules.board_period(cfg, int(time.time() * 1000))


async def read_top(
    client: aioredis.Redis, cfg: LeaderboardConfigured, period: str, offset: int, limit: int
) -> Snapshot:
    """Rows ``offset+1 .. offset+limit`` of ``period`` with the board version, atomically."""
    keys = BoardKeys(cfg.leaderboard_id)
    reply: Any = await client.eval(
        _TOP_LUA, 3, keys.state, keys.zset(period), keys.metadata, offset, limit
    )
    ver, count, flat, meta = reply
    entries = [
        _row(
            offset + i // 2 + 1,
            rules.participant_of(_text(flat[i])),
            _score(flat[i + 1], cfg.sort_order),
            meta[i // 2],
        )
        for i in range(0, len(flat), 2)
    ]
    return Snapshot(int(_text(ver)), period, int(count), entries)


def _row(rank: int, pid: str, score: int, meta: Any) -> dict[str, Any]:
    """One row of a read; ``metadata`` (the participant's latest entry metadata) only when
    it has some."""
    row: dict[str, Any] = {"rank": rank, "participant_id": pid, "score": score}
    if meta:
        row["metadata"] = json.loads(meta)
    return row


async def read_participant(
    client: aioredis.Redis, cfg: LeaderboardConfigured, period: str, pid: str
) -> Snapshot:
    """One participant's row (or none) with the board version, atomically."""
    return await read_many(client, cfg, period, [pid])


async def read_many(
    client: aioredis.Redis, cfg: LeaderboardConfigured, period: str, pids: list[str]
) -> Snapshot:
    """The rows of the listed participants that are on the board, best first, with the board
    version, atomically ("me and my friends")."""
    keys = BoardKeys(cfg.leaderboard_id)
    reply: Any = await client.eval(
        _MANY_LUA,
        4,
        keys.state,
        keys.zset(period),
        keys.members(period),
        keys.metadata,
        *pids,
    )
    ver, count, flat = reply
    found = sorted(
        (int(flat[i + 1]) + 1, int(flat[i]) - 1, flat[i + 2], flat[i + 3])
        for i in range(0, len(flat), 4)
    )
    entries = [
        _row(rank, pids[at], _score(score, cfg.sort_order), meta) for rank, at, score, meta in found
    ]
    return Snapshot(int(_text(ver)), period, int(count), entries)


def change_json(c: RankChange) -> dict[str, Any]:
    """The wire form of one rank change in a delta."""
    return {
        "participant_id": c.participant_id,
        "old_rank": c.old_rank,
        "new_rank": c.new_rank,
        "old_score": c.old_score,
        "new_score": c.new_score,
        "period": c.period,
        "version": c.version,
        "event_id": c.event_id,
    }
