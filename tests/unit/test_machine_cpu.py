"""The machine's CPU split (benchmarks/machine_cpu.py): process trees, windows, this process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.machine_cpu import BENCH, CpuSnapshot, CpuSplit, _tree_cpu, us_per_unit
from streams.settings import Settings


def test_tree_counts_descendants_and_leaves_out_skipped_subtrees() -> None:
    # pid -> (parent, CPU s with reaped children): 10 is the root, 12 a grandchild, 20 a stranger
    procs = {10: (1, 1.0), 11: (10, 0.5), 12: (11, 0.25), 13: (10, 2.0), 20: (1, 9.0)}
    assert _tree_cpu(10, procs) == 3.75
    assert _tree_cpu(10, procs, frozenset({11})) == 3.0  # 11 and its child 12 left out
    assert _tree_cpu(99, procs) == 0.0  # gone


def test_us_per_unit_splits_the_window_and_names_the_rest_other() -> None:
    first = CpuSnapshot({"kafka": 1.0, "redis": 2.0, BENCH: 0.5}, machine=10.0)
    last = CpuSnapshot({"kafka": 1.5, "redis": 2.25, BENCH: 0.75}, machine=12.0)
    split = us_per_unit(first, last, 1_000)
    assert split["kafka"] == 500.0
    assert split["redis"] == 250.0
    assert split[BENCH] == 250.0
    assert split["machine"] == 1_000.0
    assert split["other"] == 1_000.0  # 2 s of the machine, 1 s of it ours
    assert us_per_unit(first, last, 0) == {}


_BURN = """
import sys, time
sys.stdin.readline()
t = time.process_time()
while time.process_time() - t < 0.4:
    pass
print("done", flush=True)
sys.stdin.readline()
"""


def test_a_busy_worker_is_measured_in_its_group_not_in_this_process(tmp_path: Path) -> None:
    # no service answers at these addresses: only the worker and this process are measured
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0",
        postgres_dsn="postgresql://x:y@127.0.0.1:1/none",
        stack_dir=tmp_path,
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        split = CpuSplit(settings, {"worker": worker.pid})
        assert set(split.roots) == {"worker"}
        first = split.snapshot()
        worker.stdin.write("go\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "done"
        last = split.snapshot()  # the worker still runs: its own utime, not our cutime
    finally:
        worker.kill()
        worker.wait(10)
    us = us_per_unit(first, last, 1)
    assert us["worker"] >= 300_000
    assert us[BENCH] < 200_000
    assert us["machine"] >= us["worker"]
