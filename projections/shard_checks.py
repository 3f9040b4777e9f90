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
from typing import Any

from projections.keys import BoardKeys
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


async def _state(
    client: RedisClient, keys: BoardKeys, partition: int, prepared: Sequence[Prepared]
) -> tuple[int, int, dict[str, int], set[str], set[str]]:
    """Watermark, max time, open and ended periods, and the batch's known event ids (every
    shard registers every record, so shard 0 knows them all)."""
    ids = [item.rec.event.event_id for item in prepared]
    pipe: Any = client.pipeline(transaction=False)
    pipe.hmget(keys.state, f"wm:{partition}", "maxt")
    pipe.hgetall(keys.open_periods)
    pipe.hkeys(keys.ended_periods)
    pipe.smismember(keys.events, ids)
    (wm, maxt), open_raw, ended_raw, known = await pipe.execute()
    open_periods = {_text(k): int(v) for k, v in open_raw.items()}
    seen = {eid for eid, hit in zip(ids, known, strict=True) if hit}
    return (
        int(wm) if wm is not None else -1,
        int(maxt) if maxt is not None else -1,
        open_periods,
        {_text(k) for k in ended_raw},
        seen,
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
        pipe.hget(keys.members(period), pid)
    members = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for (period, _), keys, m in zip(wanted, homes, members, strict=True):
        pipe.zscore(keys.zset(period), m if m is not None else b"")
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
    for idx, pid, score, op, _ in item.entries:
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
) -> None:
    """Set the refusal of every record of the batch whose match would leave the exact range."""
    wanted = list(_wanted(prepared))
    if not wanted:
        return  # best and set never leave the range: nothing to read
    board = cfg.leaderboard_id
    shard0 = BoardKeys(layout.shard_ids(board)[0], prefix)
    wm, maxt, open_periods, ended, seen = await _state(
        client, shard0, prepared[0].rec.partition, prepared
    )
    sim = await _scores(client, prefix, board, layout, cfg.sort_order, wanted)
    for item in prepared:
        ev = item.rec.event
        closes = rules.period_closes_at(cfg.reset_period, item.period, grace_ms)
        late = item.period in ended or (closes != rules.NEVER and maxt >= closes)
        if item.rec.offset <= wm or item.refusal or late or ev.event_id in seen:
            continue  # a stored result, or refused by the script anyway: no state change
        item.refusal, local = _overflow(cfg, item, sim)
        if item.refusal:
            continue
        seen.add(ev.event_id)
        sim.update(local)
        if closes != rules.NEVER:
            open_periods.setdefault(item.period, closes)
        if ev.occurred_at > maxt:
            maxt = ev.occurred_at
            for name in [n for n, at in open_periods.items() if maxt >= at]:
                del open_periods[name]
                ended.add(name)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
