"""The store contract in memory: no service needed (part of ``make test-unit``)."""

from __future__ import annotations

import pytest

from projections.memory import MemoryStore
from tests.contract.moderation_contract import ModerationContract
from tests.contract.store_contract import DEDUP, GRACE, OVERTAKEN, StoreContract


class TestMemoryStore(StoreContract, ModerationContract):
    """projections.memory.MemoryStore."""

    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore(overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP)

    def shadow_of(self, store: MemoryStore) -> MemoryStore:
        return MemoryStore(
            prefix=store.prefix + "r", overtaken_limit=OVERTAKEN, grace_ms=GRACE, dedup=DEDUP
        )
