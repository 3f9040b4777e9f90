"""``leaderboard schemas``: check a new writer schema against every version the project keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from fastavro.schema import SchemaParseException, UnknownType

from streams.codec import SCHEMA_DIR
from streams.schema_compat import full_name, full_problems


def _load(path: Path, param_hint: str | None = None) -> dict[str, Any]:
    """A named record schema from an .avsc file, or a one-line error saying what is wrong."""
    try:
        schema = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(
            f"{path}: not a readable JSON file: {exc}", param_hint=param_hint
        ) from None
    if not isinstance(schema, dict) or schema.get("type") != "record" or "name" not in schema:
        raise click.BadParameter(
            f"{path}: not an Avro record schema (need a JSON object with type record and a name)",
            param_hint=param_hint,
        )
    return schema


@click.group()
def schemas() -> None:
    """Avro schemas: compatibility checks before shipping a new version."""


@schemas.command("check")
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=SCHEMA_DIR,
    show_default="the project's schemas/",
    help="Folder of the current .avsc files; older versions are read from its history/.",
)
def schemas_check(new: Path, directory: Path) -> None:
    """Check NEW.avsc for full compatibility with every kept version of the same record.

    Full = backward (code with NEW reads records of each old version) and forward (code with
    an old version reads records written with NEW). One line per version; exit 1 when any is
    incompatible, with the reasons.
    """
    candidate = _load(new, "NEW")
    name = full_name(candidate)
    versions = []
    for path in [
        *sorted(directory.glob("*.avsc")),
        *sorted((directory / "history").glob("*.avsc")),
    ]:
        schema = _load(path)
        if full_name(schema) == name:
            versions.append((path, schema))
    if not versions:
        click.echo(
            f"{name}: no version in {directory} or its history/: a new record, nothing to check"
        )
        return
    try:
        results = [(path, full_problems(candidate, schema)) for path, schema in versions]
    except (SchemaParseException, UnknownType, KeyError) as exc:
        raise click.BadParameter(
            f"{new}: not a valid Avro schema: {exc}", param_hint="NEW"
        ) from None
    bad = 0
    for path, problems in results:
        shown = path.relative_to(directory.parent) if directory.parent in path.parents else path
        if problems:
            bad += 1
            click.echo(f"{shown}: INCOMPATIBLE: {'; '.join(problems)}")
        else:
            click.echo(f"{shown}: compatible (backward and forward)")
    if bad:
        click.echo(f"{name}: {new} is incompatible with {bad} of {len(results)} version(s)")
        raise SystemExit(1)
    click.echo(f"{name}: {new} is fully compatible with all {len(results)} version(s)")


COMMANDS: list[click.Command] = [schemas]
