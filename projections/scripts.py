"""The Lua scripts of the stores and the one place that runs them (EVALSHA, NOSCRIPT retry).

``apply.lua`` and ``range_apply.lua`` each get ``index_value.lua`` (the participant index's value
codec) and ``rules.lua`` (the shared ranking rules) prepended: the text Redis runs is the
prelude followed by the board's hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from projections.redis_client import RedisClient
from streams.errors import ServiceUnavailable

_LUA = resources.files("projections").joinpath("lua")

#: One script call: its keys (all of one slot) and its arguments.
Call = tuple[list[str], list[Any]]


class ProjectionLost(ServiceUnavailable):
    """Redis lost the projection (its marker key is gone): rebuild before applying again."""


class Script:
    """A Lua script run by EVALSHA (reloaded once when a node lost its script cache)."""

    def __init__(self, name: str, *, prelude: Sequence[str] = ()) -> None:
        parts = list(prelude)
        self.text = "\n".join(_LUA.joinpath(p).read_text() for p in [*parts, name])
        self.sha: str | None = None

    async def run_many(self, client: RedisClient, calls: Sequence[Call]) -> list[Any]:
        """Run one call per (keys, args) in one pipeline; the replies in call order.

        Raises ProjectionLost when a script found its projection marker missing (NOEPOCH).
        """
        if not calls:
            return []
        if self.sha is None:
            self.sha = await client.script_load(self.text)
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
APPLY = Script("apply.lua", prelude=("index_value.lua", "rules.lua"))
#: Apply a batch to one score-range shard; replies decode with results.decode.
RANGE_APPLY = Script("range_apply.lua", prelude=("index_value.lua", "rules.lua"))
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
