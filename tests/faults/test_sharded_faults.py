"""Sharded boards through the faults: projector SIGKILLs, then Redis emptied and rebuilt.

Hash- and range-sharded boards stream beside plain ones while the projector is killed and
Redis loses everything under it; ``rebuild --all`` (sharded boards included) restores them
and traffic goes on. The verdict is the suite's (live == a clean pass of the log, every
version published, the audit exactly once), and ``replay --verify`` from Kafka and from
PostgreSQL must equal live on every board.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from processors.replay import replay_board
from streams.events import LeaderboardConfigured, Operator, ResetPeriod, SortOrder
from tests.faults.conftest import (
    SIZES,
    Monitor,
    Stream,
    audit_replay_matches,
    configure,
    figures_of,
    finish,
    make_boards,
    outage,
    verdict,
)
from tests.faults.test_faults import Supervisor, _idle, _rebuild_all, _tail, _wait_flowing
from tests.integration.conftest import Pipeline, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def sharded_boards(tag: str) -> list[LeaderboardConfigured]:
    """A hash-sharded and a range-sharded board (no period reset: clock marks move plain
    boards only, docs/scaling.md)."""
    return [
        LeaderboardConfigured(
            f"{tag}-hash",
            SortOrder.DESC,
            Operator.INCR,
            ResetPeriod.NONE,
            watch_top_n=5,
            metadata={"shards": "hash:3"},
        ),
        LeaderboardConfigured(
            f"{tag}-range",
            SortOrder.ASC,
            Operator.BEST,
            ResetPeriod.NONE,
            metadata={"shards": "range:250,500,750"},
        ),
    ]


def test_sharded_boards_through_kills_and_a_lost_redis(pipeline: Pipeline) -> None:
    p = pipeline
    tag = f"f{uuid.uuid4().hex[:6]}"
    plain = make_boards(tag)
    cfgs = plain + sharded_boards(tag)
    configure(p, cfgs)
    projector = Supervisor(p, "projector")
    sinks = Supervisor(p, "sinks")
    mon = Monitor(p, [c.leaderboard_id for c in plain])  # plain boards' versions: progress
    mon.start()
    stream = Stream(p, cfgs, 81, SIZES.rate)
    stream.start()
    _wait_flowing(mon)
    rng = random.Random(81)
    for _ in range(2):
        time.sleep(rng.uniform(0.5, 2.5))
        projector.kill_and_restart()
        t = time.monotonic()
        wait_until(lambda t=t: mon.resumed_after(t) is not None, timeout=90)
    with outage(p.settings, "redis", purge=True) as times:
        pass
    time.sleep(SIZES.tail_s)
    stream.finish()  # the rebuild needs a pause in the traffic (the livelock test)
    _idle(mon)
    started = time.monotonic()
    reports = _rebuild_all(p, cfgs)
    rebuild_s = round(time.monotonic() - started, 2)
    assert sorted(r.board for r in reports) == sorted(c.leaderboard_id for c in cfgs)
    assert all(r.swapped for r in reports)
    after = Stream(p, cfgs, seed=82, rate=SIZES.rate, start_ms=stream.t)
    after.start()
    resumed_from = time.monotonic()
    wait_until(lambda: mon.resumed_after(resumed_from) is not None, timeout=90)
    _tail(after, projector, sinks)
    mon.stop()
    v = verdict(p, cfgs)
    from_kafka = [
        c.leaderboard_id
        for c in cfgs
        if not (r := asyncio.run(replay_board(p.settings, c, verify=True))).diffs or not r.verified
    ]
    from_postgres = audit_replay_matches(p, cfgs)
    finish(
        "sharded_boards_kills_and_redis_emptied",
        "Two hash/range-sharded boards beside three plain ones: SIGKILL the projector twice "
        "mid-stream, then empty Redis under the running projector, run the `leaderboard "
        "rebuild --all` code (sharded boards included) and stream on; then `replay --verify` "
        "from Kafka and from PostgreSQL on every board.",
        v,
        figures_of(
            v,
            stream,
            p,
            events_sent=stream.sent + after.sent,
            outage_s=round(times["up"] - times["down"], 2),
            rebuild_s=rebuild_s,
            rebuilt_entries=sum(r.entries for r in reports),
            replay_verify_mismatched_kafka=len(from_kafka),
            replay_verify_mismatched_postgres=len(from_postgres),
            worker_restarts_unplanned=projector.restarts + sinks.restarts,
        ),
    )
    assert not from_kafka and not from_postgres, (from_kafka, from_postgres)
