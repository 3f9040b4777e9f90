"""Orchestration of a benchmark run: the scenarios in order, into one ``Report``.

``run_bench`` is the entry point (``leaderboard bench``); each scenario module under
``benchmarks/scenarios/`` measures and adds its own figures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.figures import Report
from benchmarks.harness import Say, private_redis
from benchmarks.params import SCENARIOS, Params
from benchmarks.scenarios.audit import run_audit
from benchmarks.scenarios.baselines import run_baselines
from benchmarks.scenarios.big_board import run_big_board
from benchmarks.scenarios.hot import run_hot
from benchmarks.scenarios.ingest import IngestRun, run_ingest
from benchmarks.scenarios.latency import run_latency
from benchmarks.scenarios.profile import run_profile
from benchmarks.scenarios.rebuild import run_rebuild
from benchmarks.scenarios.ws import run_ws
from streams.settings import PROJECT_ROOT, Settings


def _code_version() -> str:
    """HEAD commit and the tracked files that differ from it (the tree is shared)."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    try:
        head = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "diff", "--name-only", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (git failed)"
    if not dirty:
        return f"commit {head}"
    return f"commit {head} + uncommitted changes in {', '.join(dirty)}"


def _machine() -> str:
    """Cores, CPU model, RAM and Python version of this machine."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    return f"{os.cpu_count()} cores ({cpu}), {mem}, Python {sys.version.split()[0]}"


def run_bench(
    base: Settings,
    p: Params,
    *,
    only: Sequence[str] = (),
    say: Say = print,
    shared_redis: bool = False,
) -> Report:
    """Run the selected scenarios (all by default) and return the report.

    Unless ``shared_redis``, every scenario uses a private redis-server (see private_redis).
    """
    if shared_redis:
        return _run_bench(base, p, only, say, "the stack's Redis (shared)")
    with private_redis(base, base.stack_dir / "logs" / "bench") as mine:
        return _run_bench(mine, p, only, say, "a private redis-server, configured like the stack's")


def _run_bench(base: Settings, p: Params, only: Sequence[str], say: Say, redis_note: str) -> Report:
    """Run the scenarios in ``only`` (all if empty) against ``base``, in the canonical order."""
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    report = Report(p, started, _machine())
    report.details["code"] = _code_version()
    report.details["redis"] = f"{redis_note}: {base.redis_url}, AOF everysec, no RDB saves"
    t_start = time.perf_counter()
    logs = base.stack_dir / "logs" / "bench"
    want = set(only) or set(SCENARIOS)
    ingest_runs: list[IngestRun] = []
    if "ingest" in want:
        ingest_runs = run_ingest(base, p, report, logs, say)
    if "latency" in want:
        run_latency(base, p, report, logs, say)
    if "baselines" in want:
        run_baselines(base, p, report, ingest_runs, say)
    run_big_board(base, p, want, report, logs, say)
    if "rebuild" in want:
        run_rebuild(base, p, report, logs, say)
    if "hot" in want:
        run_hot(base, p, report, logs, say)
    if "ws" in want:
        run_ws(base, p, report, logs, say)
    if "profile" in want:
        run_profile(base, p, report, logs, say)
    if "audit" in want:
        run_audit(base, p, report, say)
    report.seconds = time.perf_counter() - t_start
    return report
