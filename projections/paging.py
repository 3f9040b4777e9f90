"""Cursor paging: a page of the standings that starts right after a given row, whatever moved.

A cursor names a position in the order of the board's sorted set, not a rank: the raw score
and the member (tie-break prefix + participant) of the last row a client saw. The next page
starts after that position at read time, so rows that did not move are neither repeated nor
skipped when others enter, leave or move above the cursor (an offset would shift).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from projections.keys import BoardKeys
from projections.push import Snapshot, _row, _score, _text
from streams import rules
from streams.errors import ValidationError
from streams.events import LeaderboardConfigured

__all__ = ["Cursor", "Page", "decode_cursor", "read_page"]

W = rules.TIEBREAK_WIDTH
_DIGITS = frozenset(rules.TIEBREAK_DIGITS)

#: Version, count, start and the rows (with their entry metadata) in one atomic step. With a
#: cursor (ARGV[3] score, ARGV[4] member) the start is the number of rows ordered at or before
#: that position: the member's own rank + 1 if it is still there with that score, else the rows
#: of lower score plus the ties whose tie-break prefix (unique per entry) is not after it.
_PAGE_LUA = """
local ver = redis.call('HGET', KEYS[1], 'ver') or '0'
local n = redis.call('ZCARD', KEYS[2])
local start = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if ARGV[3] ~= '' then
  local s, m = ARGV[3], ARGV[4]
  local own = redis.call('ZSCORE', KEYS[2], m)
  if own and tonumber(own) == tonumber(s) then
    start = redis.call('ZRANK', KEYS[2], m) + 1
  else
    start = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. s)
    local prefix = string.sub(m, 1, W)
    local off, done = 0, false
    while not done do
      local ties = redis.call('ZRANGE', KEYS[2], s, s, 'BYSCORE', 'LIMIT', off, 256)
      for _, t in ipairs(ties) do
        if string.sub(t, 1, W) > prefix then done = true break end
        start = start + 1
      end
      if #ties < 256 then done = true end
      off = off + 256
    end
  end
end
local rows, meta = {}, {}
if limit > 0 then
  rows = redis.call('ZRANGE', KEYS[2], start, start + limit - 1, 'WITHSCORES')
end
if #rows > 0 then
  local pids = {}
  for i = 1, #rows, 2 do pids[#pids + 1] = string.sub(rows[i], W + 1) end
  meta = redis.call('HMGET', KEYS[3], unpack(pids))
end
return {ver, n, start, rows, meta}
""".replace("W + 1", str(W + 1)).replace("1, W)", f"1, {W})")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one period's order: the raw sorted-set score and member of a row, and
    the board version of the read that returned it (information for the client)."""

    period: str
    score: str
    member: str
    version: int

    def encode(self) -> str:
        """The opaque text form (URL-safe base64 of compact JSON, no padding)."""
        raw = json.dumps(
            {"p": self.period, "s": self.score, "m": self.member, "v": self.version},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    """The cursor ``text`` names, or ValidationError (one line) if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        d = json.loads(raw)
        cursor = Cursor(str(d["p"]), str(d["s"]), str(d["m"]), int(d["v"]))
        float(cursor.score)
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValidationError(
            "cursor: not a cursor of this API (pass next_cursor of a previous page unchanged)"
        ) from None
    if len(cursor.member) <= W or not set(cursor.member[:W]) <= _DIGITS:
        raise ValidationError("cursor: not a cursor of this API (bad position)")
    return cursor


@dataclass(frozen=True, slots=True)
class Page:
    """One page: the snapshot, the offset it starts at and the cursor of the following page
    (None at the end of the standings)."""

    snapshot: Snapshot
    offset: int
    next_cursor: str | None


async def read_page(
    client: aioredis.Redis,
    cfg: LeaderboardConfigured,
    period: str,
    limit: int,
    *,
    offset: int = 0,
    after: Cursor | None = None,
) -> Page:
    """Rows ``offset+1 ..`` (or the rows after ``after``) of ``period`` with the board
    version, atomically, and the cursor of the next page."""
    keys = BoardKeys(cfg.leaderboard_id)
    reply: Any = await client.eval(
        _PAGE_LUA,
        3,
        keys.state,
        keys.zset(period),
        keys.metadata,
        offset,
        limit,
        after.score if after else "",
        after.member if after else "",
    )
    ver, count, start, flat, meta = reply
    start = int(start)
    entries = [
        _row(
            start + i // 2 + 1,
            rules.participant_of(_text(flat[i])),
            _score(flat[i + 1], cfg.sort_order),
            meta[i // 2],
        )
        for i in range(0, len(flat), 2)
    ]
    version = int(_text(ver))
    nxt = None
    if flat and start + len(entries) < int(count):
        nxt = Cursor(period, _text(flat[-1]), _text(flat[-2]), version).encode()
    return Page(Snapshot(version, period, int(count), entries), start, nxt)
