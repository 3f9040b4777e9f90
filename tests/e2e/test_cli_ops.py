"""Operator commands against the real stack: ``dlq list`` filters, ``boards create`` speed and
``--wait``."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from processors.bootstrap import migrate_database
from processors.cli import cli
from processors.kafka.admin import create_topics
from processors.kafka.producer import LeaderboardProducer
from streams.settings import Settings, get_settings
from tests.integration.conftest import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def ns(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A topic namespace of its own, seen by the CLI through the environment."""
    settings = stack.model_copy(update={"topic_prefix": f"c-{uuid.uuid4().hex[:10]}-"})
    create_topics(settings)
    monkeypatch.setenv("LEADERBOARD_TOPIC_PREFIX", settings.topic_prefix)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    """Exit code and output (with the one-line error ``main`` would print)."""
    result = CliRunner().invoke(cli, list(args))
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        return 1, f"{result.output}error: {error}"
    return result.exit_code, result.output


def lines_of(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "dead letter(s)" not in ln]


def test_dlq_list_filters_newest_first(ns: Settings) -> None:
    now = int(time.time() * 1000)
    dlq = ns.dlq("scores")
    raw = Producer({"bootstrap.servers": ns.kafka_bootstrap})
    # two hours ago: an old dead letter of "arena" (the broker keeps the producer's time here)
    raw.produce(
        dlq,
        key=b"arena",
        value=b"x",
        timestamp=now - 2 * 3_600_000,
        headers=[("reason", b"old: unknown schema fingerprint 0x1")],
    )
    raw.flush(10)
    with LeaderboardProducer(ns) as producer:
        for i, (board, reason) in enumerate(
            [
                ("arena", "duplicate event id e1"),
                ("cup", "Score out of range"),
                ("arena", "late for closed period 2026-10"),
                ("cup", "duplicate event id e2"),
            ]
        ):
            producer.send_dead_letter("scores", 0, 10 + i, board, b"junk", reason)
            producer.flush(10)
            time.sleep(0.01)  # distinct times: the order is the record's time

    code, out = run("dlq", "list")
    assert code == 0, out
    reasons = [ln.rsplit("B  ", 1)[1] for ln in lines_of(out)]
    assert reasons == [
        "duplicate event id e2",
        "late for closed period 2026-10",
        "Score out of range",
        "duplicate event id e1",
        "old: unknown schema fingerprint 0x1",
    ], out
    code, out = run("dlq", "list", "--board", "arena")
    assert [ln.rsplit("B  ", 1)[1] for ln in lines_of(out)] == [
        "late for closed period 2026-10",
        "duplicate event id e1",
        "old: unknown schema fingerprint 0x1",
    ], out
    assert "3 matching dead letter(s)" in out
    code, out = run("dlq", "list", "--reason", "DUPLICATE", "--limit", "1")
    assert lines_of(out)[0].endswith("duplicate event id e2") and len(lines_of(out)) == 1
    assert "(the newest 1)" in out
    code, out = run("dlq", "list", "--since", "1h", "--board", "arena")
    assert "old:" not in out and len(lines_of(out)) == 2, out
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 3 * 3600))
    code, out = run("dlq", "list", "--since", iso, "--reason", "fingerprint")
    assert len(lines_of(out)) == 1 and "old:" in out, out
    code, out = run("dlq", "list", "--since", "yesterday")
    assert code == 2 and "--since" in out and "10m" in out, out
    code, out = run("dlq", "list", "--board", "nobody")
    assert code == 0 and "0 matching dead letter(s)" in out


def test_boards_create_is_fast_and_wait_blocks_until_registered(ns: Settings) -> None:
    run("boards", "create", f"warm-{uuid.uuid4().hex[:6]}")  # imports, first connections
    took = []
    for _ in range(3):
        started = time.perf_counter()
        code, out = run("boards", "create", f"fast-{uuid.uuid4().hex[:6]}")
        took.append(time.perf_counter() - started)
        assert code == 0 and "created board" in out, out
    # a cold idempotent producer used to wait ~0.5 s for its start-up retry on every create
    assert statistics.median(took) < 0.45, took

    board = f"wait-{uuid.uuid4().hex[:6]}"
    code, out = run("boards", "create", board, "--wait", "--wait-timeout", "1")
    assert code != 0 and "not registered within 1s" in out and "sinks" in out, out

    migrate_database(ns.postgres_dsn)
    p = Pipeline(ns, f"w{uuid.uuid4().hex[:8]}")
    try:
        p.env["LEADERBOARD_TOPIC_PREFIX"] = ns.topic_prefix
        p.start_worker("sinks")
        board = f"wait-{uuid.uuid4().hex[:6]}"
        code, out = run("boards", "create", board, "--wait", "--wait-timeout", "90")
        assert code == 0 and f"board {board} registered by the sinks worker after" in out, out
    finally:
        p.stop_all()
