"""The store contract on Redis: the single node, Redis Cluster, and sharded boards on both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from projections.redis_client import RedisClient, is_cluster
from projections.sharded import ShardedStore
from projections.store import RankingStore
from tests.contract.moderation_contract import ModerationContract
from tests.contract.store_contract import DEDUP, GRACE, OVERTAKEN, StoreContract
from tests.integration.conftest_cluster import (  # noqa: F401  (fixtures)
    cluster_settings,
    redis_backend,
    redis_settings,
    scrub,
)

pytestmark = pytest.mark.integration


class TestRedisStore(StoreContract, ModerationContract):
    """RankingStore (apply.lua), once on the single node and once on the cluster."""

    @pytest.fixture
    async def store(self, redis_backend: RedisClient) -> AsyncIterator[RankingStore]:  # noqa: F811
        prefix = f"t{uuid.uuid4().hex[:8]}"
        yield RankingStore(
            redis_backend, prefix=prefix, overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP
        )
        await scrub(redis_backend, f"{prefix}*")  # the shadow's prefix too

    def shadow_of(self, store: RankingStore) -> RankingStore:
        return RankingStore(
            store.client,
            prefix=store.prefix + "r",
            overtaken_limit=OVERTAKEN,
            grace_ms=GRACE,
            dedup=DEDUP,
        )


class TestShardedStore(StoreContract):
    """ShardedStore over RankingStore, every board sharded by hash or by score range."""

    coalesced = False

    @pytest.fixture(params=["hash:3", "range:-100,0,100"])
    async def store(
        self,
        request: pytest.FixtureRequest,
        redis_backend: RedisClient,  # noqa: F811
    ) -> AsyncIterator[ShardedStore]:
        self.shards = request.param
        if request.param.startswith("hash"):
            # hash shards: ranks at batch boundaries, rejections shard by shard
            self.exact_ranks = self.ordered_rejections = False
        self.notices = "mover"
        # one script swaps every shard: the shards' hash tags must share one node
        self.swap_refused = "Redis Cluster" if is_cluster(redis_backend) else None
        prefix = f"t{uuid.uuid4().hex[:8]}"
        plain = RankingStore(
            redis_backend, prefix=prefix, overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP
        )
        yield ShardedStore(plain)
        await scrub(redis_backend, f"{prefix}*")  # the shadow's prefix too

    def shadow_of(self, store: ShardedStore) -> ShardedStore:
        return ShardedStore(
            RankingStore(
                store.client,
                prefix=store.prefix + "r",
                overtaken_limit=OVERTAKEN,
                grace_ms=GRACE,
                dedup=DEDUP,
            )
        )
