"""Bulk load of a folded board into Redis: the keys the apply script would leave, pipelined.

A rebuild that publishes nothing per entry folds the log in the reference model
(``streams.model.ModelBoard`` with ``fold=True``) and writes only the final state here: every
period's sorted set and participant→member hash, the state hash (version, board time, dedup
horizon, watermark per partition), the remembered event ids, the open and ended periods and the
participants' metadata, exactly as ``apply.lua`` leaves them after its results were
acknowledged. ``verify`` then compares each period's checksum in Redis with the model's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import struct
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import hiredis
import redis.asyncio as aioredis

from projections.keys import BoardKeys, event_key
from projections.redis_client import RedisClient
from streams import rules
from streams.errors import LeaderboardError
from streams.events import SortOrder
from streams.model import ModelBoard

#: Members (or fields) per ZADD / HSET command.
CHUNK = 10_000
#: Commands per round trip.
PIPELINE = 8


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a bulk load wrote: keys, sorted-set members, and each period's rows."""

    keys: int
    members: int
    #: period -> the (sorted-set score, member) rows loaded into its sorted set, in order
    orders: dict[str, list[tuple[int, str]]]
    #: -1 if the stored scores are the negated standings scores (a descending board), else 1
    sign: int = 1

    @property
    def checksums(self) -> dict[str, tuple[str, int]]:
        """``rules.standings_checksum`` and participant count of every loaded period, from the
        model's rows (computed when asked: ``verify`` compares the rows themselves)."""
        return {p: (_model_digest(o, self.sign), len(o)) for p, o in self.orders.items()}


class Sender:
    """Sends commands in round trips of ``PIPELINE``.

    On a single node the commands are packed by hiredis (C) and written on one connection of
    the client's pool: redis-py's own packing (pure Python, per argument) would cost more than
    Redis spends on the ZADDs. A cluster client gets a plain pipeline (one board = one slot).
    """

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.raw = isinstance(client, aioredis.Redis)
        self.pipe: Any = None if self.raw else client.pipeline(transaction=False)
        self.packed: list[bytes] = []
        self.keys: set[str] = set()
        self.conn: Any = None
        #: replies still to read, per round trip sent
        self.unread: list[int] = []

    async def send(self, *args: Any) -> None:
        """Queue one command (name, key, arguments); flush a full round trip."""
        self.keys.add(args[1])
        if self.raw:
            self.packed.append(hiredis.pack_command(args))
            full = len(self.packed) >= PIPELINE
        else:
            self.pipe.execute_command(*args)
            full = len(self.pipe) >= PIPELINE
        if full:
            await self.flush(wait=False)

    async def send_packed(self, key: str, packed: bytes) -> None:
        """Queue one command packed by ``hiredis.pack_command`` (single node), else unpack it
        for the cluster pipeline; flush a full round trip."""
        if not self.raw:
            await self.send(*_unpack(packed))
            return
        self.keys.add(key)
        self.packed.append(packed)
        if len(self.packed) >= PIPELINE:
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
        if not self.raw:
            if len(self.pipe):
                await self.pipe.execute()
            return
        if self.packed:
            client: Any = self.client
            if self.conn is None:
                self.conn = await client.connection_pool.get_connection()
            data, n, self.packed = b"".join(self.packed), len(self.packed), []
            await self.conn.send_packed_command(data)
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


def _index_commands(
    keys: BoardKeys, period: str, members: Mapping[str, tuple[int, str]], chunk: int
) -> list[tuple[str, bytes]]:
    """One period's participant index as packed HSET commands: (bucket key, command)."""
    index = keys.index_fields(period, ((p, r[1]) for p, r in members.items()))
    pack: Any = hiredis.pack_command
    return [
        (key, pack(("HSET", key, *flat[i : i + 2 * chunk])))
        for key, flat in sorted(index.items())
        for i in range(0, len(flat), 2 * chunk)
    ]


def _frame(commands: list[tuple[str, bytes]]) -> bytes:
    """(key, command) pairs as bytes: their count, the lengths of each key and command
    (unsigned 32-bit, little-endian), then the keys and commands themselves."""
    lengths = array("I")
    parts: list[bytes] = []
    for key, packed in commands:
        raw = key.encode()
        lengths.extend((len(raw), len(packed)))
        parts += (raw, packed)
    if sys.byteorder != "little":  # pragma: no cover
        lengths.byteswap()
    return struct.pack("<I", len(commands)) + lengths.tobytes() + b"".join(parts)


def _unframe(data: bytes) -> list[tuple[str, bytes]]:
    """The (key, command) pairs of ``_frame``."""
    (n,) = struct.unpack_from("<I", data)
    lengths = array("I")
    lengths.frombytes(data[4 : 4 + 8 * n])
    if sys.byteorder != "little":  # pragma: no cover
        lengths.byteswap()
    out = []
    at = 4 + 8 * n
    for i in range(n):
        k, c = lengths[2 * i], lengths[2 * i + 1]
        out.append((data[at : at + k].decode(), data[at + k : at + k + c]))
        at += k + c
    if at != len(data):
        raise LeaderboardError(
            f"the participant index arrived malformed ({len(data)} bytes, {at} expected): "
            "rerun the rebuild with --lua"
        )
    return out


def _unpack(packed: bytes) -> list[bytes]:
    """The arguments of one command packed by ``hiredis.pack_command``."""
    reader = hiredis.Reader()
    reader.feed(packed)
    args: list[bytes] = reader.gets()
    return args


class IndexJob:
    """The participant index's HSET commands of a folded model, packed in a forked process.

    The index costs the load a SHA-1 per participant (its bucket) and the packing of its
    commands, about as much CPU as sorting the standings and packing their ZADDs: started
    before the sort, it runs on the other core meanwhile and hands back the packed commands
    through a pipe (``load`` sends them on its own connection). The child reads only the
    fold's member tables (its copy-on-write view) and exits without touching anything else.
    """

    def __init__(self, keys: BoardKeys, model: ModelBoard, chunk: int = CHUNK) -> None:
        """Fork the process that packs ``model``'s index (every period with standings)."""
        tables = [(p, t.members) for p, t in sorted(model.periods.items()) if t]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: pack, write, leave at once
            code = 1
            try:
                os.close(read)
                out = [c for p, m in tables for c in _index_commands(keys, p, m, chunk)]
                data = memoryview(_frame(out))
                while data:
                    data = data[os.write(write, data) :]
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.pid: int | None = pid
        self.fd: int | None = read

    @staticmethod
    def start(client: RedisClient, keys: BoardKeys, model: ModelBoard) -> IndexJob | None:
        """An index job for a load into ``client``, or None where the load packs the index
        itself (no ``os.fork`` on this platform)."""
        if not hasattr(os, "fork"):
            return None
        return IndexJob(keys, model)

    def commands(self) -> list[tuple[str, bytes]]:
        """Wait for the packed (key, command) list (blocking: run it in a thread)."""
        assert self.fd is not None and self.pid is not None
        parts = []
        while chunk := os.read(self.fd, 1 << 20):
            parts.append(chunk)
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise LeaderboardError(
                f"the process packing the participant index failed (exit code {code}): "
                "rerun the rebuild with --lua"
            )
        return _unframe(b"".join(parts))

    def close(self) -> None:
        """Release the pipe; stop and reap the child if it is still there (after an error)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None


async def load(
    client: RedisClient,
    keys: BoardKeys,
    model: ModelBoard,
    watermarks: Mapping[int, int],
    *,
    chunk: int = CHUNK,
    index: IndexJob | None = None,
) -> Loaded:
    """Write ``model``'s final state under ``keys`` (which must not exist yet).

    The model must be settled (``ModelBoard.settle``). ``index``, started on the same model,
    packs the participant index's commands in another process (else they are packed here).
    Returns every period's loaded rows, for ``verify``.
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
            if index is None:
                for key, packed in _index_commands(keys, period, table.members, chunk):
                    await out.send_packed(key, packed)
            members += len(table)
            orders[period] = order
        ids = [(at, event_key(eid)) for eid, at in model.seen_events.items()]
        for i in range(0, len(ids), chunk):
            await out.send("ZADD", keys.events, *chain.from_iterable(ids[i : i + chunk]))
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
        if index is not None:  # packed meanwhile by the forked process
            for key, packed in await asyncio.to_thread(index.commands):
                await out.send_packed(key, packed)
        await out.flush()
    finally:
        await out.close()
        if index is not None:
            index.close()
    return Loaded(len(out.keys), members, orders, sign)


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
        differs = await _first_difference(client, keys.zset(period), order, chunk)
        if differs is not None:
            rank, count = differs
            raise LeaderboardError(
                f"bulk load of {keys.board} period {period} differs from the folded log "
                f"(Redis {count} rows, fold {len(order)} rows, first difference at rank "
                f"{rank}): rerun the rebuild with --lua"
            )


async def _first_difference(
    client: RedisClient, key: str, order: list[tuple[int, str]], chunk: int
) -> tuple[int, int] | None:
    """(first differing rank, rows read) of sorted set ``key`` against ``order``, or None."""
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
                        return read + i + 1, read + len(members)
            read += len(members)
            if len(members) < chunk:
                break
    finally:
        if out is not None:
            await out.close()
    if read != len(order):
        return min(read, len(order)) + 1, read
    return None


__all__ = [
    "CHUNK",
    "PIPELINE",
    "IndexJob",
    "Loaded",
    "Sender",
    "load",
    "state_fields",
    "verify",
]
