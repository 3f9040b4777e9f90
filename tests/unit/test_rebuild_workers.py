"""How ``rebuild --all --parallel`` starts its workers: forked only without native threads."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from confluent_kafka import Producer
from processors.replay import worker_start_method
print(worker_start_method())
producer = Producer({"bootstrap.servers": "127.0.0.1:9"})  # its threads start at once
print(worker_start_method())
del producer  # destroyed: its threads are joined
print(worker_start_method())
"""


def test_workers_fork_only_while_no_kafka_client_threads_run() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["fork", "spawn", "fork"]
