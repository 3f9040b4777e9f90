"""``leaderboard db migrate``, ``leaderboard history`` and ``leaderboard placements``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import psycopg

from processors.bootstrap import migrate_database, postgres
from sinks import history as hist
from sinks.migrate import pending_migrations
from streams.errors import LeaderboardError
from streams.settings import get_settings

__all__ = ["COMMANDS", "PeriodNotClosed"]


class PeriodNotClosed(LeaderboardError):
    """History was asked for a period whose final standings were not written."""


@contextmanager
def _connect() -> Iterator[psycopg.Connection[Any]]:
    try:
        with postgres(get_settings()) as conn:
            yield conn
    except psycopg.errors.UndefinedTable as exc:
        raise LeaderboardError(
            "the database schema is missing; run `leaderboard db migrate`"
        ) from exc


@click.group()
def db() -> None:
    """PostgreSQL schema: migrations of the audit, snapshot and registry tables."""


@db.command()
@click.option("--dry-run", is_flag=True, help="List pending migrations without applying them.")
def migrate(dry_run: bool) -> None:
    """Apply pending SQL migrations from infra/migrations (idempotent)."""
    if dry_run:
        with postgres(get_settings()) as conn:
            pending = pending_migrations(conn)
        for mig in pending:
            click.echo(f"pending {mig.version} {mig.name}")
        if not pending:
            click.echo("up to date")
        return
    applied = migrate_database(get_settings())
    for version in applied:
        click.echo(f"applied {version}")
    if not applied:
        click.echo("up to date")


@click.command()
@click.argument("board")
@click.option("--period", required=True, help="Period key, e.g. 2026-10, 2026-W40, 2026-10-07.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows to show.",
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows to skip (0 = from rank 1).",
)
def history(board: str, period: str, limit: int, offset: int) -> None:
    """Final standings of BOARD in a closed period, from PostgreSQL."""
    with _connect() as conn:
        closed = hist.closed_period(conn, board, period)
        if closed is None:
            known = [c.period for c in hist.closed_periods(conn, board)[:5]]
            hint = f"closed periods: {', '.join(known)}" if known else "it has no closed period"
            raise PeriodNotClosed(f"period {period!r} of board {board!r} is not closed ({hint})")
        rows = hist.period_standings(conn, board, period, limit, offset)
    click.echo(f"{'rank':>6}  {'participant':<32} {'score':>20}")
    for r in rows:
        click.echo(f"{r.rank:>6}  {r.participant_id:<32} {r.score:>20}")
    click.echo(
        f"board {board} period {period}: {closed.participant_count} participants, "
        f"version {closed.version}, checksum {closed.checksum}, "
        f"closed {closed.closed_at:%Y-%m-%d %H:%M:%S%z}"
    )


@click.command()
@click.argument("participant")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Placements to show, newest first.",
)
def placements(participant: str, limit: int) -> None:
    """PARTICIPANT's final placements in closed periods across boards, newest first."""
    with _connect() as conn:
        rows = hist.placements(conn, participant, limit)
    if not rows:
        click.echo(f"no final placements for {participant!r}")
        return
    click.echo(f"{'board':<32} {'period':<12} {'rank':>6} {'of':>6} {'score':>20}")
    for p in rows:
        click.echo(
            f"{p.leaderboard_id:<32} {p.period:<12} {p.rank:>6} {p.participant_count:>6} "
            f"{p.score:>20}"
        )


COMMANDS = [db, history, placements]
