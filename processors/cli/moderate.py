"""``leaderboard moderate``: remove, void, ban, unban, written as events on the score log."""

from __future__ import annotations

import getpass

import click

from processors.cli.common import wall_ms
from processors.kafka.admin import require_topics
from processors.kafka.producer import LeaderboardProducer, read_boards
from streams import rules
from streams.errors import LeaderboardError, UnknownLeaderboard
from streams.events import LeaderboardModerated
from streams.settings import get_settings
from streams.validation import parse_moderation

_REASON = click.option(
    "--reason", required=True, help="Why (kept with the event and in the audit)."
)
_BY = click.option(
    "--by",
    "issued_by",
    help="Who does it, for the audit.  [default: operator:<login name>]",
)


@click.group()
def moderate() -> None:
    """Moderate a board: each action is an event on the board's partition of the scores topic.

    The projector applies it in order with the scores (dead-lettering it with the reason if it
    cannot apply), replay reproduces it, and the rank changes it makes are published and
    audited. Exits once Kafka has acknowledged the event.
    """


@moderate.command("remove")
@click.argument("board_id")
@click.argument("participant_id")
@click.option("--period", help="The period to remove the record from.  [default: the current one]")
@_REASON
@_BY
def moderate_remove(
    board_id: str, participant_id: str, period: str | None, reason: str, issued_by: str | None
) -> None:
    """Remove PARTICIPANT_ID's record from BOARD_ID (one period's standings)."""
    data = {"action": "remove", "participant_id": participant_id, "reason": reason}
    if period is not None:
        data["period"] = period
    _send(board_id, data, issued_by)


@moderate.command("void")
@click.argument("board_id")
@click.argument("event_id")
@_REASON
@_BY
def moderate_void(board_id: str, event_id: str, reason: str, issued_by: str | None) -> None:
    """Void the match EVENT_ID on BOARD_ID: its entries are reverted exactly, later entries
    keep their results (boards created with --retain-entries)."""
    _send(board_id, {"action": "void", "event_id": event_id, "reason": reason}, issued_by)


@moderate.command("ban")
@click.argument("board_id")
@click.argument("participant_id")
@_REASON
@_BY
def moderate_ban(board_id: str, participant_id: str, reason: str, issued_by: str | None) -> None:
    """Ban PARTICIPANT_ID from BOARD_ID: its later matches are dead-lettered (reason banned)."""
    _send(
        board_id, {"action": "ban", "participant_id": participant_id, "reason": reason}, issued_by
    )


@moderate.command("unban")
@click.argument("board_id")
@click.argument("participant_id")
@_REASON
@_BY
def moderate_unban(board_id: str, participant_id: str, reason: str, issued_by: str | None) -> None:
    """Lift a ban of PARTICIPANT_ID on BOARD_ID."""
    data = {"action": "unban", "participant_id": participant_id, "reason": reason}
    _send(board_id, data, issued_by)


def _send(board: str, data: dict[str, str], issued_by: str | None) -> LeaderboardModerated:
    """Validate, check the board, publish and wait for Kafka's acknowledgement."""
    settings = get_settings()
    who = issued_by or f"operator:{getpass.getuser()}"
    event = parse_moderation(board, data, who, wall_ms())
    topic = settings.topic(settings.scores_topic)
    require_topics(settings, [topic, settings.topic(settings.config_topic)])
    cfg = read_boards(settings).get(board)
    if cfg is None:
        raise UnknownLeaderboard(f"unknown leaderboard {board!r}: create it first")
    refused = rules.moderation_reason(cfg, event)  # what the worker would dead-letter at once
    if refused:
        raise LeaderboardError(f"moderation refused: {refused}")
    producer = LeaderboardProducer(settings)
    try:
        producer.connect(topic)
        producer.moderate(event)
        producer.flush(30)
    finally:
        producer.close()
    click.echo(f"{event.action.value} {event.target} on {board} by {who}: event {event.event_id}")
    return event


COMMANDS = [moderate]
