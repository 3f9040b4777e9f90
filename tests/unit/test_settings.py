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


def test_the_stack_offset_moves_every_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADERBOARD_STACK_OFFSET", "1000")
    s = Settings()
    assert (s.kafka_port, s.kafka_controller_port) == (20092, 20093)
    assert (s.redis_port, s.redis_cluster_port, s.postgres_port) == (17379, 18001, 16432)
    assert (s.gateway_port, s.worker_web_port) == (9000, 17066)
    assert s.worker_metrics_port == 0  # "not served" stays off
    # and the clients follow the moved ports
    assert s.kafka_bootstrap == "127.0.0.1:20092"
    assert s.redis_url == "redis://127.0.0.1:17379/0"
    assert s.redis_cluster_url == "redis://127.0.0.1:18001/0"
    assert s.postgres_dsn.endswith("@127.0.0.1:16432/leaderboard")


def test_explicit_ports_and_addresses_win_over_the_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADERBOARD_STACK_OFFSET", "1000")
    monkeypatch.setenv("LEADERBOARD_REDIS_PORT", "23000")
    monkeypatch.setenv("LEADERBOARD_WORKER_METRICS_PORT", "9100")
    monkeypatch.setenv("LEADERBOARD_POSTGRES_DSN", "postgresql://u:p@db:5432/lb")
    s = Settings()
    assert s.redis_port == 23000 and s.redis_url == "redis://127.0.0.1:23000/0"
    assert s.worker_metrics_port == 9100
    assert s.postgres_dsn == "postgresql://u:p@db:5432/lb"
    assert s.postgres_port == 16432  # the local server (if started) still moves
    assert s.kafka_port == 20092


def test_a_port_whose_cluster_bus_passes_65535_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADERBOARD_STACK_OFFSET", "30000")
    assert Settings().redis_cluster_port == 47001  # the largest offset still fits
    monkeypatch.setenv("LEADERBOARD_REDIS_CLUSTER_PORT", "60001")
    with pytest.raises(ValueError, match="redis_cluster_port 60001 needs port 70003, above 65535"):
        Settings()
    monkeypatch.setenv("LEADERBOARD_STACK_OFFSET", "30001")
    with pytest.raises(ValueError, match="less than or equal to 30000"):
        Settings()
