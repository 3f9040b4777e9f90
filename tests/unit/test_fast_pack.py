"""The asyncio Redis connection that packs big commands with hiredis: same bytes as redis-py."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from projections.redis_client import FAST_PACK_ARGS, FastPackConnection


def _args(n: int) -> list[str | bytes | int]:
    out: list[str | bytes | int] = ["EVALSHA", "f" * 40, 2, "lb:{b}:s", b"lb:{b}:o"]
    for i in range(n):
        out += [f"{i}:{i % 7}", f"é-{i}", -(2**62) + i, b"\x00raw"]
    return out


@pytest.mark.parametrize("n", [0, FAST_PACK_ARGS, 3000])
def test_commands_pack_to_the_bytes_redis_py_sends(n: int) -> None:
    args = _args(n)
    fast = FastPackConnection().pack_command(*args)
    assert b"".join(fast) == b"".join(Connection().pack_command(*args))
    assert len(fast) == 1 or len(args) < FAST_PACK_ARGS  # big ones: one hiredis buffer


def test_a_spaced_command_name_is_split_like_redis_py() -> None:
    args = ["CONFIG GET", *[f"k{i}" for i in range(FAST_PACK_ARGS)]]
    assert b"".join(FastPackConnection().pack_command(*args)) == b"".join(
        Connection().pack_command(*args)
    )


def test_other_argument_types_keep_redis_py_checks_and_encodings() -> None:
    floats = [*_args(FAST_PACK_ARGS), 1.5]
    assert b"".join(FastPackConnection().pack_command(*floats)) == b"".join(
        Connection().pack_command(*floats)
    )
    with pytest.raises(DataError):
        FastPackConnection().pack_command(*_args(FAST_PACK_ARGS), None)
