"""Every command and group of the CLI has help: a description, every option explained, and
``--help`` exits 0."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from processors.cli.main import COMMAND_MODULES, cli


def walk(
    group: click.Group, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    found: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*path, name))} is listed but cannot be loaded"
        if isinstance(command, click.Group):
            found += walk(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


TREE = walk(cli)


def test_the_tree_is_complete() -> None:
    names = {path[0] for path, _ in TREE if path}
    assert names == set(COMMAND_MODULES)
    # every module's commands are in the table, under that module
    for module_name in set(COMMAND_MODULES.values()):
        module = importlib.import_module(f"processors.cli.{module_name}")
        for command in module.COMMANDS:
            assert COMMAND_MODULES.get(command.name or "") == module_name, command.name
    assert len(TREE) >= 30


@pytest.mark.parametrize("path,command", TREE, ids=[" ".join(p) or "leaderboard" for p, _ in TREE])
def test_help(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert (command.help or "").strip(), f"{' '.join(path)} has no description"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help"
