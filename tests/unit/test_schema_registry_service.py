"""The local Schema Registry's address follows the stack's port settings."""

from __future__ import annotations

import pytest

from infra.stack.registry import SchemaRegistry
from streams.settings import Settings


def test_registry_port_follows_the_stack_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADERBOARD_SCHEMA_REGISTRY_PORT", raising=False)
    base = Settings(stack_offset=0)
    moved = Settings(stack_offset=3000)
    assert moved.schema_registry_port == base.schema_registry_port + 3000
    assert SchemaRegistry(moved).url() == (
        f"http://127.0.0.1:{moved.schema_registry_port}/apis/ccompat/v7"
    )


def test_an_explicit_registry_port_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADERBOARD_SCHEMA_REGISTRY_PORT", "28081")
    assert Settings(stack_offset=3000).schema_registry_port == 28081
