"""First run: a stack from an EMPTY data directory on ports of its own (one variable,
LEADERBOARD_STACK_OFFSET), then the demo's first steps: the board fills, logs are JSON."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import OFFSET_PORTS, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.fresh_stack]


def ports_free(offset: int) -> bool:
    """True if nothing listens on any port the offset stack would use (cluster bus included)."""
    defaults = {name: Settings.model_fields[name].default for name in OFFSET_PORTS}
    ports = [port + offset for port in defaults.values() if port]
    first = defaults["redis_cluster_port"] + offset
    ports += [p + 10_000 for p in range(first, first + 3)]
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def ephemeral_start() -> int:
    """First port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


@pytest.fixture
def fresh_env(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[dict[str, str]]:
    """The environment of a second stack: only the offset and an empty data directory."""
    # below the kernel's ephemeral ports, where an outgoing connection of any program can hold
    # a port for a moment (and the stack's server then fails to bind it)
    top = ephemeral_start() - 1 - max(Settings.model_fields[n].default for n in OFFSET_PORTS)
    offset = next((o for o in range(2_500, top + 1, 500) if ports_free(o)), None)
    if offset is None:
        pytest.fail(f"no free port range for a second stack between offsets 2500 and {top}")
    stack_dir = Path(tmp_path_factory.mktemp("fresh")) / "stack"
    # Kafka's jars are not data: take the suite's (hard links) instead of resolving them again
    libs = settings.stack_dir / "kafka" / "libs"
    if (libs / ".resolved").exists():
        shutil.copytree(libs, stack_dir / "kafka" / "libs", copy_function=os.link)
        (stack_dir / "logs").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    env |= {
        "LEADERBOARD_STACK_OFFSET": str(offset),
        "LEADERBOARD_STACK_DIR": str(stack_dir),
        "LEADERBOARD_LOG_FORMAT": "json",
    }
    os.chmod(stack_dir.parent, 0o755)  # PostgreSQL's user keeps its data beside ours
    try:
        yield env
    finally:
        cli(env, "stack", "down", "--purge", timeout=120)


def cli(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processors", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_from_an_empty_data_directory_on_moved_ports(fresh_env: dict[str, str]) -> None:
    offset = int(fresh_env["LEADERBOARD_STACK_OFFSET"])
    demo = cli(
        fresh_env,
        "demo",
        "--duration",
        "8",
        "--boards",
        "2",
        "--participants",
        "50",
        "--rate",
        "200",
        timeout=300,
    )
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-3000:]
    assert f"127.0.0.1:{19092 + offset}" in out  # Kafka on the moved port
    assert "demo-000" in out and "Traceback" not in out

    top = cli(fresh_env, "top", "demo-000", "--limit", "3", timeout=60)
    assert top.returncode == 0, top.stderr
    rows = [ln for ln in top.stdout.splitlines() if ln.strip().startswith(("│", "|"))]
    assert len(rows) >= 3, top.stdout

    logs = Path(fresh_env["LEADERBOARD_STACK_DIR"]) / "logs"
    for name in ("demo-projector.log", "demo-sinks.log", "demo-gateway.log"):
        lines = [ln for ln in (logs / name).read_text().splitlines() if ln.strip()]
        assert lines, name
        records = [json.loads(ln) for ln in lines]  # every line is one JSON object
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records), name
