"""The ``leaderboard`` command line: one group; each module of this package adds its commands."""

from __future__ import annotations

import logging
import sys

import click
import pydantic

from processors import logs
from processors.cli import (
    bench,
    boards,
    db,
    demo,
    dlq,
    gateway,
    produce,
    query,
    replay,
    simulate,
    stack,
    topics,
    worker,
)
from streams.errors import LeaderboardError
from streams.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Event-sourced real-time leaderboards: Kafka in, Redis rankings, PostgreSQL history.

    Settings come from LEADERBOARD_* environment variables (see README).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logs.configure(get_settings(), level)


def _register() -> None:
    modules = (stack, db, topics, boards, produce, simulate, dlq, worker, query, replay)
    for module in (*modules, gateway, bench, demo):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def setting_errors(exc: pydantic.ValidationError) -> str:
    """One line naming each bad ``LEADERBOARD_*`` variable and what was wrong with it."""
    parts = []
    for err in exc.errors():
        names = [str(p) for p in err.get("loc", ())]
        where = f"LEADERBOARD_{names[0].upper()}: " if names else ""
        parts.append(where + str(err.get("msg", "invalid")).removeprefix("Value error, "))
    return "; ".join(parts)


def main() -> None:
    """Entry point: run the CLI and turn domain errors into one line and exit code 1."""
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LeaderboardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except pydantic.ValidationError as exc:  # a LEADERBOARD_* variable that does not parse
        click.echo(f"error: invalid setting: {setting_errors(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
