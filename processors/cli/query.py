"""``leaderboard top | rank | checksum``: read the live standings from Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from processors.bootstrap import make_client
from processors.kafka.configview import ConfigView
from projections.sharded import ShardedStore
from projections.store import RankingStore
from streams import rules
from streams.errors import UnknownLeaderboard
from streams.events import LeaderboardConfigured
from streams.settings import Settings, get_settings


def _board(settings: Settings, board: str) -> LeaderboardConfigured:
    view = ConfigView(settings)
    view.start()
    try:
        view.sync_blocking(10)
        cfg = view.get(board)
    finally:
        view.stop()
    if cfg is None:
        raise UnknownLeaderboard(f"unknown leaderboard {board!r}: see `leaderboard boards list`")
    return cfg


async def _current_period(store: ShardedStore, cfg: LeaderboardConfigured) -> str:
    periods = await store.periods(cfg.leaderboard_id)
    if not periods:
        return rules.ALL_TIME
    return max(periods, key=lambda p: rules.period_bounds(cfg.reset_period, p)[0])


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@click.command()
@click.argument("board")
@click.option(
    "--limit",
    default=10,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows to show.",
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Rows to skip (0 = from rank 1).",
)
@click.option("--period", default=None, help="Period key (e.g. 2026-11, 2026-W48); default latest.")
def top(board: str, limit: int, offset: int, period: str | None) -> None:
    """Show the top of a leaderboard (rank, participant, score)."""
    settings = get_settings()
    cfg = _board(settings, board)

    async def go() -> None:
        client = make_client(settings)
        store = ShardedStore(RankingStore(client))
        p = period or await _current_period(store, cfg)
        rows = await store.top(board, p, cfg.sort_order, limit=limit, offset=offset)
        version = await store.version(board)
        await client.aclose()
        table = Table(title=f"{board} · period {p} · version {version}")
        table.add_column("rank", justify="right")
        table.add_column("participant")
        table.add_column("score", justify="right")
        for e in rows:
            table.add_row(str(e.rank), e.participant_id, str(e.score))
        Console().print(table)

    _run(go())


@click.command()
@click.argument("board")
@click.argument("participant")
@click.option("--period", default=None, help="Period key; default latest.")
@click.option(
    "--around",
    default=2,
    show_default=True,
    type=click.IntRange(0, 100),
    help="Neighbours shown above and below the participant.",
)
def rank(board: str, participant: str, period: str | None, around: int) -> None:
    """Show a participant's rank and score, with neighbours above and below."""
    settings = get_settings()
    cfg = _board(settings, board)

    async def go() -> None:
        client = make_client(settings)
        store = ShardedStore(RankingStore(client))
        p = period or await _current_period(store, cfg)
        rows = await store.around(board, p, cfg.sort_order, participant, around)
        await client.aclose()
        if not rows:
            raise UnknownLeaderboard(f"participant {participant!r} is not on {board} ({p})")
        for e in rows:
            mark = "→" if e.participant_id == participant else " "
            click.echo(f"{mark} {e.rank:>8}  {e.participant_id:<32} {e.score}")

    _run(go())


@click.command()
@click.argument("board")
@click.option("--period", default=None, help="Period key; default every period of the board.")
def checksum(board: str, period: str | None) -> None:
    """Print a stable SHA-256 of the full standings (compare live state with a replay)."""
    settings = get_settings()
    cfg = _board(settings, board)

    async def go() -> None:
        client = make_client(settings)
        store = ShardedStore(RankingStore(client))
        periods = [period] if period else await store.periods(board)
        for p in periods:
            digest, count = await store.checksum(board, p, cfg.sort_order)
            click.echo(f"{board}\t{p}\t{count}\t{digest}")
        await client.aclose()

    _run(go())


COMMANDS = [top, rank, checksum]
