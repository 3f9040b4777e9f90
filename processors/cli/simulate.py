"""``leaderboard simulate``: a realistic, Zipf-skewed score load for demos and benchmarks."""

from __future__ import annotations

import bisect
import itertools
import logging
import random
import time
import uuid

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from processors.cli.common import config_topic, wall_ms
from processors.kafka.admin import require_topics
from processors.kafka.producer import LeaderboardProducer, read_boards
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
from streams.validation import parse_board

logger = logging.getLogger(__name__)

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
                configured_at=wall_ms(),
                watch_top_n=10,
                metadata={"simulated": "true"},
            )
            producer.configure(cfg)
            created += 1
        out.append(cfg)
    producer.flush(30.0)
    return out, created


def _send(
    producer: LeaderboardProducer,
    workload: _Workload,
    rate: float,
    duration: float,
    console: Console,
) -> tuple[int, int, float, float]:
    """Send matches on schedule with a progress bar; (records, entries, seconds, start)."""
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
            now_ms = wall_ms()
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
    return records, entries, sent_elapsed, start


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
    require_topics(settings, [scores_topic, config_topic(settings)])
    parse_board({"leaderboard_id": f"{prefix}-000"})  # validates the prefix
    rng = random.Random(seed)
    console = Console(stderr=True)
    with LeaderboardProducer(settings) as producer:
        sim_boards, created = _ensure_sim_boards(settings, producer, prefix, board_count)
        if created:
            console.print(f"created {created} board(s) {prefix}-000..")
        workload = _Workload(rng, sim_boards, participants, entries_per_match)
        records, entries, sent_elapsed, start = _send(producer, workload, rate, duration, console)
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


COMMANDS: list[click.Command] = [simulate]
