"""Fault-injection helpers: sizes (short/full), streams, outages, end checks and the figures file.

``LEADERBOARD_FAULTS=full`` (``make test-faults``) runs the long form: longer streams, more kills,
the full 30 s PostgreSQL outage. Without it (``make test``) every scenario runs its short form so
that the whole directory stays within a few minutes on a 2-core machine.

Each scenario ends with the same verdict (``Verdict``): every board's live checksum equals a clean
pass of the log through the reference model, every version was published on ``rank-changes``, and
the audit history holds every applied entry exactly once. Its figures are merged into
``test-artifacts/reliability.json`` under the scenario's name (``scripts/reliability_report.py``
turns that file into RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from infra import stack as local_stack
from processors.bootstrap import get_codec, make_client, sync_redis
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import replay_board
from projections.keys import BoardKeys
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    RankChanged,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.model import ModelBoard
from streams.rules import standings_checksum
from streams.settings import Settings
from streams.testing import fold_log
from tests.integration.conftest import (  # noqa: F401  (fixtures re-exported)
    ARTIFACTS,
    Pipeline,
    pipeline,
    pipeline_factory,
    wait_until,
)
from tests.integration.ha import ha_pipeline  # noqa: F401  (fixture: Redis through Sentinels)

MODE = "full" if os.environ.get("LEADERBOARD_FAULTS", "").lower() == "full" else "short"
FULL = MODE == "full"
RESULTS = ARTIFACTS / "reliability.json"

HOUR = 3_600_000
#: 2026-10-30 08:00 UTC: streams cross a day end (and a month end in the full form).
START = 1_793_491_200_000 - 40 * HOUR


@dataclass(frozen=True)
class Sizes:
    """How big one form of the suite is."""

    rate: float  # records per second of a stream
    tail_s: float  # the stream goes on this long after the fault has been recovered from
    kills: tuple[int, ...]  # SIGKILL counts, one parametrized run each
    pg_outage_s: float
    converge_s: float  # bound on waiting for the live state / audit to catch up


SIZES = {
    "short": Sizes(rate=60.0, tail_s=2.0, kills=(2,), pg_outage_s=8.0, converge_s=120.0),
    "full": Sizes(rate=120.0, tail_s=10.0, kills=(5, 12), pg_outage_s=30.0, converge_s=300.0),
}[MODE]


# --------------------------------------------------------------------------- boards and streams


def make_boards(tag: str) -> list[LeaderboardConfigured]:
    """Three boards covering each operator family, both sort orders and period resets."""
    return [
        LeaderboardConfigured(f"{tag}-incr", SortOrder.DESC, Operator.INCR, ResetPeriod.MONTHLY),
        LeaderboardConfigured(f"{tag}-best", SortOrder.DESC, Operator.BEST, ResetPeriod.NONE),
        LeaderboardConfigured(f"{tag}-lap", SortOrder.ASC, Operator.BEST, ResetPeriod.DAILY),
    ]


def configure(p: Pipeline, cfgs: list[LeaderboardConfigured]) -> None:
    """Publish the boards' configurations."""
    with LeaderboardProducer(p.settings) as prod:
        for c in cfgs:
            prod.configure(c)


class Stream(threading.Thread):
    """Publishes random match results at ``rate`` records/s in a background thread.

    Runs until ``finish()`` is called (or ``limit`` records were sent), so a fault always
    happens mid-stream whatever the machine's speed. Flushes every 25 records and keeps
    retrying a flush while Kafka is away (bounded), so a broker restart delays the stream
    instead of ending it.
    """

    def __init__(
        self,
        p: Pipeline,
        cfgs: list[LeaderboardConfigured],
        seed: int,
        rate: float,
        limit: int = 1_000_000,
        start_ms: int = START,
    ) -> None:
        super().__init__(daemon=True)
        self.t = start_ms  # event time of the last record sent
        self.p, self.cfgs, self.seed, self.rate, self.limit = p, cfgs, seed, rate, limit
        self.sent = 0
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.seed)
        self.started_at = time.monotonic()
        try:
            prod = LeaderboardProducer(self.p.settings)
            i = 0
            while i < self.limit and not self._halt.is_set():
                cfg = rng.choice(self.cfgs)
                self.t += rng.randint(0, 90_000)
                entries = tuple(
                    ScoreEntry(f"p{rng.randint(0, 40)}", rng.randint(1, 1000))
                    for _ in range(rng.randint(1, 4))
                )
                prod.submit(
                    MatchResultSubmitted(
                        uuid.uuid4().hex, f"m{i}", cfg.leaderboard_id, self.t, entries
                    )
                )
                i += 1
                self.sent = i
                if i % 25 == 0:
                    self._flush(prod)
                    ahead = self.started_at + i / self.rate - time.monotonic()
                    if ahead > 0:
                        self._halt.wait(ahead)
            self._flush(prod)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    @staticmethod
    def _flush(prod: LeaderboardProducer) -> None:
        deadline = time.monotonic() + 150
        while True:
            try:
                prod.flush(10)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise

    def finish(self, timeout: float = 200) -> None:
        """Stop producing, wait for the last flush; fail on a producer error."""
        self._halt.set()
        self.join(timeout)
        assert not self.is_alive(), "the stream did not finish in time"
        if self.error is not None:
            raise AssertionError(f"stream failed: {self.error!r}") from self.error


# --------------------------------------------------------------------------- observation


class Monitor(threading.Thread):
    """Samples the boards' live versions and audit row counts every 0.25 s (tolerates outages)."""

    def __init__(self, p: Pipeline, boards: list[str]) -> None:
        super().__init__(daemon=True)
        self.p, self.boards = p, boards
        self.samples: list[tuple[float, int | None, int | None]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        # through the Sentinels when the pipeline uses them (tests/faults/test_redis_failover.py)
        r = sync_redis(self.p.settings, socket_timeout=1, socket_connect_timeout=1)
        while not self._halt.is_set():
            live: int | None
            audit: int | None
            try:
                live = sum(int(r.hget(BoardKeys(b).state, "ver") or 0) for b in self.boards)
            except Exception:
                live = None
            try:
                with psycopg.connect(self.p.settings.postgres_dsn, connect_timeout=1) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM score_audit WHERE leaderboard_id = ANY(%s)",
                        [self.boards],
                    ).fetchone()
                    audit = int(row[0]) if row else 0
            except Exception:
                audit = None
            self.samples.append((time.monotonic(), live, audit))
            self._halt.wait(0.25)
        with contextlib.suppress(Exception):
            r.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def resumed_after(self, t0: float, what: str = "live") -> float | None:
        """Seconds from ``t0`` until the sampled value (live or audit) grew again."""
        idx = 1 if what == "live" else 2
        base: int | None = None
        for s in self.samples:
            if s[0] < t0:
                continue
            v = s[idx]
            if v is None:
                continue
            if base is None:
                base = v
            elif v > base:
                return round(s[0] - t0, 2)
        return None

    def progressed_between(self, t0: float, t1: float, what: str = "live") -> bool:
        """True if the sampled value grew inside [t0, t1]."""
        idx = 1 if what == "live" else 2
        vals = [s[idx] for s in self.samples if t0 <= s[0] <= t1 and s[idx] is not None]
        return len(vals) >= 2 and max(vals) > min(vals)  # type: ignore[type-var]


@contextlib.contextmanager
def outage(settings: Settings, name: str, *, purge: bool = False) -> Iterator[dict[str, float]]:
    """Stop one local service (optionally deleting its data) for the body of the ``with``.

    Holds the stack lock meanwhile, so another session's ``stack up`` waits for the end of the
    outage instead of restarting the service under the scenario. The service always comes back
    (``stack.up`` in a ``finally``); the yielded dict gets ``down``/``up`` monotonic times.
    """
    svc = {s.name: s for s in local_stack.services(settings)}[name]
    if svc.serving_pid() is None:
        # an external server (someone else's) is never stopped by a test; CI starts its own
        pytest.skip(f"{name} is not ours (external or down): this scenario must not stop it")
    times: dict[str, float] = {}
    try:
        with local_stack.locked(settings):
            svc.stop()
            if purge:
                svc.purge()
            times["down"] = time.monotonic()
            yield times
    finally:
        _restart(settings, name)
        times["up"] = time.monotonic()


def _restart(settings: Settings, name: str, attempts: int = 3) -> None:
    """``stack.up`` again, a few times: a daemonized redis-server writes its pid file a moment
    after it forks, and ``stack.up``'s wait can take that moment for an exit (see report)."""
    for attempt in range(1, attempts + 1):
        try:
            local_stack.up(settings, setup=name != "redis")
            return
        except local_stack.ServiceUnavailable:
            if attempt == attempts:
                raise
            time.sleep(1.0)


# --------------------------------------------------------------------------- the verdict


def model_of_log(p: Pipeline, cfgs: list[LeaderboardConfigured]) -> dict[str, ModelBoard]:
    """A clean pass of the score topic through the reference model, per board."""
    log = read_to_end(p.settings, p.settings.topic("scores"))
    s = p.settings
    return fold_log(cfgs, log, get_codec(s), s.partitions, s.period_grace_ms)


def model_state(m: ModelBoard) -> tuple[int, dict[str, str]]:
    """(version, {period: checksum}) of the model."""
    return m.version, {p: standings_checksum(m.standings(p)) for p in m.scores}


async def _live_state(settings: Settings, cfg: LeaderboardConfigured) -> tuple[int, dict[str, str]]:
    from projections.sharded import ShardedStore
    from projections.store import RankingStore

    client = make_client(settings)
    try:
        store = ShardedStore(RankingStore(client))  # a sharded board read across its shards
        out = {}
        for period in await store.periods(cfg.leaderboard_id):
            out[period] = (await store.checksum(cfg.leaderboard_id, period, cfg.sort_order))[0]
        return await store.version(cfg.leaderboard_id), out
    finally:
        await client.aclose()


def live_state(settings: Settings, cfg: LeaderboardConfigured) -> tuple[int, dict[str, str]]:
    """(version, {period: checksum}) of the live board in Redis."""
    return asyncio.run(_live_state(settings, cfg))


def audit_figures(settings: Settings, board: str) -> tuple[int, int, int]:
    """(rows, distinct versions, max version) of one board's audit history."""
    with psycopg.connect(settings.postgres_dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT version), coalesce(max(version), 0)"
            " FROM score_audit WHERE leaderboard_id = %s",
            [board],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def count_topic(settings: Settings, topic: str) -> int:
    """Records in a topic (0 if it is empty)."""
    return sum(1 for _ in read_to_end(settings, topic))


@dataclass
class Verdict:
    """What the end check found; ``lost`` and ``duplicates`` must both be zero."""

    expected_entries: int = 0
    applied_entries: int = 0
    audit_rows: int = 0
    duplicates: int = 0
    lost: int = 0
    mismatched_boards: list[str] = field(default_factory=list)
    rank_change_gaps: int = 0
    converge_s: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates or self.mismatched_boards or self.rank_change_gaps)


def verdict(
    p: Pipeline,
    cfgs: list[LeaderboardConfigured],
    *,
    audit: bool = True,
    timeout: float | None = None,
) -> Verdict:
    """Wait (bounded) for live state and audit to reach the log's model, then measure both."""
    timeout = timeout or SIZES.converge_s
    started = time.monotonic()
    models = model_of_log(p, cfgs)
    v = Verdict()
    deadline = started + timeout
    for cfg in cfgs:
        want = model_state(models[cfg.leaderboard_id])
        v.expected_entries += want[0]
        while time.monotonic() < deadline:
            got = live_state(p.settings, cfg)
            if got[0] >= want[0]:
                break
            time.sleep(0.3)
        if audit:
            while time.monotonic() < deadline:
                rows, distinct, _ = audit_figures(p.settings, cfg.leaderboard_id)
                if distinct >= want[0]:
                    break
                time.sleep(0.3)
    v.converge_s = round(time.monotonic() - started, 2)
    time.sleep(1.0 if audit else 0.0)  # late duplicates, if any, have a moment to land
    codec = get_codec(p.settings)
    published: dict[str, set[int]] = defaultdict(set)
    for msg in read_to_end(p.settings, p.settings.topic("rank-changes")):
        rc = codec.decode_as(msg.value() or b"", RankChanged)
        published[rc.leaderboard_id] |= {c.version for c in rc.changes}
    for cfg in cfgs:
        board = cfg.leaderboard_id
        want = model_state(models[board])
        got = live_state(p.settings, cfg)
        v.applied_entries += got[0]
        if got != want:
            v.mismatched_boards.append(board)
        v.lost += max(0, want[0] - got[0])
        v.rank_change_gaps += len(set(range(1, want[0] + 1)) ^ published[board])
        if audit:
            rows, distinct, top = audit_figures(p.settings, board)
            v.audit_rows += rows
            v.duplicates += rows - distinct
            v.lost += max(0, want[0] - distinct)
            v.duplicates += max(0, top - want[0])  # versions beyond the model: invented entries
    return v


def audit_replay_matches(p: Pipeline, cfgs: list[LeaderboardConfigured]) -> list[str]:
    """Boards whose standings rebuilt from the audit history differ from the live ones."""
    bad = []
    for cfg in cfgs:
        report = asyncio.run(replay_board(p.settings, cfg, source="postgres", verify=True))
        if not (report.diffs and report.verified):
            bad.append(cfg.leaderboard_id)
    return bad


# --------------------------------------------------------------------------- figures


def record(scenario: str, *, how: str, figures: dict[str, Any], passed: bool) -> None:
    """Merge one scenario's figures into test-artifacts/reliability.json (by scenario name)."""
    ARTIFACTS.mkdir(exist_ok=True)
    lock = ARTIFACTS / ".reliability.lock"
    import fcntl

    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        data: dict[str, Any] = {}
        if RESULTS.is_file():
            with contextlib.suppress(ValueError):
                data = json.loads(RESULTS.read_text())
        data.setdefault("scenarios", {})[scenario] = {
            "how": how,
            "mode": MODE,
            "command": _command(),
            "passed": passed,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "figures": figures,
        }
        data["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(RESULTS)


def _command() -> str:
    prefix = "LEADERBOARD_FAULTS=full " if FULL else ""
    return f"{prefix}.venv/bin/pytest tests/faults -m faults"


def figures_of(v: Verdict, stream: Stream | None, p: Pipeline, **extra: Any) -> dict[str, Any]:
    """The common figures of a scenario."""
    figs: dict[str, Any] = {
        "events_sent": stream.sent if stream else 0,
        "entries_expected": v.expected_entries,
        "entries_applied": v.applied_entries,
        "audit_rows": v.audit_rows,
        "dead_lettered": count_topic(p.settings, p.settings.dlq("scores")),
        "duplicates": v.duplicates,
        "lost": v.lost,
        "boards_mismatched": len(v.mismatched_boards),
        "rank_change_version_gaps": v.rank_change_gaps,
        "converge_after_stream_s": v.converge_s,
    }
    figs.update(extra)
    return figs


def finish(scenario: str, how: str, v: Verdict, figures: dict[str, Any]) -> None:
    """Record the figures, then fail the test if anything was lost, invented or differs."""
    record(scenario, how=how, figures=figures, passed=v.clean)
    assert v.clean, f"{scenario}: {figures} mismatched={v.mismatched_boards}"
