"""Fault injection against the real stack: crashes, service restarts, outages and rebalances.

Every scenario streams random match results into its own topic namespace while the fault
happens, then checks the verdict (tests/faults/conftest.py): live standings equal a clean pass
of the log, every version published, the audit history holds every entry exactly once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path

import pytest

from processors.replay import replay_board
from tests.faults.conftest import (
    SIZES,
    Monitor,
    Stream,
    configure,
    figures_of,
    finish,
    make_boards,
    outage,
    verdict,
)
from tests.integration.conftest import ARTIFACTS, Pipeline, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _tag() -> str:
    return f"f{uuid.uuid4().hex[:6]}"


class Supervisor:
    """Keeps one worker role running like a service manager would, counting restarts."""

    def __init__(self, p: Pipeline, role: str) -> None:
        self.p, self.role = p, role
        self.proc = p.start_worker(role)
        self.restarts = 0

    def check(self) -> None:
        """Restart the worker if it exited on its own."""
        if self.proc.poll() is not None:
            self.restarts += 1
            self.proc = self.p.start_worker(self.role)

    def kill_and_restart(self) -> None:
        self.p.kill(self.proc, signal.SIGKILL)
        self.proc = self.p.start_worker(self.role)


def _tail(stream: Stream, *sups: Supervisor) -> None:
    """Let the stream run ``SIZES.tail_s`` more seconds under supervision, then end it."""
    end = time.monotonic() + SIZES.tail_s
    while time.monotonic() < end:
        for s in sups:
            s.check()
        time.sleep(0.25)
    stream.finish()
    for s in sups:
        s.check()


def _start(p: Pipeline, seed: int) -> tuple:
    cfgs = make_boards(_tag())
    configure(p, cfgs)
    projector = Supervisor(p, "projector")
    sinks = Supervisor(p, "sinks")
    mon = Monitor(p, [c.leaderboard_id for c in cfgs])
    mon.start()
    stream = Stream(p, cfgs, seed, SIZES.rate)
    return cfgs, projector, sinks, mon, stream


def _wait_flowing(mon: Monitor, timeout: float = 90) -> None:
    """Wait until the projector has applied something (workers are up and consuming)."""
    wait_until(lambda: any(s[1] for s in mon.samples), timeout=timeout)


@pytest.mark.parametrize("kills", SIZES.kills)
def test_sigkill_projector_repeatedly(pipeline: Pipeline, kills: int) -> None:
    """SIGKILL the projector ``kills`` times at random moments of a stream."""
    cfgs, projector, sinks, mon, stream = _start(pipeline, seed=kills)
    stream.start()
    _wait_flowing(mon)
    rng = random.Random(100 + kills)
    recoveries = []
    done = 0
    while done < kills:
        time.sleep(rng.uniform(0.3, 4.0))
        projector.kill_and_restart()
        t = time.monotonic()
        done += 1
        # the next kill may hit the worker while it starts, rebalances or replays a batch
        if rng.random() < 0.5 or done == kills:
            wait_until(lambda t=t: mon.resumed_after(t) is not None, timeout=90)
            recoveries.append(mon.resumed_after(t))
    _tail(stream, projector, sinks)
    mon.stop()
    v = verdict(pipeline, cfgs)
    finish(
        f"sigkill_projector_x{kills}",
        f"SIGKILL the projector {kills} times at random moments during "
        "a stream; a new projector starts right after each kill (half of the time before the "
        "previous one has recovered).",
        v,
        figures_of(
            v,
            stream,
            pipeline,
            kills=kills,
            recovery_s_max=max(recoveries) if recoveries else None,
            recovery_s_mean=round(sum(recoveries) / len(recoveries), 2) if recoveries else None,
            worker_restarts_unplanned=projector.restarts + sinks.restarts,
        ),
    )


def test_kafka_restart_mid_stream(pipeline: Pipeline) -> None:
    """Stop the broker mid-stream and start it again; producers and workers ride it out."""
    cfgs, projector, sinks, mon, stream = _start(pipeline, seed=21)
    stream.start()
    _wait_flowing(mon)
    time.sleep(2)
    with outage(pipeline.settings, "kafka") as times:
        pass
    outage_s = round(times["up"] - times["down"], 2)
    wait_until(lambda: mon.resumed_after(times["up"]) is not None, timeout=120)
    recovery = mon.resumed_after(times["up"])
    _tail(stream, projector, sinks)
    mon.stop()
    v = verdict(pipeline, cfgs)
    finish(
        "kafka_restart",
        "Stop the Kafka broker (SIGTERM, controlled shutdown) mid-stream and start it "
        "again at once; the producer retries its flushes, the workers reconnect (a worker that "
        "exits is restarted, as a service manager would, and counted).",
        v,
        figures_of(
            v,
            stream,
            pipeline,
            outage_s=outage_s,
            recovery_s=recovery,
            worker_restarts_unplanned=projector.restarts + sinks.restarts,
        ),
    )


def test_postgres_outage(pipeline: Pipeline) -> None:
    """PostgreSQL stops mid-stream: the projector keeps going, the sinks worker catches up."""
    cfgs, projector, sinks, mon, stream = _start(pipeline, seed=31)
    stream.start()
    _wait_flowing(mon)
    wait_until(lambda: any(s[2] for s in mon.samples), timeout=60)
    with outage(pipeline.settings, "postgres") as times:
        time.sleep(SIZES.pg_outage_s)
    outage_s = round(times["up"] - times["down"], 2)
    projector_kept_going = mon.progressed_between(times["down"], times["up"], "live")
    wait_until(lambda: mon.resumed_after(times["up"], "audit") is not None, timeout=120)
    recovery = mon.resumed_after(times["up"], "audit")
    _tail(stream, projector, sinks)
    mon.stop()
    v = verdict(pipeline, cfgs)
    figs = figures_of(
        v,
        stream,
        pipeline,
        outage_s=outage_s,
        projector_progressed_during_outage=projector_kept_going,
        recovery_s=recovery,
        worker_restarts_unplanned=projector.restarts + sinks.restarts,
    )
    finish(
        "postgres_outage",
        f"Stop PostgreSQL for {SIZES.pg_outage_s:g} s mid-stream (the full form: 30 s); the "
        "sinks worker retries with backoff and catches up; the projector must not stall.",
        v,
        figs,
    )
    assert projector_kept_going, "the projector stalled while PostgreSQL was down"
    assert sinks.restarts == 0, "the sinks worker exited during the outage"


def test_rebalance_join_and_leave(pipeline: Pipeline) -> None:
    """A second projector joins mid-stream, then leaves (SIGTERM) while records still flow."""
    cfgs, projector, sinks, mon, stream = _start(pipeline, seed=41)
    stream.start()
    _wait_flowing(mon)
    time.sleep(2)
    second = pipeline.start_worker("projector")
    joined = time.monotonic()
    # wait until the newcomer has taken partitions and applied records itself
    log = ARTIFACTS / f"{pipeline.tag}-projector-{len(pipeline.procs) - 1}.log"
    wait_until(lambda: "Setting newly assigned partitions" in _read(log), timeout=90)
    time.sleep(3)
    pipeline.kill(second, signal.SIGTERM)
    left = time.monotonic()
    wait_until(lambda: mon.resumed_after(left) is not None, timeout=90)
    recovery = mon.resumed_after(left)
    _tail(stream, projector, sinks)
    mon.stop()
    v = verdict(pipeline, cfgs)
    finish(
        "rebalance_join_leave",
        "A second projector joins the consumer group mid-stream and leaves it (SIGTERM) while "
        "records still flow; partitions move twice.",
        v,
        figures_of(
            v,
            stream,
            pipeline,
            second_worker_s=round(left - joined, 1),
            recovery_s=recovery,
            worker_restarts_unplanned=projector.restarts + sinks.restarts,
        ),
    )


def test_redis_emptied_then_rebuilt(pipeline: Pipeline) -> None:
    """Redis restarts EMPTY mid-stream; rebuilding every board recovers it under live traffic."""
    cfgs, projector, sinks, mon, stream = _start(pipeline, seed=51)
    stream.start()
    _wait_flowing(mon)
    time.sleep(2)
    with outage(pipeline.settings, "redis", purge=True) as times:
        pass
    rebuild_started = time.monotonic()
    reports = [asyncio.run(replay_board(pipeline.settings, cfg, swap=True)) for cfg in cfgs]
    rebuild_s = round(time.monotonic() - rebuild_started, 2)
    assert all(r.swapped for r in reports)
    _tail(stream, projector, sinks)
    mon.stop()
    v = verdict(pipeline, cfgs)
    finish(
        "redis_emptied_rebuild",
        "Stop Redis in the middle of a stream, delete its data (AOF), start it empty, then run the "
        "`leaderboard rebuild --all` code (replay_board with swap) for the pipeline's boards while "
        "the live projector keeps consuming.",
        v,
        figures_of(
            v,
            stream,
            pipeline,
            outage_s=round(times["up"] - times["down"], 2),
            rebuild_s=rebuild_s,
            rebuilt_entries=sum(r.entries for r in reports),
            worker_restarts_unplanned=projector.restarts + sinks.restarts,
        ),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
