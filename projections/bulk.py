"""Bulk load of a folded board into Redis: the keys the apply script would leave, pipelined.

A rebuild that publishes nothing per entry folds the log in the reference model
(``streams.model.ModelBoard`` with ``fold=True``) and writes only the final state here: every
period's sorted set and participant→member hash, the state hash (version, board time, dedup
horizon, watermark per partition), the remembered event ids, the open and ended periods and the
participants' metadata, exactly as ``apply.lua`` leaves them after its results were
acknowledged. ``verify`` then compares each period's sorted set in Redis with the model's rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import hiredis
import redis.asyncio as aioredis

from projections.keys import BoardKeys
from projections.redis_client import RedisClient
from streams import rules
from streams.errors import LeaderboardError
from streams.events import SortOrder
from streams.model import ModelBoard

#: Members (or fields) per ZADD / HSET command.
CHUNK = 10_000
#: Arguments per round trip (about 8 full ZADDs, or thousands of a bucketed index's small
#: HSETs: a round trip per 8 commands of ~50 arguments would wait on Redis 500 times a board).
PIPELINE_ARGS = 160_000


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a bulk load wrote: keys, sorted-set members, and each period's rows."""

    keys: int
    members: int
    #: period -> the (sorted-set score, member) rows loaded into its sorted set, in order
    orders: dict[str, list[tuple[int, str]]]
    #: -1 if the stored scores are the negated standings scores (a descending board), else 1
    sign: int = 1
    #: round trips the load took
    round_trips: int = 0

    @property
    def checksums(self) -> dict[str, tuple[str, int]]:
        """``rules.standings_checksum`` and participant count of every loaded period, from the
        model's rows (computed when asked: ``verify`` compares the rows themselves)."""
        return {p: (_model_digest(o, self.sign), len(o)) for p, o in self.orders.items()}


class Sender:
    """Sends commands in round trips of about ``args_per_trip`` arguments.

    On a single node the commands are packed by hiredis (C) and written on one connection of
    the client's pool: redis-py's own packing (pure Python, per argument) would cost more than
    Redis spends on the ZADDs. A cluster client gets a plain pipeline (one board = one slot).
    """

    def __init__(self, client: RedisClient, *, args_per_trip: int = PIPELINE_ARGS) -> None:
        self.client = client
        self.raw = isinstance(client, aioredis.Redis)
        self.pipe: Any = None if self.raw else client.pipeline(transaction=False)
        self.packed: list[bytes] = []
        self.args_per_trip = args_per_trip
        #: arguments queued for the next round trip
        self.queued = 0
        #: round trips sent
        self.trips = 0
        self.keys: set[str] = set()
        self.conn: Any = None
        #: replies still to read, per round trip sent
        self.unread: list[int] = []

    async def send(self, *args: Any) -> None:
        """Queue one command (name, key, arguments); flush a full round trip."""
        self.keys.add(args[1])
        if self.raw:
            self.packed.append(hiredis.pack_command(args))
        else:
            self.pipe.execute_command(*args)
        self.queued += len(args)
        if self.queued >= self.args_per_trip:
            await self.flush(wait=False)

    async def call(self, *args: Any) -> Any:
        """Send one command now and return its reply as hiredis parsed it (single node)."""
        await self.flush()
        client: Any = self.client
        if self.conn is None:
            self.conn = await client.connection_pool.get_connection()
        await self.conn.send_packed_command(hiredis.pack_command(args))
        return await self.conn.read_response()

    async def flush(self, *, wait: bool = True) -> None:
        """Send what is queued and check the replies: all of them, or with ``wait=False``
        those of the round trips before this one (single node), so that Redis runs one
        round trip's commands while the next one is packed."""
        self.queued = 0
        if not self.raw:
            if len(self.pipe):
                self.trips += 1
                await self.pipe.execute()
            return
        if self.packed:
            client: Any = self.client
            if self.conn is None:
                self.conn = await client.connection_pool.get_connection()
            data, n, self.packed = b"".join(self.packed), len(self.packed), []
            await self.conn.send_packed_command(data)
            self.trips += 1
            self.unread.append(n)
        while self.unread and (wait or len(self.unread) > 1):
            while self.unread[0]:
                self.unread[0] -= 1
                await self.conn.read_response()  # raises on an error reply
            self.unread.pop(0)

    async def close(self) -> None:
        """Give the connection back to the pool (closed first if replies are left unread,
        after an error: the next user would read them)."""
        if self.conn is not None:
            client: Any = self.client
            if self.unread:
                self.unread = []
                await self.conn.disconnect()
            await client.connection_pool.release(self.conn)
            self.conn = None


async def _send_event_ids(out: Sender, keys: BoardKeys, model: ModelBoard, chunk: int) -> None:
    """The remembered event ids as the apply script keeps them: the day counts, then each
    day's id buckets (rules.dedup_forget, projections/keys.py ``event_fields``)."""
    days: dict[int, int] = {}
    for at in model.seen_events.values():
        day = rules.dedup_day(at)
        days[day] = days.get(day, 0) + 1
    if days:
        await out.send(
            "HSET", keys.events, *chain.from_iterable((str(d), str(n)) for d, n in days.items())
        )
    buckets = keys.event_fields(model.seen_events.items())
    for key, flat in sorted(buckets.items()):
        for i in range(0, len(flat), 2 * chunk):
            await out.send("HSET", key, *flat[i : i + 2 * chunk])


def state_fields(model: ModelBoard, watermarks: Mapping[int, int]) -> dict[str, str]:
    """The state hash as the apply script writes it (integers in its ``%.0f`` form)."""
    fields = {
        "ver": str(model.version),
        "maxt": str(model.max_time),
        "hz": str(model.horizon),
    }
    fields.update({f"wm:{p}": str(w) for p, w in sorted(watermarks.items())})
    return fields


def _model_digest(order: list[tuple[int, str]], sign: int) -> str:
    """``rules.standings_checksum`` of a settled period's (sorted-set score, member) rows,
    computed on one joined buffer (several times faster)."""
    w = rules.TIEBREAK_WIDTH
    text = "".join([f"{i}\t{m[w:]}\t{sign * k}\n" for i, (k, m) in enumerate(order, start=1)])
    return hashlib.sha256(text.encode()).hexdigest()


async def load(
    client: RedisClient,
    keys: BoardKeys,
    model: ModelBoard,
    watermarks: Mapping[int, int],
    *,
    chunk: int = CHUNK,
) -> Loaded:
    """Write ``model``'s final state under ``keys`` (which must not exist yet).

    The model must be settled (``ModelBoard.settle``). Returns every period's loaded rows,
    for ``verify``.
    """
    sign = -1 if model.config.sort_order is SortOrder.DESC else 1
    if not watermarks:
        return Loaded(0, 0, {}, sign)
    out = Sender(client)
    orders: dict[str, list[tuple[int, str]]] = {}
    try:
        members = 0
        for period, table in sorted(model.periods.items()):
            if not table:
                continue
            order = table.order  # (sorted-set score, member): ZADD's argument order
            for i in range(0, len(order), chunk):
                await out.send(
                    "ZADD", keys.zset(period), *chain.from_iterable(order[i : i + chunk])
                )
            index = keys.index_fields(period, ((p, r[1]) for p, r in table.members.items()))
            for key, flat in sorted(index.items()):
                for i in range(0, len(flat), 2 * chunk):
                    await out.send("HSET", key, *flat[i : i + 2 * chunk])
            members += len(table)
            orders[period] = order
        await _send_event_ids(out, keys, model, chunk)
        hashes = [
            (keys.open_periods, [(p, str(t)) for p, t in model.open_periods.items()]),
            (keys.ended_periods, [(p, str(v)) for p, v in model.ended.items()]),
            (
                keys.metadata,
                [(p, json.dumps(m, sort_keys=True)) for p, m in model.metadata.items()],
            ),
        ]
        for key, fields in hashes:
            for i in range(0, len(fields), chunk):
                await out.send("HSET", key, *chain.from_iterable(fields[i : i + chunk]))
        state = state_fields(model, watermarks)
        await out.send("HSET", keys.state, *chain.from_iterable(state.items()))
        await out.flush()
    finally:
        await out.close()
    return Loaded(len(out.keys), members, orders, sign, out.trips)


async def verify(
    client: RedisClient, keys: BoardKeys, model: ModelBoard, loaded: Loaded, *, chunk: int = 100_000
) -> None:
    """Compare every loaded period's sorted set in Redis with the model's rows; raise on a
    difference.

    Members and scores are compared as lists, chunk by chunk (ZRANGE WITHSCORES, read raw by
    hiredis on a single node): the same check as comparing the periods' checksums, without
    formatting and hashing every row on both sides.
    """
    for period, order in loaded.orders.items():
        rank = await _first_difference(client, keys.zset(period), order, chunk)
        if rank is not None:
            count = await client.zcard(keys.zset(period))
            raise LeaderboardError(
                f"bulk load of {keys.board} period {period} differs from the folded log "
                f"(Redis {count} rows, fold {len(order)} rows, first difference at rank "
                f"{rank}): rerun the rebuild with --lua"
            )


async def _first_difference(
    client: RedisClient, key: str, order: list[tuple[int, str]], chunk: int
) -> int | None:
    """The first rank at which sorted set ``key`` differs from ``order``, or None."""
    raw = isinstance(client, aioredis.Redis)
    out = Sender(client) if raw else None
    first, second = itemgetter(0), itemgetter(1)
    read = 0
    try:
        while True:
            page: Any
            if out is not None:
                page = await out.call("ZRANGE", key, read, read + chunk - 1, "WITHSCORES")
            else:
                page = await client.zrange(key, read, read + chunk - 1, withscores=True)
            if not page or not isinstance(page[0], bytes):  # (member, score) pairs
                members, scores = list(map(first, page)), list(map(second, page))
            else:  # RESP2 alternates them (scores as text)
                members, scores = page[::2], list(map(float, page[1::2]))
            want = order[read : read + len(members)]
            # one join per side (members hold no newline: ids are printable); float == int
            # is exact, and stored scores are exact integers (|x| <= 2^53)
            if (
                len(want) != len(members)
                or b"\n".join(members) != "\n".join(map(second, want)).encode()
                or scores != list(map(first, want))
            ):
                for i, (m, s) in enumerate(zip(members, scores, strict=True)):
                    if i >= len(want) or m != want[i][1].encode() or s != want[i][0]:
                        return read + i + 1
            read += len(members)
            if len(members) < chunk:
                break
    finally:
        if out is not None:
            await out.close()
    if read != len(order):
        return min(read, len(order)) + 1
    return None


__all__ = [
    "CHUNK",
    "PIPELINE_ARGS",
    "Loaded",
    "Sender",
    "load",
    "state_fields",
    "verify",
]
