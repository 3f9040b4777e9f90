"""``leaderboard dlq``: inspect dead-lettered records and re-publish them after a fix."""

from __future__ import annotations

import heapq
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import click
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from processors.cli.common import fmt_ms, wall_ms
from processors.kafka.producer import LeaderboardProducer, read_to_end
from streams.settings import get_settings
from streams.validation import parse_time

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _headers(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw or []:
        out[key] = value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")
    return out


def since_ms(value: str | None, now_ms: int) -> int | None:
    """``--since``: an ISO-8601 time, epoch milliseconds, or a duration back from now (10m, 2h)."""
    if value is None:
        return None
    text = value.strip()
    found = _DURATION.fullmatch(text)
    if found:
        return now_ms - int(found.group(1)) * _UNIT_MS[found.group(2)]
    try:
        return parse_time(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{exc} (or give a duration such as 30s, 10m, 2h, 7d)", param_hint="--since"
        ) from None


def _time_of(msg: Message) -> int:
    kind, ms = msg.timestamp()
    return -1 if kind == TIMESTAMP_NOT_AVAILABLE else int(ms)


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")


def select(
    records: Iterable[Message],
    *,
    limit: int,
    oldest: bool = False,
    board: str | None = None,
    reason: str | None = None,
    since: int | None = None,
) -> list[Message]:
    """The ``limit`` newest (or oldest) records that match every filter, in display order.

    Order is the record's time (the broker's, when the dead-letter was written), then its
    partition and offset; ``reason`` matches a substring of the reason header, case-insensitive.
    """
    needle = reason.lower() if reason else None

    def matches(msg: Message) -> bool:
        if board is not None and _text(msg.key()) != board:
            return False
        if since is not None and _time_of(msg) < since:
            return False
        if needle is not None:
            return needle in _headers(msg.headers()).get("reason", "").lower()
        return True

    def order(msg: Message) -> tuple[int, int, int]:
        return (_time_of(msg), msg.partition() or 0, msg.offset() or 0)

    kept = (m for m in records if matches(m))
    if oldest:
        return heapq.nsmallest(limit, kept, key=order)
    return heapq.nlargest(limit, kept, key=order)


#: Dead letters that re-publishing can never apply: their event was applied already.
NEVER_APPLIES = ("duplicate event id",)


def redrive_plan(found: Iterable[Message]) -> tuple[list[Message], int]:
    """The dead letters to re-publish, oldest first, and how many of ``found`` are skipped.

    Skipped: records without a value or a ``source.topic`` header, those whose reason says
    re-publishing cannot apply them (``NEVER_APPLIES``), and repeats of the same key and bytes
    (one event: the first is enough).
    """
    seen: set[tuple[bytes, bytes]] = set()
    plan: list[Message] = []
    skipped = 0
    for msg in found:
        headers = _headers(msg.headers())
        value = msg.value()
        same = (msg.key() or b"", value or b"")
        reason = headers.get("reason", "").lower()
        if (
            not value
            or not headers.get("source.topic")
            or any(r in reason for r in NEVER_APPLIES)
            or same in seen
        ):
            skipped += 1
            continue
        seen.add(same)
        plan.append(msg)
    return plan, skipped


@click.group()
def dlq() -> None:
    """Inspect dead-lettered records (original bytes, reason in headers) and redrive them."""


@dlq.command("list")
@click.option(
    "--topic",
    default="scores",
    show_default=True,
    help="Logical input topic name (scores, leaderboards, rank-changes).",
)
@click.option("--board", help="Only records of this leaderboard (the record key).")
@click.option("--reason", help="Only records whose reason contains this text (any case).")
@click.option(
    "--since",
    metavar="TIME|DURATION",
    help="Only records dead-lettered since TIME (ISO-8601, epoch ms) or DURATION ago (10m, 2h).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Show at most N records: the newest N that match.",
)
@click.option("--oldest", is_flag=True, help="Show the oldest N records first instead.")
def dlq_list(
    topic: str,
    board: str | None,
    reason: str | None,
    since: str | None,
    limit: int,
    oldest: bool,
) -> None:
    """Show the dead-letter topic beside --topic, newest first: time, position, source, reason.

    Without a filter only the newest --limit records of each partition are read; a filter
    reads the whole dead-letter topic (it is small: bad input only).
    """
    settings = get_settings()
    name = settings.dlq(topic)
    start = since_ms(since, wall_ms())
    filtered = board is not None or reason is not None or start is not None
    window: dict[str, int] = {} if filtered or oldest else {"last": limit}
    found = select(
        read_to_end(settings, name, **window),
        limit=limit,
        oldest=oldest,
        board=board,
        reason=reason,
        since=start,
    )
    for msg in found:
        headers = _headers(msg.headers())
        key_text = _text(msg.key())
        at = _time_of(msg)
        # One plain line per record, reason last and never truncated: easy to grep and read.
        click.echo(
            f"{fmt_ms(at) if at >= 0 else '-'}  {msg.partition()}:{msg.offset()}  "
            f"{headers.get('source.topic', '?')}[{headers.get('source.partition', '?')}]"
            f"@{headers.get('source.offset', '?')}"
            f"{'#' + headers['source.index'] if 'source.index' in headers else ''}"
            f"  key={key_text or '-'}  "
            f"{len(msg.value() or b'')}B  {headers.get('reason', '(no reason header)')}"
        )
    which = "oldest" if oldest else "newest"
    shown = f" (the {which} {limit})" if len(found) >= limit else ""
    what = " matching" if filtered else ""
    click.echo(f"{len(found)}{what} dead letter(s) of {name}{shown}")


@dlq.command("replay")
@click.option(
    "--topic",
    default="scores",
    show_default=True,
    help="Logical input topic name whose dead letters to re-publish (scores, leaderboards, ...).",
)
@click.option("--board", help="Only records of this leaderboard (the record key).")
@click.option("--reason", help="Only records whose reason contains this text (any case).")
@click.option(
    "--since",
    metavar="TIME|DURATION",
    help="Only records dead-lettered since TIME (ISO-8601, epoch ms) or DURATION ago (10m, 2h).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be re-published; send nothing.")
def dlq_replay(
    topic: str, board: str | None, reason: str | None, since: str | None, dry_run: bool
) -> None:
    """Re-publish matching dead letters' original bytes to their source topic, after a fix.

    Each record goes back under its original key (so to its board's partition), oldest first.
    Safe to repeat: the projector drops an event id it has applied already (dead-lettered
    again as ``duplicate event id``, which replay then skips), so a record applies once.
    """
    settings = get_settings()
    name = settings.dlq(topic)
    start = since_ms(since, wall_ms())
    found = select(
        read_to_end(settings, name),
        limit=sys.maxsize,
        oldest=True,
        board=board,
        reason=reason,
        since=start,
    )
    plan, skipped = redrive_plan(found)
    sent = 0
    if plan and not dry_run:
        with (
            LeaderboardProducer(settings) as producer,
            click.progressbar(plan, label="re-publishing", file=sys.stderr) as bar,
        ):
            for msg in bar:
                target = _headers(msg.headers())["source.topic"]
                producer.publish_raw(target, msg.key(), msg.value())
                sent += 1
            producer.flush()
    what = "would re-publish" if dry_run else "re-published"
    count = len(plan) if dry_run else sent
    click.echo(
        f"{len(found)} matching dead letter(s) of {name}: {what} {count}, skipped {skipped}"
        f" (duplicate event id, empty, or repeated)"
    )


COMMANDS: list[click.Command] = [dlq]
