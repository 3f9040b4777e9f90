"""The ``leaderboard`` command line, one module per command group."""

from processors.cli.main import cli, main

__all__ = ["cli", "main"]
