"""``leaderboard traces``: a submission's latency by hop, read from a trace file."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from processors.trace_hops import breakdown, paths, read_spans


@click.command()
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event-id", help="Only this submission (its event id, as POST answered).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per submission instead.")
def traces(trace_file: Path, event_id: str | None, as_json: bool) -> None:
    """Break submissions' latency down by hop (gateway, Kafka, apply, publish, push) from the
    spans in TRACE_FILE (the LEADERBOARD_TRACE_FILE of the gateway and the projector):
    p50, p99 and max per hop over every submission traced through the projector."""
    found = paths(read_spans(trace_file), event_id)
    if not found:
        which = f"submission {event_id}" if event_id else "submission"
        raise click.ClickException(
            f"no {which} in {trace_file} reached the projector: were the gateway (or producer) "
            "and the projector both run with LEADERBOARD_TRACE_FILE set to this file?"
        )
    if as_json:
        for p in found:
            click.echo(json.dumps({"event_id": p.event_id, "ms": p.hops()}))
        return
    table = Table("hop", "n", "p50 ms", "p99 ms", "max ms", "what")
    for name, meaning, n, p50, p99, top in breakdown(found):
        table.add_row(name, str(n), f"{p50:.1f}", f"{p99:.1f}", f"{top:.1f}", meaning)
    Console().print(table)


COMMANDS = [traces]
