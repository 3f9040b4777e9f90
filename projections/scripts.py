"""The Lua scripts of the stores and the one place that runs them (EVALSHA, NOSCRIPT retry).

``apply.lua`` and ``range_apply.lua`` each get ``index_value.lua`` (the participant index's value
codec) and ``rules.lua`` (the shared ranking rules) prepended: the text Redis runs is the
prelude followed by the board's hooks. Their arguments travel as one msgpack array
(``Script(packed=True)``): one bulk string per call instead of ~18 per entry, each encoded by
redis-py in Python; the prelude unpacks it into ``ARGV`` once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgpack
from redis.exceptions import NoScriptError, ResponseError

from projections.redis_client import RedisClient, is_cluster
from streams.errors import ServiceUnavailable

_LUA = resources.files("projections").joinpath("lua")

#: One script call: its keys (all of one slot) and its arguments.
Call = tuple[list[str], list[Any]]


class ProjectionLost(ServiceUnavailable):
    """Redis lost the projection (its marker key is gone): rebuild before applying again."""


class Script:
    """A Lua script run by EVALSHA (reloaded once when a node lost its script cache).

    ``packed`` sends a call's arguments as ONE msgpack array (the script unpacks it into
    ``ARGV``): ints arrive as Lua numbers and str/bytes as Lua strings, so a caller passes a
    number only where the script calls ``tonumber`` on it (redis-py would send its text).
    """

    def __init__(self, name: str, *, prelude: Sequence[str] = (), packed: bool = False) -> None:
        parts = list(prelude)
        self.text = "\n".join(_LUA.joinpath(p).read_text() for p in [*parts, name])
        self.sha: str | None = None
        self.packed = packed

    def packed_calls(self, calls: Sequence[Call]) -> list[Call]:
        """``calls`` as they go on the wire: each call's arguments packed into one value when
        the script is ``packed`` (pass the result to ``run_many`` or ``send`` with
        ``packed=True``)."""
        if not self.packed:
            return list(calls)
        # bytes as msgpack's raw strings: Redis's cmsgpack has no bin type
        pack = msgpack.Packer(use_bin_type=False).pack
        return [(keys, [pack(args)]) for keys, args in calls]

    async def run_many(
        self, client: RedisClient, calls: Sequence[Call], *, packed: bool = False
    ) -> list[Any]:
        """Run one call per (keys, args) in one pipeline; the replies in call order.

        ``packed``: the calls come from ``packed_calls`` already.
        Raises ProjectionLost when a script found its projection marker missing (NOEPOCH).
        """
        if not calls:
            return []
        if self.sha is None:
            self.sha = await client.script_load(self.text)
        if not packed:
            calls = self.packed_calls(calls)
        for attempt in (1, 2):
            pipe: Any = client.pipeline(transaction=False)
            for keys, args in calls:
                # execute_command: the cluster pipeline blocks .evalsha() but routes this
                # by its keys (one board = one slot); the wire command is the same.
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except ResponseError as exc:
                # a pipeline prefixes the script's error with the failed command: search it
                if "NOEPOCH projection marker" in str(exc):
                    raise ProjectionLost(str(exc)) from exc
                if not isinstance(exc, NoScriptError) or attempt == 2:
                    raise
                self.sha = await client.script_load(self.text)
        raise AssertionError("unreachable")

    async def send(self, client: RedisClient, calls: list[Call]) -> asyncio.Future[list[Any]]:
        """Put ``calls`` (from ``packed_calls``) on the wire now, on one connection; the
        returned task reads their replies, returns and raises as ``run_many``.

        The caller prepares its next call while Redis runs these; sending that call only once
        this task succeeded keeps every board's calls in order, with none after one that
        failed. A cluster client, or a script not loaded yet, runs ``run_many`` in the task.
        """
        pool: Any = getattr(client, "connection_pool", None)
        if not calls or self.sha is None or pool is None or is_cluster(client):
            return asyncio.ensure_future(self.run_many(client, calls, packed=True))
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(
                conn.pack_commands(
                    [("EVALSHA", self.sha, len(keys), *keys, *args) for keys, args in calls]
                )
            )
        except BaseException:
            await conn.disconnect()  # whatever was half written must not reach a reuse
            await pool.release(conn)
            raise
        return asyncio.ensure_future(self._replies(client, pool, conn, calls))

    async def _replies(
        self, client: RedisClient, pool: Any, conn: Any, calls: list[Call]
    ) -> list[Any]:
        """Read the replies of ``send``'s calls (every one, so the connection stays in step)."""
        replies: list[Any] = []
        try:
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        errors = [r for r in replies if isinstance(r, ResponseError)]
        if not errors:
            return replies
        if any("NOEPOCH projection marker" in str(e) for e in errors):
            raise ProjectionLost(str(errors[0])) from errors[0]
        if all(isinstance(e, NoScriptError) for e in errors):
            # nothing ran (every call names the same script): load it and run them again
            self.sha = None
            return await self.run_many(client, calls, packed=True)
        raise errors[0]


#: Apply a batch to a plain board (or a hash shard); replies decode with results.decode.
APPLY = Script("apply.lua", prelude=("index_value.lua", "rules.lua"), packed=True)
#: Apply a batch to one score-range shard; replies decode with results.decode.
RANGE_APPLY = Script("range_apply.lua", prelude=("index_value.lua", "rules.lua"), packed=True)
#: Per sorted set, how many entries rank above each (score, member) pair.
COUNT_BETTER = Script("count_better.lua")
#: Text of the participant index's value codec (``pre_text`` / ``pre_bin``), to prepend to a
#: script that reads or writes the index (projections/keys.py ``index_value``).
INDEX_VALUE_LUA = _LUA.joinpath("index_value.lua").read_text()
#: Text of the swap of a rebuilt shadow board into the live keys (run once, by EVAL).
SWAP_LUA = _LUA.joinpath("swap.lua").read_text()
#: Text of the swap of every shard of a rebuilt sharded board at once (single node, by EVAL).
SWAP_SHARDED_LUA = _LUA.joinpath("swap_sharded.lua").read_text()

__all__ = [
    "APPLY",
    "COUNT_BETTER",
    "INDEX_VALUE_LUA",
    "RANGE_APPLY",
    "SWAP_LUA",
    "SWAP_SHARDED_LUA",
    "Call",
    "ProjectionLost",
    "Script",
]
