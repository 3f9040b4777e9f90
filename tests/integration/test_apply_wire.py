"""The apply script's packed arguments (one msgpack array, projections/scripts.py) keep each
value's Lua type: text where the script compares or writes it, a number where it calls
tonumber, exactly as when redis-py sent each argument as its own bulk string."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgpack
import pytest

from projections.keys import BoardKeys, index_value
from projections.redis_client import RedisClient
from projections.scripts import APPLY, Script
from projections.store import RankingStore
from streams import rules
from streams.events import LeaderboardConfigured, Operator
from tests.contract.records import BASE, rec
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)

pytestmark = pytest.mark.integration

#: The largest exact score: its text has 16 digits, which a Lua number prints as 9.007199254741e+15.
TOP = 2**53 - 1


@pytest.fixture
async def store(redis_backend: RedisClient) -> AsyncIterator[RankingStore]:  # noqa: F811
    prefix = f"w{uuid.uuid4().hex[:8]}"
    yield RankingStore(redis_backend, prefix=prefix)
    await scrub(redis_backend, f"{prefix}*")


def test_the_apply_scripts_take_their_arguments_packed() -> None:
    assert APPLY.packed
    assert not Script("count_better.lua").packed


async def test_retained_rows_keep_big_scores_and_metadata_exactly(store: RankingStore) -> None:
    """A retained row is written from the score's text: past 10^14 a Lua number would print
    inexactly, and a void would refold the wrong score."""
    cfg = LeaderboardConfigured("board", retain_entries=True, watch_top_n=3)
    first = rec(0, "e1", BASE, ("p1", TOP - 10), ("p2", 5))
    second = rec(1, "e2", BASE + 1, ("p1", 10, Operator.INCR))
    [out] = await store.apply([(cfg, [first, second])])
    assert [(c.participant_id, c.new_score) for c in out.changes] == [
        ("p1", TOP - 10),
        ("p2", 5),
        ("p1", TOP),
    ]
    keys = BoardKeys("board", store.prefix)
    period = rules.board_period(cfg, BASE)
    rows = await store.client.hget(f"{keys.base}:h:{period}", "p1")
    assert rows is not None
    assert [line.split(b"\t")[1:] for line in rows.split(b"\n")] == [
        [b"best", str(TOP - 10).encode()],
        [b"incr", b"10"],
    ]
    top = await store.top("board", period, cfg.sort_order, limit=2)
    assert [(e.participant_id, e.score) for e in top] == [("p1", TOP), ("p2", 5)]


async def test_a_score_leaving_the_exact_range_is_refused_by_its_text(
    store: RankingStore,
) -> None:
    """The refusal names the entry index and the score as the script formats them."""
    cfg = LeaderboardConfigured("board")
    first = rec(0, "e1", BASE, ("p1", TOP))
    second = rec(1, "e2", BASE + 1, ("p2", 1), ("p1", 1, Operator.INCR))
    [out] = await store.apply([(cfg, [first, second])])
    assert [r.reason for r in out.rejections] == [
        "entries[1]: score 9007199254740992 would leave the exact range |score| < 2^53"
    ]


async def test_the_wire_form_is_one_msgpack_array(store: RankingStore) -> None:
    """What a packed call sends: one bulk string, the flat arguments in a msgpack array."""
    sent: list[tuple[object, ...]] = []
    client = store.client

    class Spy:
        def __init__(self, pipe: object) -> None:
            self.pipe = pipe

        def execute_command(self, *args: object) -> None:
            sent.append(args)
            self.pipe.execute_command(*args)  # type: ignore[attr-defined]

        async def execute(self) -> list[object]:
            return await self.pipe.execute()  # type: ignore[attr-defined, no-any-return]

    class SpyClient:
        def __getattr__(self, name: str) -> object:
            return getattr(client, name)

        def pipeline(self, transaction: bool = False) -> Spy:
            return Spy(client.pipeline(transaction=transaction))

    cfg = LeaderboardConfigured("board")
    spied = RankingStore(SpyClient(), prefix=store.prefix)  # type: ignore[arg-type]
    await spied.apply([(cfg, [rec(0, "e1", BASE, ("p1", 7))])])
    [args] = sent
    nkeys = args[2]
    assert isinstance(nkeys, int)
    [blob] = args[3 + nkeys :]
    assert isinstance(blob, bytes)
    # raw: an entry's index value is bytes, not text
    flat = msgpack.unpackb(blob, raw=True)
    assert flat[1] == b"desc" and flat[-1] == b""
    p1 = flat.index(b"p1")
    assert flat[p1 + 1] == b"7"  # the score as text
    # then operator, metadata, tie-break prefix, index bucket and the prefix as the index keeps it
    assert flat[p1 + 6] == index_value(flat[p1 + 4].decode())
