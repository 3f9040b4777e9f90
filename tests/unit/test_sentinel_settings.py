"""Redis through Sentinel: the settings that turn it on and the clients built from them."""

from __future__ import annotations

import os

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from processors.bootstrap import make_client, sync_redis
from streams.settings import Settings, sentinel_addresses


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no LEADERBOARD_* variable (CI may run on moved ports)."""
    for name in [n for n in os.environ if n.startswith("LEADERBOARD_")]:
        monkeypatch.delenv(name)


def test_off_by_default() -> None:
    s = Settings()
    assert s.redis_sentinels == ""
    assert (s.redis_ha_port, s.redis_sentinel_port) == (16381, 16391)


def test_redis_ha_names_the_local_sentinels_moved_by_the_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADERBOARD_REDIS_HA", "1")
    monkeypatch.setenv("LEADERBOARD_STACK_OFFSET", "1000")
    s = Settings()
    assert (s.redis_ha_port, s.redis_sentinel_port) == (17381, 17391)
    assert s.redis_sentinels == "127.0.0.1:17391,127.0.0.1:17392,127.0.0.1:17393"


def test_explicit_sentinels_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADERBOARD_REDIS_HA", "1")
    monkeypatch.setenv("LEADERBOARD_REDIS_SENTINELS", "s1:26379, [::1]:26380")
    s = Settings()
    assert sentinel_addresses(s.redis_sentinels) == [("s1", 26379), ("::1", 26380)]


@pytest.mark.parametrize("bad", ["s1", "s1:", ":26379", "s1:port", "s1:70000"])
def test_a_malformed_sentinel_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("LEADERBOARD_REDIS_SENTINELS", f"ok:1,{bad}")
    with pytest.raises(ValueError, match=f"LEADERBOARD_REDIS_SENTINELS: '{bad}' is not host:port"):
        Settings()


def test_the_sentinel_ports_must_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADERBOARD_REDIS_SENTINEL_PORT", "65534")
    with pytest.raises(ValueError, match="redis_sentinel_port 65534 needs port 65536"):
        Settings()


def test_every_client_goes_through_the_sentinels() -> None:
    """Built without connecting: the pool asks the Sentinels for the primary's address."""
    s = Settings(redis_sentinels="127.0.0.1:1,127.0.0.1:2", redis_sentinel_master="lb-main")
    client = make_client(s)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "lb-main"
    assert [
        c.connection_pool.connection_kwargs["port"] for c in pool.sentinel_manager.sentinels
    ] == [
        1,
        2,
    ]
    # the projector must see every failure, whatever redis-py's default retries are
    strict = make_client(s, follow_quietly=False)
    assert strict.connection_pool.make_connection().retry.get_retries() == 0
    blocking = sync_redis(s)
    assert type(blocking.connection_pool).__name__ == "SentinelConnectionPool"
