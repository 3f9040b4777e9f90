"""Bulk load of a folded board into Redis: the keys the apply script would leave, pipelined.

A rebuild that publishes nothing per entry folds the log in the reference model
(``streams.model.ModelBoard`` with ``fold=True``) and writes only the final state here: every
period's sorted set and participant→member hash, the state hash (version, board time, dedup
horizon, watermark per partition), the remembered event ids, the open and ended periods and the
participants' metadata, exactly as ``apply.lua`` leaves them after its results were
acknowledged. ``verify`` then compares each period's checksum in Redis with the model's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from projections.keys import BoardKeys
from projections.redis_client import RedisClient
from streams import rules
from streams.errors import LeaderboardError
from streams.events import SortOrder
from streams.model import ModelBoard

#: Members (or fields) per ZADD / HSET command.
CHUNK = 10_000
#: Commands per pipeline round trip.
PIPELINE = 8


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a bulk load wrote: keys, sorted-set members, and the per-period checksums."""

    keys: int
    members: int
    checksums: dict[str, tuple[str, int]]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def state_fields(model: ModelBoard, watermarks: Mapping[int, int]) -> dict[str, str]:
    """The state hash as the apply script writes it (integers in its ``%.0f`` form)."""
    fields = {
        "ver": str(model.version),
        "maxt": str(model.max_time),
        "hz": str(model.horizon),
    }
    fields.update({f"wm:{p}": str(w) for p, w in sorted(watermarks.items())})
    return fields


async def load(
    client: RedisClient,
    keys: BoardKeys,
    model: ModelBoard,
    watermarks: Mapping[int, int],
    *,
    chunk: int = CHUNK,
) -> Loaded:
    """Write ``model``'s final state under ``keys`` (which must not exist yet).

    The model must be settled (``ModelBoard.settle``). Returns the checksum and participant
    count of every period, read from the model, for ``verify``.
    """
    if not watermarks:
        return Loaded(0, 0, {})
    pipe: Any = client.pipeline(transaction=False)
    queued = 0
    written: set[str] = set()

    async def send(cmd: str, key: str, *args: Any) -> None:
        nonlocal queued
        pipe.execute_command(cmd, key, *args)
        written.add(key)
        queued += 1
        if queued >= PIPELINE:
            await pipe.execute()
            queued = 0

    sort = model.config.sort_order
    checksums: dict[str, tuple[str, int]] = {}
    members = 0
    for period, table in sorted(model.periods.items()):
        if not table:
            continue
        for part in _chunks(table.order, chunk):
            args: list[Any] = []
            for key, member in part:
                args += (key, member)
            await send("ZADD", keys.zset(period), *args)
        for part in _chunks(table.members.items(), chunk):
            flat: list[Any] = []
            for pid, (_, member) in part:
                flat += (pid, member)
            await send("HSET", keys.members(period), *flat)
        members += len(table)
        checksums[period] = (
            rules.standings_checksum(model.rows(period, sort)),
            len(table),
        )
    for part in _chunks(model.seen_events.items(), chunk):
        ids: list[Any] = []
        for eid, at in part:
            ids += (at, eid)
        await send("ZADD", keys.events, *ids)
    hashes = [
        (keys.open_periods, {p: str(t) for p, t in model.open_periods.items()}),
        (keys.ended_periods, {p: str(v) for p, v in model.ended.items()}),
        (
            keys.metadata,
            {p: json.dumps(m, sort_keys=True) for p, m in model.metadata.items()},
        ),
    ]
    for key, mapping in hashes:
        for part in _chunks(mapping.items(), chunk):
            await send("HSET", key, *[x for kv in part for x in kv])
    state = state_fields(model, watermarks)
    await send("HSET", keys.state, *[x for kv in state.items() for x in kv])
    if queued:
        await pipe.execute()
    return Loaded(len(written), members, checksums)


async def checksum(
    client: RedisClient, keys: BoardKeys, period: str, model: ModelBoard, *, chunk: int = 50_000
) -> tuple[str, int]:
    """SHA-256 and count of one period's standings as Redis holds them (read in chunks)."""
    desc = model.config.sort_order is SortOrder.DESC

    def rows() -> Iterator[tuple[int, str, int]]:
        for rank, (member, key) in enumerate(fetched, start=1):
            k = int(key)
            yield rank, rules.participant_of(_text(member)), -k if desc else k

    fetched: list[tuple[Any, float]] = []
    start = 0
    while True:
        page: list[Any] = await client.zrange(
            keys.zset(period), start, start + chunk - 1, withscores=True
        )
        fetched += page
        start += len(page)
        if len(page) < chunk:
            break
    return rules.standings_checksum(rows()), len(fetched)


async def verify(client: RedisClient, keys: BoardKeys, model: ModelBoard, loaded: Loaded) -> None:
    """Compare every loaded period's checksum in Redis with the model's; raise on a difference."""
    for period, want in loaded.checksums.items():
        got = await checksum(client, keys, period, model)
        if got != want:
            raise LeaderboardError(
                f"bulk load of {keys.board} period {period} differs from the folded log "
                f"(Redis {got[1]} rows {got[0][:16]}, fold {want[1]} rows {want[0][:16]}): "
                "rerun the rebuild with --lua"
            )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["CHUNK", "Loaded", "checksum", "load", "state_fields", "verify"]
