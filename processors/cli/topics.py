"""``leaderboard topics``: create and inspect the Kafka topics."""

from __future__ import annotations

import logging

import click
from rich.console import Console
from rich.table import Table

from processors.kafka.admin import create_topics, list_topics
from streams.settings import get_settings

logger = logging.getLogger(__name__)


@click.group()
def topics() -> None:
    """Create and inspect the Kafka topics of the service."""


@topics.command("create")
def topics_create() -> None:
    """Create every missing topic (idempotent): scores, config, outputs and dead letters."""
    settings = get_settings()
    created = create_topics(settings)
    if created:
        for name in created:
            click.echo(f"created {name}")
    else:
        click.echo("all topics already exist")


@topics.command("list")
def topics_list() -> None:
    """Show the service's topics with partitions and retention."""
    settings = get_settings()
    table = Table("topic", "partitions", "retention", "cleanup")
    infos = list_topics(settings)
    for info in infos:
        table.add_row(info.name, str(info.partitions), info.retention, info.cleanup_policy)
    Console().print(table)
    if not infos:
        click.echo("no topics yet: run `leaderboard topics create`", err=True)


# --- boards -------------------------------------------------------------------------------


COMMANDS: list[click.Command] = [topics]
