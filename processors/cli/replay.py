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
        TextColumn("{task.fields[rate]}"),
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
@click.option(
    "--lua",
    is_flag=True,
    help="Apply every record with the live apply script instead of folding the log and "
    "bulk-loading it (slower; the fast path's reference).",
)
def replay(
    board: str,
    period: str | None,
    source: str,
    from_timestamp: str | None,
    verify: bool,
    dry_run: bool,
    swap: bool,
    lua: bool,
) -> None:
    """Rebuild BOARD from its events into shadow keys, with the live projector's rules.

    The records go through the projector's checks into the reference model, whose final state
    is bulk-loaded and checked by checksum; a swap's catch-up tail (records the live worker
    has not published yet) goes through the live apply script. The live board keeps serving
    meanwhile. --verify compares checksums, counts and the first differing ranks; --swap then
    replaces the live keys in one atomic step after catching up with events that arrived
    during the rebuild.
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
            bar.update(task, completed=done[0], total=total, rate=f"{done[0] / el:,.0f} records/s")

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
                fast=not lua,
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
    help="Boards rebuilt at the same time, each in its own process (about one per core).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Skip boards an interrupted run already rebuilt (still at that watermark live).",
)
@click.option("--lua", is_flag=True, help="Apply every record with the live apply script.")
def rebuild(all_boards: bool, parallel: int, resume: bool, lua: bool) -> None:
    """Rebuild every board from the log and swap it live (after a lost or emptied Redis).

    Each finished board is recorded in Redis with the watermark it swapped in, so --resume
    continues an interrupted run without redoing the boards still live at that watermark.
    """
    del all_boards
    settings = get_settings()
    boards = read_boards(settings)
    with _bar() as bar:
        task = bar.add_task(f"rebuild {len(boards)} board(s)", total=None, rate="-")
        seen: dict[str, tuple[int, int | None]] = {}
        started = time.monotonic()

        def tick(board: str, n: int, total: int | None) -> None:
            seen[board] = (n, total)
            done = sum(x for x, _ in seen.values())
            want = sum(t or 0 for _, t in seen.values())
            el = max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                completed=done,
                total=want or None,
                description=f"rebuild {len(boards)} board(s), {len(seen)} started",
                rate=f"{done / el:,.0f} records/s",
            )

        reports = asyncio.run(
            rebuild_all(
                settings,
                boards,
                parallel=parallel,
                resume=resume,
                fast=not lua,
                report=lambda r: bar.console.print(summarize([r])),
                progress=tick,
            )
        )
    entries = sum(r.entries for r in reports)
    click.echo(
        f"rebuilt {len(reports)} board(s), {entries:,} entries; the projector may apply again"
    )


COMMANDS = [replay, rebuild]
