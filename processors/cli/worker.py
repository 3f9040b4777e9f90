"""``leaderboard worker``: run the projector or the sink processors."""

from __future__ import annotations

import click

from streams.settings import get_settings


@click.command()
@click.option(
    "--role",
    type=click.Choice(["projector", "sinks", "topk"]),
    default="projector",
    show_default=True,
    help=(
        "projector: score topic → Redis + rank changes; sinks: rank changes → PostgreSQL; "
        "topk: the cached global top K of sharded boards."
    ),
)
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level (the format follows LEADERBOARD_LOG_FORMAT: text or json).",
)
def worker(role: str, loglevel: str) -> None:
    """Run a stream worker in the foreground (Ctrl-C stops it cleanly).

    Start several projector workers to share the score topic's partitions: they join one
    consumer group and Kafka rebalances the partitions between them.
    """
    settings = get_settings()
    if role == "projector":
        from processors.workers.projector_app import run_worker

        run_worker(settings, loglevel)
    elif role == "sinks":
        from processors.workers.sinks import run_sinks_worker

        run_sinks_worker(settings, loglevel)
    else:
        from processors.workers.topk import run_worker as run_topk_worker

        run_topk_worker(settings, loglevel)


COMMANDS = [worker]
