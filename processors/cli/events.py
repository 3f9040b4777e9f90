"""``leaderboard topics | boards | produce | simulate | dlq``: the event side of the CLI."""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from processors.kafka.admin import create_topics, list_topics, require_topics
from processors.kafka.producer import LeaderboardProducer, read_boards, read_to_end
from streams.errors import LeaderboardError, UnknownLeaderboard, ValidationError
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings, get_settings
from streams.validation import parse_board, parse_match, parse_time

logger = logging.getLogger(__name__)

_OPERATORS = [o.value for o in Operator]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_option(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _meta(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value (got {pair!r})", param_hint="--meta")
        out[key] = value
    return out


# --- topics -------------------------------------------------------------------------------


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


@click.group()
def boards() -> None:
    """Create, list and close leaderboards (the compacted configuration topic)."""


def _config_topic(settings: Settings) -> str:
    return settings.topic(settings.config_topic)


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
    type=click.Choice(_OPERATORS),
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
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Board metadata; repeatable.")
def boards_create(
    board_id: str,
    sort_order: str | None,
    operator: str | None,
    period: str | None,
    top_n: int | None,
    starts_at: str | None,
    ends_at: str | None,
    meta: tuple[str, ...],
) -> None:
    """Create leaderboard BOARD_ID, or update --top-n / --meta of an existing one.

    Sort order, operator, period and window are fixed at creation: changing them on an existing
    board is refused, because its stored scores were combined under the old rules. Options not
    given keep the existing board's values.
    """
    settings = get_settings()
    require_topics(settings, [_config_topic(settings)])
    existing = read_boards(settings).get(board_id)
    base = existing or LeaderboardConfigured(board_id)
    cfg = parse_board(
        {
            "leaderboard_id": board_id,
            "sort_order": sort_order or base.sort_order,
            "operator": operator or base.operator,
            "reset_period": period or base.reset_period,
            "watch_top_n": base.watch_top_n if top_n is None else top_n,
            "starts_at": _time_option(starts_at, "--starts-at") or base.starts_at,
            "ends_at": _time_option(ends_at, "--ends-at") or base.ends_at,
            "metadata": {**base.metadata, **_meta(meta)},
        },
        configured_at=_now_ms(),
    )
    if existing is not None:
        fixed = ("sort_order", "operator", "reset_period", "starts_at", "ends_at")
        changed = [f for f in fixed if getattr(existing, f) != getattr(cfg, f)]
        if changed:
            raise click.UsageError(
                f"board {board_id} exists with different {', '.join(changed)}; these are fixed at "
                "creation: create a new board instead"
            )
        if existing.status is BoardStatus.CLOSED:
            raise LeaderboardError(f"board {board_id} is closed; create a new board instead")
    with LeaderboardProducer(settings) as producer:
        producer.configure(cfg)
    verb = "updated" if existing is not None else "created"
    click.echo(
        f"{verb} board {board_id}: sort {cfg.sort_order}, operator {cfg.operator}, "
        f"period {cfg.reset_period}, top-n {cfg.watch_top_n}"
    )


@boards.command("list")
def boards_list() -> None:
    """Show every leaderboard with its rules and status."""
    settings = get_settings()
    found = read_boards(settings)
    table = Table("board", "sort", "operator", "period", "top-n", "window", "status", "metadata")
    for column in table.columns:
        column.overflow = "fold"
    for board_id in sorted(found):
        cfg = found[board_id]
        window = (
            "-"
            if cfg.starts_at is None and cfg.ends_at is None
            else f"{_fmt_ms(cfg.starts_at)} .. {_fmt_ms(cfg.ends_at)}"
        )
        status = str(cfg.status)
        if cfg.status is BoardStatus.CLOSED:
            status += f" {_fmt_ms(cfg.closed_at)}"
        table.add_row(
            board_id,
            str(cfg.sort_order),
            str(cfg.operator),
            str(cfg.reset_period),
            str(cfg.watch_top_n),
            window,
            status,
            ", ".join(f"{k}={v}" for k, v in sorted(cfg.metadata.items())),
        )
    Console().print(table)
    click.echo(f"{len(found)} board(s)", err=True)


@boards.command("close")
@click.argument("board_id")
@click.option("--at", help="Event time from which scores are refused (ISO-8601 or ms); now.")
def boards_close(board_id: str, at: str | None) -> None:
    """Close leaderboard BOARD_ID: scores with event time at or after --at are dead-lettered."""
    settings = get_settings()
    existing = read_boards(settings).get(board_id)
    if existing is None:
        raise UnknownLeaderboard(f"unknown leaderboard {board_id!r}: see `leaderboard boards list`")
    now = _now_ms()
    closed_at = _time_option(at, "--at") or now
    cfg = replace(existing, status=BoardStatus.CLOSED, closed_at=closed_at, configured_at=now)
    with LeaderboardProducer(settings) as producer:
        producer.configure(cfg)
    click.echo(f"closed board {board_id} from {_fmt_ms(closed_at)}")


# --- produce ------------------------------------------------------------------------------


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
@click.option("--at", help="Event time, ISO-8601 (naive = UTC) or epoch ms; default now.")
@click.option("--operator", type=click.Choice(_OPERATORS), help="Override the board's operator.")
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
      {"leaderboard_id": "arena", "match_id": "m1", "occurred_at": "2025-01-31T12:00:00Z",
       "entries": [{"participant_id": "alice", "score": 120, "operator": "best",
                    "metadata": {"country": "fr"}}]}
    match_id, occurred_at (ISO-8601 or epoch ms; default now), operator and metadata are
    optional. The whole file is validated first: if any line is bad, every bad line number is
    reported and NOTHING is sent (exit code 1), so a file is published all or nothing.
    """
    settings = get_settings()
    single = (board, participant, score)
    if file is not None:
        if any(v is not None for v in (*single, at, operator, match_id)) or meta:
            raise click.UsageError("--file cannot be combined with single-score options")
        events = _read_results(file, _now_ms())
    else:
        if any(v is None for v in single):
            raise click.UsageError("give --board, --participant and --score, or --file")
        entry: dict[str, Any] = {"participant_id": participant, "score": score}
        if operator:
            entry["operator"] = operator
        if meta:
            entry["metadata"] = _meta(meta)
        data: dict[str, Any] = {"leaderboard_id": board, "entries": [entry]}
        if at is not None:
            data["occurred_at"] = _time_option(at, "--at")
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

_SIM_RULES: list[tuple[SortOrder, Operator]] = [
    (SortOrder.DESC, Operator.BEST),
    (SortOrder.DESC, Operator.INCR),
    (SortOrder.DESC, Operator.BEST),
    (SortOrder.DESC, Operator.SET),
    (SortOrder.ASC, Operator.BEST),
    (SortOrder.DESC, Operator.INCR),
]


def _zipf_cum_weights(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank**s) for rank in range(1, n + 1)))


class _Workload:
    """Skewed synthetic matches: Zipf board popularity, heavy-tailed player activity."""

    def __init__(
        self, rng: random.Random, boards: list[LeaderboardConfigured], players: int, k: int
    ) -> None:
        self.rng = rng
        self.boards = boards
        self.board_cw = _zipf_cum_weights(len(boards), 1.1)
        # Player ids are shuffled so that the most active players are not simply p0, p1, ...
        ids = [f"p{i}" for i in range(players)]
        rng.shuffle(ids)
        self.players = ids
        self.player_cw = _zipf_cum_weights(players, 0.9)
        self.k = k

    def _player(self) -> str:
        r = self.rng.random() * self.player_cw[-1]
        return self.players[min(bisect.bisect_left(self.player_cw, r), len(self.players) - 1)]

    def match(self, now_ms: int) -> MatchResultSubmitted:
        """One match of up to k distinct players on a popularity-weighted board."""
        rng = self.rng
        r = rng.random() * self.board_cw[-1]
        board = self.boards[min(bisect.bisect_left(self.board_cw, r), len(self.boards) - 1)]
        players = dict.fromkeys(self._player() for _ in range(self.k))
        entries = []
        for pid in players:
            if board.operator in (Operator.INCR, Operator.DECR):
                score = rng.randint(1, 100)
            else:
                score = int(rng.lognormvariate(8.0, 1.2))
            entries.append(ScoreEntry(pid, score))
        event_id = str(uuid.uuid4())  # never from the seed: re-runs must not look like dups
        return MatchResultSubmitted(
            event_id, event_id, board.leaderboard_id, now_ms, tuple(entries)
        )


def _ensure_sim_boards(
    settings: Settings, producer: LeaderboardProducer, prefix: str, count: int
) -> tuple[list[LeaderboardConfigured], int]:
    existing = read_boards(settings)
    out: list[LeaderboardConfigured] = []
    created = 0
    for i in range(count):
        board_id = f"{prefix}-{i:03d}"
        cfg = existing.get(board_id)
        if cfg is None or cfg.status is BoardStatus.CLOSED:
            sort_order, op = _SIM_RULES[i % len(_SIM_RULES)]
            cfg = LeaderboardConfigured(
                board_id,
                sort_order,
                op,
                ResetPeriod.NONE if i % 3 else ResetPeriod.DAILY,
                configured_at=_now_ms(),
                watch_top_n=10,
                metadata={"simulated": "true"},
            )
            producer.configure(cfg)
            created += 1
        out.append(cfg)
    producer.flush(30.0)
    return out, created


@click.command()
@click.option(
    "--boards",
    "board_count",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="Number of boards (popularity is Zipf-skewed).",
)
@click.option(
    "--participants",
    type=click.IntRange(1, 10_000_000),
    default=10_000,
    show_default=True,
    help="Number of players (activity is heavy-tailed).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=5000,
    show_default=True,
    help="Target score ENTRIES per second (not records).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=10,
    show_default=True,
    help="Seconds to run.",
)
@click.option(
    "--entries-per-match",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Players per match (one record per match).",
)
@click.option(
    "--seed", type=int, default=None, help="Seed of the workload (event ids stay unique)."
)
@click.option("--prefix", default="sim", show_default=True, help="Board id prefix: PREFIX-000 ...")
def simulate(
    board_count: int,
    participants: int,
    rate: float,
    duration: float,
    entries_per_match: int,
    seed: int | None,
    prefix: str,
) -> None:
    """Generate a realistic score load: --rate is score ENTRIES per second across all boards.

    Each record is one match of up to --entries-per-match distinct players on one board. A few
    boards are hot (Zipf s=1.1) and a few players play most matches (Zipf s=0.9). Boards
    PREFIX-000.. are created if missing (a mix of best/incr/set operators, desc and asc).
    """
    settings = get_settings()
    scores_topic = settings.topic(settings.scores_topic)
    require_topics(settings, [scores_topic, _config_topic(settings)])
    parse_board({"leaderboard_id": f"{prefix}-000"})  # validates the prefix
    rng = random.Random(seed)
    console = Console(stderr=True)
    with LeaderboardProducer(settings) as producer:
        sim_boards, created = _ensure_sim_boards(settings, producer, prefix, board_count)
        if created:
            console.print(f"created {created} board(s) {prefix}-000..")
        workload = _Workload(rng, sim_boards, participants, entries_per_match)
        records = entries = 0
        progress = Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        with progress:
            task = progress.add_task("run", total=duration, status="")
            start = time.perf_counter()
            next_update = start
            while True:
                now = time.perf_counter()
                elapsed = now - start
                if elapsed >= duration:
                    break
                allowed = rate * elapsed
                if entries >= allowed:
                    time.sleep(min(0.002, duration - elapsed))
                    producer.poll(0)
                    continue
                now_ms = _now_ms()
                # Send a burst until caught up with the schedule (bounded to stay responsive).
                for _ in range(1000):
                    if entries >= allowed:
                        break
                    event = workload.match(now_ms)
                    producer.submit(event)
                    records += 1
                    entries += len(event.entries)
                if now >= next_update:
                    progress.update(
                        task,
                        completed=elapsed,
                        status=f"{entries:,} entries  {entries / max(elapsed, 1e-9):,.0f}/s",
                    )
                    next_update = now + 0.25
            sent_elapsed = time.perf_counter() - start
            progress.update(task, completed=duration, status=f"{entries:,} entries, flushing")
        producer.flush(60.0)
        total_elapsed = time.perf_counter() - start
    achieved = entries / sent_elapsed
    click.echo(
        f"sent {records:,} records / {entries:,} entries to {scores_topic} on "
        f"{board_count} boards, {participants:,} players in {sent_elapsed:.1f}s "
        f"(all acknowledged after {total_elapsed:.1f}s)"
    )
    click.echo(
        f"rate: {achieved:,.0f} entries/s ({records / sent_elapsed:,.0f} records/s), "
        f"asked {rate:,.0f} entries/s"
    )
    if achieved < 0.97 * rate:
        click.echo(
            f"reached {achieved:,.0f}/s of the {rate:,.0f}/s asked "
            f"({100 * achieved / rate:.0f}%): this producer is CPU-bound; run several in parallel"
        )
    else:
        click.echo(f"reached the asked rate ({achieved:,.0f}/s of {rate:,.0f}/s)")


# --- dead letters -------------------------------------------------------------------------


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
    help="Show at most N records.",
)
def dlq_list(topic: str, limit: int) -> None:
    """Show the dead-letter topic beside --topic: offset, source position and reason."""
    settings = get_settings()
    name = settings.dlq(topic)
    count = 0
    for msg in read_to_end(settings, name, limit=limit):
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
    click.echo(f"{count} dead letter(s) in {name}" + (" (limit reached)" if count >= limit else ""))


COMMANDS: list[click.Command] = [topics, boards, produce, simulate, dlq]
