"""SIGTERM on a worker: a healthy one finishes, commits and exits; one stuck retrying an outage
exits within a bound too, leaving its batch uncommitted so the next worker applies it."""

from __future__ import annotations

import signal
import socket
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from processors.kafka.producer import LeaderboardProducer
from streams.events import LeaderboardConfigured
from tests.integration.conftest import ARTIFACTS, Pipeline, wait_until
from tests.integration.test_worker import SCRIPT_AT, match, standings, version

pytestmark = pytest.mark.integration

#: Faust's own stop (consumer, producer, web) takes a few seconds on this machine.
EXIT_BOUND_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def committed(p: Pipeline) -> dict[int, int]:
    """The projector group's committed offset per score partition (-1001: none)."""
    topic = p.settings.topic(p.settings.scores_topic)
    consumer = Consumer(
        {"bootstrap.servers": p.settings.kafka_bootstrap, "group.id": p.settings.app_id}
    )
    try:
        got = consumer.committed([TopicPartition(topic, n) for n in range(3)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def end_offsets(p: Pipeline) -> dict[int, int]:
    topic = p.settings.topic(p.settings.scores_topic)
    consumer = Consumer({"bootstrap.servers": p.settings.kafka_bootstrap, "group.id": "probe"})
    try:
        return {
            n: consumer.get_watermark_offsets(TopicPartition(topic, n), timeout=10)[1]
            for n in range(3)
        }
    finally:
        consumer.close()


def sigterm(p: Pipeline, proc: object) -> float:
    """SIGTERM the worker's process group; seconds until it exited (fails past the bound)."""
    import os
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        p.kill(proc)
        pytest.fail(f"the worker ignored SIGTERM for {EXIT_BOUND_S:g} s (killed)")
    return time.monotonic() - started


def test_sigterm_finishes_the_batch_commits_and_exits(pipeline: Pipeline) -> None:
    board = f"sd-{uuid.uuid4().hex[:6]}"
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(LeaderboardConfigured(board))
        for i in range(20):
            prod.submit(match(board, SCRIPT_AT + i, (f"p{i}", i)))
    proc = pipeline.start_worker("projector")
    wait_until(lambda: version(pipeline, board) == 20, timeout=90)
    took = sigterm(pipeline, proc)
    assert proc.returncode == 0 and took < EXIT_BOUND_S, (proc.returncode, took)
    ends = {n: end for n, end in end_offsets(pipeline).items() if end}  # the board's partition
    got = committed(pipeline)
    assert {n: got[n] for n in ends} == ends and sum(ends.values()) == 20


def test_sigterm_during_an_outage_exits_and_leaves_the_batch_for_redelivery(
    pipeline: Pipeline,
) -> None:
    board = f"so-{uuid.uuid4().hex[:6]}"
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(LeaderboardConfigured(board))
        prod.submit(match(board, SCRIPT_AT, ("ann", 7), ("bob", 3)))
    # Redis "down" for this worker: nothing listens on its port, so every attempt fails
    dead = {"LEADERBOARD_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = pipeline.start_worker("projector", **dead)
    log = ARTIFACTS / f"{pipeline.tag}-projector-0.log"
    wait_until(lambda: "retrying in" in log.read_text(), timeout=90)
    time.sleep(3)  # let the backoff grow: the stop must not wait for it to run out
    took = sigterm(pipeline, proc)
    text = log.read_text()
    assert "shutting down during an outage" in text, text[-2000:]
    assert took < EXIT_BOUND_S
    assert all(off < 0 for off in committed(pipeline).values())  # nothing committed
    # the next worker (Redis back) applies the batch the stopped one never acknowledged
    pipeline.start_worker("projector")
    wait_until(lambda: version(pipeline, board) == 2, timeout=90)
    assert standings(pipeline, board, "all", LeaderboardConfigured(board).sort_order) == [
        ("ann", 7),
        ("bob", 3),
    ]
