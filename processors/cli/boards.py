"""``leaderboard boards``: create, list and close leaderboards (the compacted config topic)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from processors.bootstrap import pg_connect
from processors.cli.common import OPERATORS, config_topic, fmt_ms, parse_meta, time_option, wall_ms
from processors.kafka.admin import require_topics
from processors.kafka.producer import LeaderboardProducer, read_boards
from sinks import registry
from streams import rules
from streams.errors import LeaderboardError, UnknownLeaderboard
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    ResetPeriod,
    SortOrder,
    TimeSource,
)
from streams.settings import Settings, get_settings
from streams.validation import parse_board

logger = logging.getLogger(__name__)


@click.group()
def boards() -> None:
    """Create, list and close leaderboards (the compacted configuration topic)."""


@boards.command("create")
@click.argument("board_id")
@click.option(
    "--sort",
    "sort_order",
    type=click.Choice([s.value for s in SortOrder]),
    help="desc: higher ranks first; asc: lower ranks first.  [default: desc]",
)
@click.option(
    "--operator",
    type=click.Choice(OPERATORS),
    help="How entries combine with the stored score.  [default: best]",
)
@click.option(
    "--period",
    type=click.Choice([p.value for p in ResetPeriod]),
    help="UTC reset period, by event time.  [default: none]",
)
@click.option(
    "--top-n",
    type=click.IntRange(0, 10_000),
    help="Top size watched by entered/left_top_n notifications (0 = none).  [default: 0]",
)
@click.option("--starts-at", help="Tournament start (ISO-8601 or epoch ms), inclusive.")
@click.option("--ends-at", help="Tournament end (ISO-8601 or epoch ms), exclusive.")
@click.option(
    "--time",
    "time_source",
    type=click.Choice([t.value for t in TimeSource]),
    help="Which time ranks scores (periods, window, ties): log = the broker's append time, "
    "client = the producer's claimed time, for trusted backfills only.  [default: log]",
)
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Board metadata; repeatable.")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 2**31 - 1),
    help="Tournament limit: matches per participant per period (more are dead-lettered "
    "with reason max_attempts).  [default: no limit]",
)
@click.option(
    "--max-participants",
    type=click.IntRange(1, 2**31 - 1),
    help="Tournament limit: participants per period, first come first in (later newcomers are "
    "dead-lettered with reason max_participants).  [default: no limit]",
)
@click.option(
    "--reset-at",
    help="Recurring schedule: when each period instance starts, after its UTC calendar start: "
    "HH:MM for daily (04:00), or a duration such as 5d12h (weekly: Saturday 12:00) or 14400000 "
    "(milliseconds).  [default: 0, the calendar start]",
)
@click.option(
    "--retain-entries",
    is_flag=True,
    default=None,
    help="Keep every applied entry so that `leaderboard moderate void` can revert a match "
    "exactly (costs one stored line per entry).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Return only once the sinks worker has registered the board (PostgreSQL registry).",
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds --wait waits before giving up.",
)
def boards_create(
    board_id: str,
    sort_order: str | None,
    operator: str | None,
    period: str | None,
    top_n: int | None,
    starts_at: str | None,
    ends_at: str | None,
    time_source: str | None,
    meta: tuple[str, ...],
    max_attempts: int | None,
    max_participants: int | None,
    reset_at: str | None,
    retain_entries: bool | None,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Create leaderboard BOARD_ID, or update --top-n / --meta of an existing one.

    Sort order, operator, period and window are fixed at creation: changing them on an existing
    board is refused, because its stored scores were combined under the old rules. Options not
    given keep the existing board's values.

    Returns once Kafka has acknowledged the configuration (acks=all): from then on every
    projector knows the board (they read the configuration topic to its end before a batch).
    --wait also waits for the sinks worker to register it in PostgreSQL.
    """
    settings = get_settings()
    # the producer connects in the background while the topic and boards are read
    producer = LeaderboardProducer(settings)
    try:
        given = {  # None: keep the existing board's value (or the default)
            "sort_order": sort_order,
            "operator": operator,
            "reset_period": period,
            "watch_top_n": top_n,
            "starts_at": time_option(starts_at, "--starts-at"),
            "ends_at": time_option(ends_at, "--ends-at"),
            "time_source": time_source,
            "max_attempts": max_attempts,
            "max_participants": max_participants,
            "retain_entries": retain_entries,
            "reset_offset_ms": None if reset_at is None else offset_ms(reset_at),
        }
        cfg, verb = _configure(producer, settings, board_id, given, parse_meta(meta))
    finally:
        producer.close()
    extras = [
        f"{name} {value}"
        for name, value in (
            ("max-attempts", cfg.max_attempts),
            ("max-participants", cfg.max_participants),
            ("reset-offset-ms", cfg.reset_offset_ms or None),
            ("retain-entries", "on" if cfg.retain_entries else None),
        )
        if value is not None
    ]
    click.echo(
        f"{verb} board {board_id}: sort {cfg.sort_order}, operator {cfg.operator}, "
        f"period {cfg.reset_period}, top-n {cfg.watch_top_n}, time {cfg.time_source}"
        + "".join(f", {extra}" for extra in extras)
    )
    if wait:
        took = wait_registered(settings, cfg, wait_timeout)
        click.echo(f"board {board_id} registered by the sinks worker after {took:.2f}s")


def offset_ms(text: str) -> int:
    """Milliseconds of a ``--reset-at`` value: HH:MM, a duration like 5d12h30m, or ms."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if clock and int(clock[1]) < 24 and int(clock[2]) < 60:
        return (int(clock[1]) * 60 + int(clock[2])) * 60_000
    span = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?", value)
    if value and span:
        days, hours, minutes = (int(x or 0) for x in span.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60_000
    raise click.BadParameter(
        f"expected HH:MM, a duration such as 5d12h, or milliseconds (got {text!r})",
        param_hint="--reset-at",
    )


def wait_registered(settings: Settings, cfg: LeaderboardConfigured, timeout: float) -> float:
    """Wait until the registry holds ``cfg`` (or a newer configuration); seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    with pg_connect(settings, connect_timeout=5, autocommit=True) as conn:
        while True:
            found = registry.get_board(conn, cfg.leaderboard_id)
            if found is not None and (found.configured_at or 0) >= (cfg.configured_at or 0):
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise LeaderboardError(
                    f"board {cfg.leaderboard_id} was published but not registered within "
                    f"{timeout:g}s: is a sinks worker running (`leaderboard worker --role sinks`)?"
                )
            time.sleep(0.05)


def _configure(
    producer: LeaderboardProducer,
    settings: Settings,
    board_id: str,
    given: dict[str, Any],
    meta: dict[str, str],
) -> tuple[LeaderboardConfigured, str]:
    """Check and publish the board's configuration; the configuration and what was done.

    ``given`` holds the options by field name, None for those not given.
    """
    require_topics(settings, [config_topic(settings)])
    existing = read_boards(settings).get(board_id)
    base = existing or LeaderboardConfigured(board_id)
    kept = {name: getattr(base, name) if value is None else value for name, value in given.items()}
    cfg = parse_board(
        {"leaderboard_id": board_id, **kept, "metadata": {**base.metadata, **meta}},
        configured_at=wall_ms(),
    )
    if existing is not None:
        fixed = (
            "sort_order",
            "operator",
            "reset_period",
            "starts_at",
            "ends_at",
            "time_source",
            "max_attempts",
            "max_participants",
            "retain_entries",
            "reset_offset_ms",
        )
        changed = [f for f in fixed if getattr(existing, f) != getattr(cfg, f)]
        if changed:
            raise click.UsageError(
                f"board {board_id} exists with different {', '.join(changed)}; these are fixed at "
                "creation: create a new board instead"
            )
        if existing.status is BoardStatus.CLOSED:
            raise LeaderboardError(f"board {board_id} is closed; create a new board instead")
    producer.connect(config_topic(settings))
    producer.configure(cfg)
    producer.flush(30)
    return cfg, "updated" if existing is not None else "created"


@boards.command("list")
def boards_list() -> None:
    """Show every leaderboard with its rules and status."""
    settings = get_settings()
    found = read_boards(settings)
    table = Table(
        "board", "sort", "operator", "period", "top-n", "window", "time", "status", "metadata"
    )
    for column in table.columns:
        column.overflow = "fold"
    for board_id in sorted(found):
        cfg = found[board_id]
        window = (
            "-"
            if cfg.starts_at is None and cfg.ends_at is None
            else f"{fmt_ms(cfg.starts_at)} .. {fmt_ms(cfg.ends_at)}"
        )
        status = str(cfg.status)
        if cfg.status is BoardStatus.CLOSED:
            status += f" {fmt_ms(cfg.closed_at)}"
        table.add_row(
            board_id,
            str(cfg.sort_order),
            str(cfg.operator),
            str(cfg.reset_period),
            str(cfg.watch_top_n),
            window,
            str(cfg.time_source),
            status,
            ", ".join(f"{k}={v}" for k, v in sorted(cfg.metadata.items())),
        )
    Console().print(table)
    click.echo(f"{len(found)} board(s)", err=True)


@boards.command("close")
@click.argument("board_id")
@click.option(
    "--at", help="Time from which scores are refused (ISO-8601 or epoch ms; at least 2 s ahead)."
)
def boards_close(board_id: str, at: str | None) -> None:
    """Close leaderboard BOARD_ID for good, from --at (default: in 2 s).

    Scores ranked at or after that time are dead-lettered; the board's open periods end then
    and their final standings are written (history). The close time must lie at least 2 s
    ahead, so that every projector knows it before the first score it refuses.
    """
    settings = get_settings()
    existing = read_boards(settings).get(board_id)
    if existing is None:
        raise UnknownLeaderboard(f"unknown leaderboard {board_id!r}: see `leaderboard boards list`")
    now = wall_ms()
    closed_at = time_option(at, "--at") or now + rules.CLOSE_DELAY_MS
    if closed_at < now + rules.CLOSE_DELAY_MS:
        raise click.UsageError(
            f"--at must lie at least {rules.CLOSE_DELAY_MS // 1000} s ahead: a close cannot "
            "refuse scores already applied"
        )
    if existing.status is BoardStatus.CLOSED:
        raise LeaderboardError(f"board {board_id} is already closed")
    cfg = replace(existing, status=BoardStatus.CLOSED, closed_at=closed_at, configured_at=now)
    with LeaderboardProducer(settings) as producer:
        producer.connect(config_topic(settings))
        producer.configure(cfg)
    click.echo(f"closed board {board_id} from {fmt_ms(closed_at)}")


# --- produce ------------------------------------------------------------------------------


COMMANDS: list[click.Command] = [boards]
