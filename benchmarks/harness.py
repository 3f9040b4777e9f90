"""The harness every scenario runs in: an isolated namespace, worker processes, probes.

A ``Namespace`` owns its topics, consumer groups, boards and subprocesses and cleans them up;
``private_redis`` starts a redis-server of the run's own; the probes read progress (board
versions, audit rows, topic sizes) and the raw Kafka consume rate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from processors.bootstrap import get_codec, kafka_admin, kafka_consumer, pg_connect, sync_redis
from processors.kafka.admin import create_topics
from projections.keys import BoardKeys
from streams.settings import Settings
from streams.topics import all_topics

log = logging.getLogger(__name__)

#: Progress lines for the operator (the CLI prints them to stderr).
Say = Callable[[str], None]

T = TypeVar("T")


class Namespace:
    """An isolated run: own topics, consumer groups, boards; worker subprocesses it owns."""

    def __init__(self, base: Settings, kind: str, logs: Path) -> None:
        self.tag = f"bench{kind}{uuid.uuid4().hex[:6]}"
        self.settings = base.model_copy(
            update={"topic_prefix": f"{self.tag}.", "app_id": f"lb-{self.tag}"}
        )
        self.env = {
            **os.environ,
            "LEADERBOARD_TOPIC_PREFIX": f"{self.tag}.",
            "LEADERBOARD_APP_ID": f"lb-{self.tag}",
            "LEADERBOARD_REDIS_URL": base.redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.boards: list[str] = []
        create_topics(self.settings)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``python -m processors ARGS`` in this namespace, logging to a file."""
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{self.tag}-{name}-{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "processors", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """SIGTERM every process this namespace started (SIGKILL after 20 s)."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def cleanup(self, *, audit: bool = True) -> None:
        """Stop processes; delete the namespace's topics, Redis keys and audit rows."""
        self.stop()
        r = sync_redis(url=self.settings.redis_url)
        try:
            for board in self.boards:
                for prefix in ("lb", "lbr"):
                    keys = list(r.scan_iter(match=BoardKeys(board, prefix).pattern, count=1000))
                    for i in range(0, len(keys), 500):
                        r.unlink(*keys[i : i + 500])
        finally:
            r.close()
        if audit and self.boards:
            with pg_connect(self.settings, autocommit=True) as conn:
                conn.execute(
                    "DELETE FROM audit_entries WHERE board_id IN "
                    "(SELECT id FROM audit_boards WHERE name = ANY(%s))",
                    [self.boards],
                )
        admin = kafka_admin(self.settings)
        names = [t.name for t in all_topics(self.settings)]
        with contextlib.suppress(Exception):
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(30)


@contextlib.contextmanager
def private_redis(settings: Settings, logs: Path) -> Iterator[Settings]:
    """A redis-server of our own, configured like the stack's (AOF everysec, no RDB saves).

    The stack may be shared: fault-injection tests restart its Redis, which
    would wipe a benchmark's boards mid-run. Yields ``settings`` pointing at the private one.
    """
    server = shutil.which("redis-server")
    if server is None:
        yield settings
        return
    port = free_port()
    data = settings.stack_dir / f"bench-redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / f"redis-{port}.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - redis-server from PATH, fixed arguments
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        r = sync_redis(url=url)
        deadline = time.monotonic() + 20
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        r.close()
        yield settings.model_copy(update={"redis_url": url})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_available() -> bool:
    """True if this checkout has the HTTP/WebSocket gateway command."""
    import click

    from processors.cli import cli

    return "gateway" in cli.list_commands(click.Context(cli))  # commands load lazily


def gateway_args(port: int) -> list[str]:
    """The CLI arguments of a benchmark gateway on loopback ``port`` (open writes: no keys)."""
    return [
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--open",
    ]


def wait_http(url: str, timeout: float = 60.0) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout`` seconds pass (False)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        time.sleep(0.3)
    return False


def board_versions(r: redis.Redis, boards: Sequence[str]) -> int:
    """Sum of the boards' versions: how many entries were applied to Redis."""
    pipe = r.pipeline(transaction=False)
    for b in boards:
        pipe.hget(BoardKeys(b).state, "ver")
    return sum(int(v) for v in pipe.execute() if v is not None)


def audit_rows(conn: psycopg.Connection[Any], boards: Sequence[str]) -> int:
    """How many audit rows PostgreSQL holds for ``boards``."""
    row = conn.execute(
        "SELECT count(*) FROM score_audit WHERE leaderboard_id = ANY(%s)", [list(boards)]
    ).fetchone()
    return int(row[0]) if row else 0


def topic_end(settings: Settings, topic: str) -> tuple[int, int]:
    """(records in the topic, partitions) from the watermarks."""
    c = kafka_consumer(settings, **{"group.id": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total, len(meta.partitions)
    finally:
        c.close()


def kafka_consume_rate(settings: Settings, topic: str, decode: bool) -> tuple[int, float]:
    """Read ``topic`` from the beginning to its end: (records, seconds); optionally decode."""
    total, parts = topic_end(settings, topic)
    c = kafka_consumer(
        settings,
        **{
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        },
    )
    codec = get_codec(settings)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(parts)])
        seen = 0
        t0 = time.perf_counter()
        idle = 0
        while seen < total and idle < 20:
            msgs = c.consume(10_000, timeout=0.5)
            if not msgs:
                idle += 1
                continue
            idle = 0
            for m in msgs:
                if m.error():
                    continue
                seen += 1
                if decode:
                    codec.decode(m.value() or b"")  # match results and clock marks
        return seen, time.perf_counter() - t0
    finally:
        c.close()


def retry(fn: Callable[[], T], say: Say, attempts: int = 2) -> T:
    """Run one benchmark run again if a service failed under it (the stack is shared)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("run failed, retrying once: %r", exc)
            say(f"  run failed ({exc!r:.200}); retrying once")
            time.sleep(5)
    raise AssertionError("unreachable")
