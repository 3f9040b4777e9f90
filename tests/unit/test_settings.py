"""Settings: a moved port moves every client that was not pointed elsewhere explicitly."""

from __future__ import annotations

import os

import pytest

from streams.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no LEADERBOARD_* variable (CI may run on moved ports)."""
    for name in [n for n in os.environ if n.startswith("LEADERBOARD_")]:
        monkeypatch.delenv(name)


def test_ports_move_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "KAFKA_PORT": "29092",
        "REDIS_PORT": "26379",
        "REDIS_CLUSTER_PORT": "27001",
        "POSTGRES_PORT": "25432",
    }.items():
        monkeypatch.setenv(f"LEADERBOARD_{name}", value)
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:29092"
    assert s.redis_url == "redis://127.0.0.1:26379/0"
    assert s.redis_cluster_url == "redis://127.0.0.1:27001/0"
    assert s.postgres_dsn == "postgresql://leaderboard:leaderboard@127.0.0.1:25432/leaderboard"


def test_an_explicit_address_wins_over_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADERBOARD_KAFKA_PORT", "29092")
    monkeypatch.setenv("LEADERBOARD_KAFKA_BOOTSTRAP", "broker1:9092,broker2:9092")
    s = Settings()
    assert s.kafka_bootstrap == "broker1:9092,broker2:9092"
    assert s.kafka_port == 29092  # the local broker (if started) still listens there


def test_defaults_are_the_local_stack() -> None:
    s = Settings()
    assert (s.kafka_bootstrap, s.redis_url) == ("127.0.0.1:19092", "redis://127.0.0.1:16379/0")
    assert s.model_copy(update={"topic_prefix": "x."}).kafka_bootstrap == s.kafka_bootstrap
