"""``leaderboard dlq``: inspect dead-lettered records and their reasons."""

from __future__ import annotations

import logging
from typing import Any

import click

from processors.kafka.producer import read_to_end
from streams.settings import get_settings

logger = logging.getLogger(__name__)


def _headers(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw or []:
        out[key] = value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")
    return out


@click.group()
def dlq() -> None:
    """Inspect dead-lettered records (bytes kept as received, reason in headers)."""


@dlq.command("list")
@click.option(
    "--topic",
    default="scores",
    show_default=True,
    help="Logical input topic name (scores, leaderboards).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Show the newest N records.",
)
@click.option("--oldest", is_flag=True, help="Show the oldest N records instead of the newest.")
def dlq_list(topic: str, limit: int, oldest: bool) -> None:
    """Show the dead-letter topic beside --topic: offset, source position and reason.

    The newest --limit records by default (the ones an on-call engineer is after)."""
    settings = get_settings()
    name = settings.dlq(topic)
    count = 0
    window = {"limit": limit} if oldest else {"last": limit}
    for msg in read_to_end(settings, name, **window):
        headers = _headers(msg.headers())
        key = msg.key()
        key_text = key.decode(errors="replace") if isinstance(key, bytes) else str(key or "")
        # One plain line per record, reason last and never truncated: easy to grep and read.
        click.echo(
            f"{msg.partition()}:{msg.offset()}  "
            f"{headers.get('source.topic', '?')}[{headers.get('source.partition', '?')}]"
            f"@{headers.get('source.offset', '?')}  key={key_text or '-'}  "
            f"{len(msg.value() or b'')}B  {headers.get('reason', '(no reason header)')}"
        )
        count += 1
    which = "oldest" if oldest else "newest"
    click.echo(
        f"{count} dead letter(s) of {name}" + (f" (the {which} {limit})" if count >= limit else "")
    )


COMMANDS: list[click.Command] = [dlq]
