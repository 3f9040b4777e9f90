"""``leaderboard profile set | show | rebuild``: participant profiles (display name, avatar …)."""

from __future__ import annotations

import asyncio

import click
import pydantic

from processors.cli.common import parse_meta, wall_ms
from processors.kafka.producer import LeaderboardProducer
from processors.profiles import profile_text, publish_profile, read_profile, rebuild_profiles
from streams.errors import LeaderboardError
from streams.profiles import ProfileIn
from streams.settings import get_settings
from streams.validation import format_errors


@click.group()
def profile() -> None:
    """Participant profiles: set one (an event on the participants topic), show, rebuild."""


@profile.command("set")
@click.argument("participant")
@click.option("--name", "display_name", default=None, help="Display name (1 to 64 characters).")
@click.option("--avatar", "avatar_url", default=None, help="http(s) URL of the picture.")
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 code, e.g. FR.")
@click.option(
    "--meta", multiple=True, metavar="KEY=VALUE", help="Free metadata pair (repeatable, ≤ 16)."
)
def profile_set(
    participant: str,
    display_name: str | None,
    avatar_url: str | None,
    country: str | None,
    meta: tuple[str, ...],
) -> None:
    """Set PARTICIPANT's whole profile (fields left out are cleared); the sinks worker applies
    it to reads."""
    try:
        body = ProfileIn(
            display_name=display_name,
            avatar_url=avatar_url,
            country=country,
            metadata=parse_meta(meta),
        )
        event = body.to_event(participant, wall_ms(), "service")
    except pydantic.ValidationError as exc:
        raise LeaderboardError(f"invalid profile: {format_errors(exc)}") from None
    except ValueError as exc:
        raise LeaderboardError(f"invalid participant: {exc}") from None
    settings = get_settings()
    with LeaderboardProducer(settings) as producer:
        publish_profile(producer, event)
        producer.flush(30)
    click.echo(f"profile of {participant} published: {profile_text(event.profile())}")


@profile.command("show")
@click.argument("participant")
def profile_show(participant: str) -> None:
    """Show PARTICIPANT's current profile as reads return it (from Redis)."""
    found = asyncio.run(read_profile(get_settings(), participant))
    if found is None:
        raise LeaderboardError(f"participant {participant!r} has no profile")
    click.echo(profile_text(found))


@profile.command("rebuild")
def profile_rebuild() -> None:
    """Rebuild every profile in Redis and PostgreSQL from the compacted participants topic."""
    report = asyncio.run(rebuild_profiles(get_settings()))
    extra = f" ({report.undecodable} undecodable record(s) skipped)" if report.undecodable else ""
    click.echo(f"rebuilt {report.participants} profile(s) from the participants topic{extra}")


COMMANDS: list[click.Command] = [profile]
