"""``leaderboard produce``: publish one score or a file of match results."""

from __future__ import annotations

import json
import logging
from typing import IO, Any

import click

from processors.cli.common import OPERATORS, parse_meta, time_option, wall_ms
from processors.kafka.admin import require_topics
from processors.kafka.producer import LeaderboardProducer, read_boards
from streams.errors import UnknownLeaderboard, ValidationError
from streams.events import (
    MatchResultSubmitted,
)
from streams.settings import get_settings
from streams.validation import parse_match

logger = logging.getLogger(__name__)


def _read_results(stream: IO[str], now_ms: int) -> list[MatchResultSubmitted]:
    """Validate every line first; raise one error naming every bad line (nothing is sent)."""
    events: list[MatchResultSubmitted] = []
    bad: list[str] = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {number}: not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            bad.append(f"line {number}: expected a JSON object (got {type(data).__name__})")
            continue
        try:
            events.append(parse_match(data, now_ms=now_ms))
        except ValidationError as exc:
            bad.append(f"line {number}: {exc}")
    if bad:
        for message in bad[:50]:
            click.echo(f"error: {message}", err=True)
        if len(bad) > 50:
            click.echo(f"error: ... and {len(bad) - 50} more bad lines", err=True)
        raise ValidationError(f"{len(bad)} bad line(s) in {stream.name}; nothing was sent")
    return events


@click.command()
@click.option("--board", help="Leaderboard id (single-score mode).")
@click.option("--participant", help="Participant id (single-score mode).")
@click.option("--score", type=int, help="Score, or delta for incr/decr; |score| < 2^53.")
@click.option(
    "--at",
    help="Claimed event time, ISO-8601 (naive = UTC) or epoch ms; default now (it ranks the "
    "score only on --time client boards).",
)
@click.option("--operator", type=click.Choice(OPERATORS), help="Override the board's operator.")
@click.option("--match-id", help="Match id (default: the generated event id).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Participant metadata.")
@click.option(
    "--file", "file", type=click.File("r"), help="JSON-lines file of match results ('-' = stdin)."
)
@click.option("--no-check", is_flag=True, help="Do not check that the boards exist first.")
def produce(
    board: str | None,
    participant: str | None,
    score: int | None,
    at: str | None,
    operator: str | None,
    match_id: str | None,
    meta: tuple[str, ...],
    file: IO[str] | None,
    no_check: bool,
) -> None:
    """Publish one score (--board --participant --score) or a file of match results (--file).

    \b
    File format, one match result per line:
      {"leaderboard_id": "arena", "event_id": "e-42", "match_id": "m1",
       "occurred_at": "2026-01-31T12:00:00Z",
       "entries": [{"participant_id": "alice", "score": 120, "operator": "best",
                    "metadata": {"country": "fr"}}]}

    event_id (the idempotency key: a resend with the same id is dead-lettered as a duplicate;
    default a new UUID), match_id (default the event id), occurred_at (ISO-8601 or epoch ms,
    at most 60 s ahead; default now), operator and metadata are optional. The whole file is
    validated first: if any line is bad, every bad line number is reported and NOTHING is sent
    (exit code 1), so a file is published all or nothing.

    occurred_at ranks the match only on boards created with --time client (backfills); on
    the others the broker's append time ranks it and occurred_at is kept as the claim.
    """
    settings = get_settings()
    single = (board, participant, score)
    if file is not None:
        if any(v is not None for v in (*single, at, operator, match_id)) or meta:
            raise click.UsageError("--file cannot be combined with single-score options")
        events = _read_results(file, wall_ms())
    else:
        if any(v is None for v in single):
            raise click.UsageError("give --board, --participant and --score, or --file")
        entry: dict[str, Any] = {"participant_id": participant, "score": score}
        if operator:
            entry["operator"] = operator
        if meta:
            entry["metadata"] = parse_meta(meta)
        data: dict[str, Any] = {"leaderboard_id": board, "entries": [entry]}
        if at is not None:
            data["occurred_at"] = time_option(at, "--at")
        if match_id is not None:
            data["match_id"] = match_id
        events = [parse_match(data)]
    if not events:
        raise click.UsageError("the file holds no match results")
    scores_topic = settings.topic(settings.scores_topic)
    require_topics(settings, [scores_topic])
    if not no_check:
        known = read_boards(settings)
        unknown = sorted({e.leaderboard_id for e in events} - set(known))
        if unknown:
            raise UnknownLeaderboard(
                f"unknown leaderboard(s) {', '.join(unknown)}: create them with "
                "`leaderboard boards create` (or pass --no-check)"
            )
    with LeaderboardProducer(settings) as producer:
        for event in events:
            producer.submit(event)
    entries = sum(len(e.entries) for e in events)
    if len(events) == 1:
        noun = "entry" if entries == 1 else "entries"
        click.echo(f"sent event {events[0].event_id} ({entries} {noun}) to {scores_topic}")
    else:
        click.echo(f"sent {len(events)} match results ({entries} entries) to {scores_topic}")


# --- simulate -----------------------------------------------------------------------------


COMMANDS: list[click.Command] = [produce]
