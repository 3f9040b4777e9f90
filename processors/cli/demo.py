"""``leaderboard demo``: the main job — stack, workers, gateway and a simulator, shown live."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from infra import stack as local_stack
from processors.bootstrap import make_client
from processors.kafka.producer import read_boards
from projections.store import RankingStore
from streams import rules
from streams.errors import LeaderboardError
from streams.events import LeaderboardConfigured
from streams.settings import Settings, get_settings


def _spawn(args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # the child process owns the file
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "processors", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **env} if env else None,
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def _view(settings: Settings, cfg: LeaderboardConfigured, limit: int) -> Table:
    client = make_client(settings)
    try:
        store = RankingStore(client)
        periods = await store.periods(cfg.leaderboard_id)
        period = (
            max(periods, key=lambda p: rules.period_bounds(cfg.reset_period, p)[0])
            if periods
            else rules.ALL_TIME
        )
        rows = await store.top(cfg.leaderboard_id, period, cfg.sort_order, limit=limit)
        version = await store.version(cfg.leaderboard_id)
        count = await store.count(cfg.leaderboard_id, period)
    finally:
        await client.aclose()
    table = Table(
        title=f"{cfg.leaderboard_id} · {period} · {count:,} players · version {version:,}",
        expand=False,
    )
    table.add_column("rank", justify="right")
    table.add_column("participant")
    table.add_column("score", justify="right")
    for e in rows:
        table.add_row(str(e.rank), e.participant_id, f"{e.score:,}")
    return table


@click.command()
@click.option(
    "--boards",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Simulated boards (demo-000 …).",
)
@click.option(
    "--participants",
    default=2000,
    show_default=True,
    type=click.IntRange(1),
    help="Simulated players per board (Zipf-skewed activity).",
)
@click.option("--rate", default=2000.0, show_default=True, help="Simulated score entries/s.")
@click.option(
    "--duration",
    default=0.0,
    show_default=True,
    help="Seconds to run; 0 = until Ctrl-C (60 s when not on a terminal).",
)
@click.option("--port", default=None, type=int, help="Gateway port (default from settings).")
@click.option(
    "--limit",
    default=10,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Rows of the board shown live in the terminal.",
)
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(1, 65534),
    help="Prometheus /metrics of the projector (this port) and the sinks worker (the next); "
    "default LEADERBOARD_WORKER_METRICS_PORT, else the gateway port + 100.",
)
def demo(
    boards: int,
    participants: int,
    rate: float,
    duration: float,
    port: int | None,
    limit: int,
    metrics_port: int | None,
) -> None:
    """Run the whole service on simulated matches and show a board live.

    Starts the stack, a projector, the sinks worker, the gateway and a simulator. Each worker
    serves Prometheus metrics (consumer lag, throughput, batch latency; URLs printed), and the
    gateway's /ops page charts them.

    Logs of every process go to .stack/logs/demo-*.log. Ctrl-C stops what this command started
    (the stack stays up: `leaderboard stack down` stops it).
    """
    settings = get_settings()
    console = Console()
    if duration <= 0 and not sys.stdout.isatty():
        duration = 60.0
    with console.status("starting Kafka, Redis and PostgreSQL"):
        for state in local_stack.up(settings):
            console.print(state.line())
    _rebuild_if_lost(settings, console)
    logs = settings.stack_dir / "logs"
    gport = port or settings.gateway_port
    mport = metrics_port or settings.worker_metrics_port or gport + 100
    metrics = {"projector": mport, "sinks": mport + 1}
    procs = [
        _spawn(
            ["worker", "--role", role],
            logs / f"demo-{role}.log",
            LEADERBOARD_WORKER_METRICS_PORT=str(p),
        )
        for role, p in metrics.items()
    ]
    gateway = "gateway" in _commands()
    if gateway:
        procs.append(
            _spawn(
                # a local demo: open writes when no API key is configured
                ["gateway", "--host", settings.gateway_host, "--port", str(gport), "--open"],
                logs / "demo-gateway.log",
            )
        )
    sim_seconds = duration if duration > 0 else 365 * 24 * 3600
    procs.append(
        _spawn(
            [
                "simulate",
                "--boards",
                str(boards),
                "--participants",
                str(participants),
                "--rate",
                str(rate),
                "--duration",
                str(sim_seconds),
                "--prefix",
                "demo",
            ],
            logs / "demo-simulate.log",
        )
    )
    board = "demo-000"
    try:
        cfg = _wait_board(settings, board)
        if gateway:
            url = f"http://{settings.gateway_host}:{gport}/boards/{board}"
            console.print(
                f"live page: [bold]{url}[/]  (all boards: http://{settings.gateway_host}:{gport}/)"
            )
        for role, p in metrics.items():
            console.print(f"{role} metrics: http://127.0.0.1:{p}/metrics")
        if gateway:
            console.print(f"operations: http://{settings.gateway_host}:{gport}/ops")
        prometheus = local_stack.Prometheus(settings)
        if prometheus.our_pid() is not None:
            console.print(f"prometheus: {prometheus.url()}")
        console.print(f"logs: {logs}/demo-*.log — Ctrl-C to stop")
        end = time.monotonic() + duration if duration > 0 else float("inf")
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while time.monotonic() < end:
                dead = [p for p in procs if p.poll() is not None]
                if dead:
                    raise click.ClickException(
                        f"a demo process exited (pid {dead[0].pid}); see {logs}/demo-*.log"
                    )
                live.update(Group(asyncio.run(_view(settings, cfg, limit))))
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)
    console.print("demo stopped (the stack is still up: `leaderboard stack down` stops it)")


def _rebuild_if_lost(settings: Settings, console: Console) -> None:
    """If Redis lost the projection (marker gone, offsets committed), rebuild it from the log.

    A projector refuses to apply onto such a Redis and waits for `leaderboard rebuild --all`;
    the demo runs that rebuild itself so that `make run` always shows a live board.
    """
    from processors.bootstrap import make_client
    from processors.replay import rebuild_all
    from processors.workers.epoch import epoch_key, group_has_committed

    async def marker_exists() -> bool:
        client = make_client(settings)
        try:
            return bool(await client.exists(epoch_key(settings)))
        finally:
            await client.aclose()

    if asyncio.run(marker_exists()) or not group_has_committed(settings):
        return
    boards = read_boards(settings)
    with console.status(f"Redis lost the rankings: rebuilding {len(boards)} board(s) from the log"):
        try:
            reports = asyncio.run(rebuild_all(settings, boards))
        except LeaderboardError as exc:
            console.print(f"rebuild: {exc}")
            return
    console.print(f"rebuilt {len(reports)} board(s), {sum(r.entries for r in reports):,} entries")


def _commands() -> set[str]:
    from processors.cli import cli

    return set(cli.list_commands(click.Context(cli)))  # commands load lazily


def _wait_board(settings: Settings, board: str, timeout: float = 60.0) -> LeaderboardConfigured:
    deadline = time.monotonic() + timeout
    while True:
        cfg = read_boards(settings).get(board)
        if cfg is not None:
            return cfg
        if time.monotonic() > deadline:
            raise click.ClickException(f"the simulator did not create {board} within {timeout:g}s")
        time.sleep(0.5)


COMMANDS: list[Any] = [demo]
