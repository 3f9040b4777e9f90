"""``leaderboard replay`` and ``leaderboard rebuild``: rebuild boards from the log."""

from __future__ import annotations

import asyncio
import sys
import time

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from processors.kafka.producer import read_boards
from processors.replay import rebuild_all, replay_board, require_board, summarize
from streams.errors import LeaderboardError
from streams.settings import get_settings
from streams.validation import parse_time


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} entries/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        disable=not sys.stderr.isatty(),
        console=None,
    )


@click.command()
@click.argument("board")
@click.option("--period", default=None, help="Compare only this period (with --verify).")
@click.option(
    "--source",
    type=click.Choice(["kafka", "postgres"]),
    default="kafka",
    show_default=True,
    help="Read the score topic (the truth) or the PostgreSQL audit history.",
)
@click.option("--from-timestamp", default=None, help="Start at this event time (ISO-8601 or ms).")
@click.option("--verify", is_flag=True, help="Compare with the live board; exit 1 on a difference.")
@click.option("--dry-run", is_flag=True, help="Rebuild into throw-away keys; never touch live.")
@click.option("--swap", is_flag=True, help="Replace the live board atomically when rebuilt.")
def replay(
    board: str,
    period: str | None,
    source: str,
    from_timestamp: str | None,
    verify: bool,
    dry_run: bool,
    swap: bool,
) -> None:
    """Rebuild BOARD from its events into shadow keys, with the live projector's apply code.

    The live board keeps serving meanwhile. --verify compares checksums, counts and the first
    differing ranks; --swap then replaces the live keys in one atomic step after catching up
    with events that arrived during the rebuild.
    """
    if swap and dry_run:
        raise click.UsageError("--swap and --dry-run exclude each other")
    settings = get_settings()
    cfg = require_board(read_boards(settings), board)
    since = parse_time(from_timestamp) if from_timestamp else None

    with _bar() as bar:
        task = bar.add_task(f"replay {board} from {source}", total=None, rate="-")
        started = [0.0]
        done = [0]

        def tick(n: int, total: int | None) -> None:
            if not started[0]:
                started[0] = time.monotonic()
            done[0] = n if source == "kafka" else done[0] + n
            el = max(time.monotonic() - started[0], 1e-6)
            bar.update(task, completed=done[0], total=total, rate=f"{done[0] / el:,.0f}")

        report = asyncio.run(
            replay_board(
                settings,
                cfg,
                source=source,
                period=period,
                from_timestamp=since,
                verify=verify,
                swap=swap,
                dry_run=dry_run,
                progress=tick,
            )
        )
    click.echo(summarize([report]))
    if verify and not report.verified:
        raise LeaderboardError(f"{board}: rebuilt standings differ from the live ones")


@click.command()
@click.option("--all", "all_boards", is_flag=True, required=True, help="Rebuild every board.")
@click.option(
    "--parallel",
    default=2,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Boards rebuilt at the same time.",
)
@click.option("--resume", is_flag=True, help="Skip boards an interrupted run already rebuilt.")
def rebuild(all_boards: bool, parallel: int, resume: bool) -> None:
    """Rebuild every board from the log and swap it live (after a lost or emptied Redis).

    Progress is recorded in Redis, so --resume continues an interrupted run.
    """
    del all_boards
    settings = get_settings()
    reports = asyncio.run(
        rebuild_all(
            settings,
            read_boards(settings),
            parallel=parallel,
            resume=resume,
            report=lambda r: click.echo(summarize([r])),
        )
    )
    entries = sum(r.entries for r in reports)
    click.echo(
        f"rebuilt {len(reports)} board(s), {entries:,} entries; the projector may apply again"
    )


COMMANDS = [replay, rebuild]
