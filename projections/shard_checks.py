"""Whole-match refusals on hash-sharded boards, decided before the shards apply anything.

On a hash-sharded board each shard sees only its own participants, so no shard alone can tell
that an ``incr``/``decr`` entry elsewhere in the match leaves the exact range. The whole batch
is therefore simulated here first, in log order and with the apply script's precedence (stored
result, late event, duplicate event id, then the entries), from the scores at the start of the
batch; a match that would overflow is handed to every shard as a refusal, so all shards agree
and the match applies whole or not at all, as on a plain board.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from projections.keys import BoardKeys, event_bucket, event_key, index_member
from projections.layout import ShardLayout
from projections.redis_client import RedisClient
from projections.store import Prepared
from streams import rules
from streams.events import LeaderboardConfigured, Operator, SortOrder

__all__ = ["refuse_hash_overflows"]

_ARITHMETIC = {str(Operator.INCR), str(Operator.DECR)}


def _wanted(prepared: Sequence[Prepared]) -> dict[tuple[str, str], None]:
    """(period, participant) of every participant with an incr/decr entry in the batch."""
    return {
        (item.period, e[1]): None for item in prepared for e in item.entries if e[3] in _ARITHMETIC
    }


@dataclass
class _Board:
    """What the script would read of the board (every shard registers every record, so
    shard 0 holds it all): watermark, time, dedup horizon, periods, the batch's known ids."""

    wm: int
    maxt: int
    horizon: int
    open_periods: dict[str, int]
    ended: set[str]
    #: event id -> event time (the start of its day if remembered before the batch) of the
    #: batch's ids already known, and of those it adds
    seen: dict[str, int]
    #: remembered day -> its number of ids (rules.dedup_forget), the batch's ids included
    days: dict[int, int]

    def duplicate(self, event_id: str) -> bool:
        """True if ``event_id`` is remembered (an id below the horizon is forgotten)."""
        at = self.seen.get(event_id)
        return at is not None and at >= self.horizon


class _Dedup:
    """The script's dedup horizon, followed record by record (rules.dedup_forget)."""

    def __init__(self, board: _Board, dedup: tuple[int, int]):
        self.b = board
        self.window, self.cap = dedup

    def accepted(self, event_id: str, at: int, time_moved: bool) -> None:
        """Register an accepted record's id, then move the horizon as the script does."""
        b = self.b
        b.seen[event_id] = at
        day = rules.dedup_day(at)
        b.days[day] = b.days.get(day, 0) + 1
        if time_moved or sum(b.days.values()) > self.cap:
            b.horizon, gone = rules.dedup_forget(b.days, b.horizon, b.maxt, self.window, self.cap)
            for d in gone:
                del b.days[d]


async def _state(
    client: RedisClient, keys: BoardKeys, partition: int, prepared: Sequence[Prepared]
) -> _Board:
    ids = [item.rec.event.event_id for item in prepared]
    pipe: Any = client.pipeline(transaction=False)
    pipe.hmget(keys.state, f"wm:{partition}", "maxt", "hz")
    pipe.hgetall(keys.open_periods)
    pipe.hkeys(keys.ended_periods)
    pipe.hgetall(keys.events)
    (wm, maxt, hz), open_raw, ended_raw, days_raw = await pipe.execute()
    days = {int(d): int(n) for d, n in days_raw.items()}
    asked: list[tuple[str, int]] = []
    for eid in ids:
        stored = event_key(eid)
        bucket = event_bucket(stored)
        for day in days:
            pipe.hexists(keys.event_ids(day, bucket), stored)
            asked.append((eid, day))
    found = await pipe.execute() if asked else []
    seen = {
        eid: day * rules.DEDUP_DAY_MS for (eid, day), hit in zip(asked, found, strict=True) if hit
    }
    return _Board(
        int(wm) if wm is not None else -1,
        int(maxt) if maxt is not None else -1,
        int(hz) if hz is not None else 0,
        {_text(k): int(v) for k, v in open_raw.items()},
        {_text(k) for k in ended_raw},
        seen,
        days,
    )


async def _scores(
    client: RedisClient,
    prefix: str,
    board: str,
    layout: ShardLayout,
    sort: SortOrder,
    wanted: Sequence[tuple[str, str]],
) -> dict[tuple[str, str], int | None]:
    """Scores at the start of the batch (None: not ranked yet), from each participant's shard."""
    ids = layout.shard_ids(board)
    homes = [BoardKeys(ids[layout.home(pid)], prefix) for _, pid in wanted]
    pipe: Any = client.pipeline(transaction=False)
    for (period, pid), keys in zip(wanted, homes, strict=True):
        pipe.hget(keys.index(period, pid), pid)
    members = [
        index_member(pre, pid) for pre, (_, pid) in zip(await pipe.execute(), wanted, strict=True)
    ]
    pipe = client.pipeline(transaction=False)
    for (period, _), keys, m in zip(wanted, homes, members, strict=True):
        pipe.zscore(keys.zset(period), m if m is not None else "")
    raw = await pipe.execute()
    out: dict[tuple[str, str], int | None] = {}
    for key, m, z in zip(wanted, members, raw, strict=True):
        out[key] = None if m is None or z is None else rules.sort_key(int(z), sort)
    return out


def _overflow(
    cfg: LeaderboardConfigured, item: Prepared, sim: dict[tuple[str, str], int | None]
) -> tuple[str, dict[tuple[str, str], int]]:
    """The refusal of one record ("" if none) and the tracked scores it would leave."""
    local: dict[tuple[str, str], int] = {}
    for idx, pid, score, op, *_ in item.entries:
        key = (item.period, pid)
        if key not in sim:
            continue  # only best/set entries for this participant: always in range
        old = local[key] if key in local else sim[key]
        new = rules.combine(Operator(op), old, score, cfg.sort_order)
        if not rules.in_exact_range(new):
            # the script computes in doubles: its message shows the rounded value
            return (
                f"entries[{idx}]: score {float(new):.0f} would leave the exact range "
                "|score| < 2^53",
                {},
            )
        local[key] = new
    return "", local


async def refuse_hash_overflows(
    client: RedisClient,
    prefix: str,
    cfg: LeaderboardConfigured,
    layout: ShardLayout,
    prepared: Sequence[Prepared],
    grace_ms: int,
    dedup: tuple[int, int],
) -> None:
    """Set the refusal of every record of the batch whose match would leave the exact range.

    ``dedup`` (window, id cap) is the store's: the horizon is followed exactly, so every
    record the script will refuse (stored, late, too old, duplicate) is skipped here too.
    """
    wanted = list(_wanted(prepared))
    if not wanted:
        return  # best and set never leave the range: nothing to read
    board = cfg.leaderboard_id
    shard0 = BoardKeys(layout.shard_ids(board)[0], prefix)
    b = await _state(client, shard0, prepared[0].rec.partition, prepared)
    cut = rules.closing_cut(cfg, grace_ms)
    if cut != rules.NEVER:  # as the script does: a closed board's periods end at the cut
        b.open_periods = {name: min(ends, cut) for name, ends in b.open_periods.items()}
    ids = _Dedup(b, dedup)
    sim = await _scores(client, prefix, board, layout, cfg.sort_order, wanted)
    for item in prepared:
        ev = item.rec.event
        closes = rules.period_closes_at(cfg, item.period, grace_ms)
        late = item.period in b.ended or (closes != rules.NEVER and b.maxt >= closes)
        at = item.rec.time
        old = at < b.horizon or b.duplicate(ev.event_id)
        if item.rec.offset <= b.wm or item.refusal or late or old:
            continue  # a stored result, or refused by the script anyway: no state change
        item.refusal, local = _overflow(cfg, item, sim)
        if item.refusal:
            continue
        sim.update(local)
        if closes != rules.NEVER:
            b.open_periods.setdefault(item.period, closes)
        moved = at > b.maxt
        if moved:
            b.maxt = at
            for name in [n for n, at in b.open_periods.items() if b.maxt >= at]:
                del b.open_periods[name]
                b.ended.add(name)
        ids.accepted(ev.event_id, at, moved)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
