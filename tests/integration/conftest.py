"""Fixtures for pipeline tests: an isolated topic namespace and worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.kafka.admin import create_topics
from streams.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class Pipeline:
    """One isolated namespace: its own topics (prefix), consumer groups and worker processes."""

    def __init__(self, base: Settings, tag: str) -> None:
        self.tag = tag
        self.env = {
            **os.environ,
            "LEADERBOARD_TOPIC_PREFIX": f"{tag}.",
            "LEADERBOARD_APP_ID": f"lb-{tag}",
            "LEADERBOARD_PARTITIONS": "3",
            "LEADERBOARD_BATCH_WITHIN": "0.05",
            "PYTHONUNBUFFERED": "1",
        }
        self.settings = base.model_copy(
            update={"topic_prefix": f"{tag}.", "app_id": f"lb-{tag}", "partitions": 3}
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        create_topics(self.settings)

    def start_worker(self, role: str = "projector", **env: str) -> subprocess.Popen[bytes]:
        """Start ``leaderboard worker --role ROLE`` with this namespace's settings."""
        ARTIFACTS.mkdir(exist_ok=True)
        log = open(ARTIFACTS / f"{self.tag}-{role}-{len(self.procs)}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors", "worker", "--role", role],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a worker and wait for it to exit."""
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        """Stop every worker this pipeline started."""
        for proc in self.procs:
            self.kill(proc, signal.SIGTERM)


@pytest.fixture
def pipeline_factory(stack: Settings) -> Iterator[Callable[[], Pipeline]]:
    """Factory of isolated pipelines; their workers are stopped after the test."""
    made: list[Pipeline] = []

    def make() -> Pipeline:
        p = Pipeline(stack, f"t{uuid.uuid4().hex[:8]}")
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop_all()


@pytest.fixture
def pipeline(pipeline_factory: Callable[[], Pipeline]) -> Pipeline:
    """One isolated pipeline."""
    return pipeline_factory()


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test on time-out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(every)
