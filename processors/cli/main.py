"""The ``leaderboard`` command line: one group; each module of this package adds its commands."""

from __future__ import annotations

import importlib
import logging
import sys

import click
import pydantic

from processors import logs
from streams.errors import LeaderboardError
from streams.settings import get_settings

#: The module (under ``processors.cli``) of each command. A module is imported only when one
#: of its commands runs or help lists it, so a command pays only for its own imports (the
#: gateway's web framework and the benchmarks take a second to import).
COMMAND_MODULES = {
    "stack": "stack",
    "db": "db",
    "history": "db",
    "placements": "db",
    "profile": "profile",
    "topics": "topics",
    "boards": "boards",
    "produce": "produce",
    "simulate": "simulate",
    "dlq": "dlq",
    "schemas": "schemas",
    "moderate": "moderate",
    "worker": "worker",
    "top": "query",
    "rank": "query",
    "checksum": "query",
    "replay": "replay",
    "rebuild": "replay",
    "gateway": "gateway",
    "bench": "bench",
    "traces": "traces",
    "demo": "demo",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from ``COMMAND_MODULES`` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, loaded or not."""
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module first if needed."""
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"processors.cli.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Event-sourced real-time leaderboards: Kafka in, Redis rankings, PostgreSQL history.

    Settings come from LEADERBOARD_* environment variables (see README).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logs.configure(get_settings(), level)


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
