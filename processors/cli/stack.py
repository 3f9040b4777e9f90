"""``leaderboard stack up|down|status``: the local Kafka, Redis and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time

import click
from rich.console import Console

from infra import stack as local_stack
from streams.settings import get_settings


@click.group()
def stack() -> None:
    """Start, stop and inspect the local stack (Kafka, Redis, PostgreSQL).

    Data and logs live under .stack/ (LEADERBOARD_STACK_DIR). A service that already answers
    on its configured address (LEADERBOARD_KAFKA_BOOTSTRAP, LEADERBOARD_REDIS_URL,
    LEADERBOARD_POSTGRES_DSN) is reused and never stopped by `down`.
    """


@stack.command()
@click.option(
    "--no-setup",
    is_flag=True,
    help="Skip database migrations and topic creation after the services answer.",
)
@click.option(
    "--redis-cluster",
    is_flag=True,
    help="Also start a local Redis Cluster (three masters, LEADERBOARD_REDIS_CLUSTER_PORT..).",
)
@click.option(
    "--monitoring",
    is_flag=True,
    help="Also start Prometheus (Debian's package, installed when missing) on "
    "LEADERBOARD_PROMETHEUS_PORT, scraping the gateway and every worker.",
)
@click.option(
    "--ha",
    is_flag=True,
    help="Also start Redis with failover: a primary, a replica and three Sentinels "
    "(LEADERBOARD_REDIS_HA_PORT, LEADERBOARD_REDIS_SENTINEL_PORT); use it with "
    "LEADERBOARD_REDIS_HA=1.",
)
@click.option(
    "--schema-registry",
    is_flag=True,
    help="Also start a Schema Registry (Apicurio Registry from Maven Central, in-memory) on "
    "LEADERBOARD_SCHEMA_REGISTRY_PORT; point LEADERBOARD_SCHEMA_REGISTRY_URL at the URL shown.",
)
def up(
    no_setup: bool, redis_cluster: bool, monitoring: bool, ha: bool, schema_registry: bool
) -> None:
    """Install what is missing, start what is not running, wait until all answer.

    With --redis-cluster a three-master Redis Cluster starts too (ports 17001-17003, data under
    .stack/redis-cluster/); use it with LEADERBOARD_REDIS_CLUSTER=1. With --monitoring our own
    Prometheus starts (port 19090, data under .stack/prometheus/; Debian's own service on :9090
    is not used): it scrapes the gateway and every worker serving metrics, with the alerting
    rules of infra/monitoring/alerts.yml. With --ha a Redis primary (port 16381), its replica
    (16382) and three Sentinels (16391-16393, Debian's redis-sentinel, installed when missing)
    start, configured under .stack/redis-ha/; with LEADERBOARD_REDIS_HA=1 every client then
    finds the primary through the Sentinels and follows a failover. With --schema-registry
    Apicurio Registry starts (port 18081, downloaded once under .stack/schema-registry/, schemas
    kept in memory only); with LEADERBOARD_SCHEMA_REGISTRY_URL set to the URL `status` shows
    (http://127.0.0.1:18081/apis/ccompat/v7) events travel in the Confluent wire format.

    Idempotent: running it again reuses what is up. Kafka jars come from Maven Central on the
    first run (infra/kafka/pom.xml); Redis and PostgreSQL come from Debian's packages.
    """
    console = Console(stderr=True)
    started = time.monotonic()
    with console.status("starting the stack…") as spinner:

        def progress(line: str) -> None:
            spinner.update(line)

        states = local_stack.up(
            get_settings(),
            progress,
            setup=not no_setup,
            redis_cluster=redis_cluster,
            monitoring=monitoring,
            ha=ha,
            schema_registry=schema_registry,
        )
    for state in states:
        click.echo(state.line())
    click.echo(f"stack up in {time.monotonic() - started:.1f}s")


@stack.command()
@click.option("--purge", is_flag=True, help="Also delete the data of the local services.")
def down(purge: bool) -> None:
    """Stop the services that `up` started (reused external servers are left alone)."""
    console = Console(stderr=True)
    with console.status("stopping the stack…") as spinner:
        stopped = local_stack.down(get_settings(), spinner.update, purge=purge)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")


#: Kafka's operator tools by the names of their shell scripts (kafka-topics.sh, ...).
KAFKA_TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "configs": "org.apache.kafka.tools.ConfigCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
}


@stack.command(
    "kafka",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("tool", type=click.Choice(sorted(KAFKA_TOOLS)))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kafka_tool(tool: str, args: tuple[str, ...]) -> None:
    """Run one of Kafka's own tools against the configured cluster (--bootstrap-server added).

    \b
    Examples:
      leaderboard stack kafka consumer-groups --describe --all-groups   (lag per partition)
      leaderboard stack kafka topics --describe --topic scores
      leaderboard stack kafka configs --describe --entity-type topics --entity-name scores
      leaderboard stack kafka console-consumer --topic scores.dlq --from-beginning \\
          --property print.headers=true --max-messages 5
    Pass --help after TOOL for the tool's own options.
    """
    settings = get_settings()
    kafka = local_stack.Kafka(settings)
    argv = list(args)
    if "--help" not in argv and "--bootstrap-server" not in argv:
        argv = ["--bootstrap-server", settings.kafka_bootstrap, *argv]
    cmd = kafka.tool_command(KAFKA_TOOLS[tool], argv)
    sys.exit(subprocess.call(cmd, stdin=sys.stdin))  # noqa: S603


@stack.command()
def status() -> None:
    """Tell which services answer and whether they are ours or external (exit 1 if any is down)."""
    states = local_stack.status(get_settings())
    for state in states:
        click.echo(state.line())
    if not all(state.up for state in states):
        # cli.main runs click with standalone_mode=False, which swallows click's Exit codes.
        sys.exit(1)


COMMANDS: list[click.Command] = [stack]
