"""The Lua scripts of the stores and the one place that runs them (EVALSHA, NOSCRIPT retry).

``apply.lua`` and ``range_apply.lua`` each get ``index_value.lua`` (the participant index's value
codec) and ``rules.lua`` (the shared ranking rules) prepended: the text Redis runs is the
prelude followed by the board's hooks. Their arguments travel as one msgpack array
(``Script(packed=True)``): one bulk string per call instead of ~18 per entry, each encoded by
redis-py in Python; the prelude unpacks it into ``ARGV`` once.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgpack
from redis.exceptions import NoScriptError, ResponseError

from projections.redis_client import RedisClient
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

    async def run_many(self, client: RedisClient, calls: Sequence[Call]) -> list[Any]:
        """Run one call per (keys, args) in one pipeline; the replies in call order.

        Raises ProjectionLost when a script found its projection marker missing (NOEPOCH).
        """
        if not calls:
            return []
        if self.sha is None:
            self.sha = await client.script_load(self.text)
        if self.packed:
            # bytes as msgpack's raw strings: Redis's cmsgpack has no bin type
            pack = msgpack.Packer(use_bin_type=False).pack
            calls = [(keys, [pack(args)]) for keys, args in calls]
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
