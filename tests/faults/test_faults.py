"""Fault injection against the real stack: crashes, service restarts, outages and rebalances.

Every scenario streams random match results into its own topic namespace while the fault
happens, then checks the verdict (tests/faults/conftest.py): live standings equal a clean pass
of the log, every version published, the audit history holds every entry exactly once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from processors.replay import rebuild_all
from tests.faults.conftest import (
    SIZES,
    Monitor,
    Stream,
    configure,
    figures_of,
    finish,
    make_boards,
    model_of_log,
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


def _idle(mon: Monitor, quiet: float = 1.5, timeout: float = 60) -> None:
    """Wait until the live versions have not moved for ``quiet`` seconds."""

    def still() -> bool:
        now = time.monotonic()
        recent = [s[1] for s in mon.samples if s[0] >= now - quiet and s[1] is not None]
        return len(recent) >= 3 and min(recent) == max(recent)

    wait_until(still, timeout=timeout)


def _rebuild_all(p: Pipeline, cfgs: list, timeout: float = 60) -> list:
    """What ``leaderboard rebuild --all`` does, for this pipeline's boards (bounded)."""

    boards = {cfg.leaderboard_id: cfg for cfg in cfgs}
    return asyncio.run(asyncio.wait_for(rebuild_all(p.settings, boards), timeout))


def _redis_emptied(p: Pipeline, *, stop_projector: bool) -> None:
    scenario = "redis_emptied_rebuild" + ("_projector_stopped" if stop_projector else "_live")
    cfgs, projector, sinks, mon, stream = _start(p, seed=51 if stop_projector else 52)
    stream.start()
    _wait_flowing(mon)
    time.sleep(2)
    if stop_projector:
        p.kill(projector.proc, signal.SIGTERM)
    with outage(p.settings, "redis", purge=True) as times:
        pass
    time.sleep(SIZES.tail_s)
    stream.finish()  # the rebuild needs a pause in the traffic (see the livelock test)
    if not stop_projector:
        _idle(mon)
    started = time.monotonic()
    reports = _rebuild_all(p, cfgs)
    rebuild_s = round(time.monotonic() - started, 2)
    assert all(r.swapped for r in reports)
    if stop_projector:
        projector.proc = p.start_worker("projector")
    # traffic goes on after the rebuild: the projector must continue from the rebuilt state
    after = Stream(p, cfgs, seed=53, rate=SIZES.rate, start_ms=stream.t)
    after.start()
    resumed_from = time.monotonic()
    wait_until(lambda: mon.resumed_after(resumed_from) is not None, timeout=90)
    recovery = round(time.monotonic() - times["down"], 2)
    _tail(after, projector, sinks)
    mon.stop()
    v = verdict(p, cfgs)
    how = (
        "Stop Redis mid-stream, delete its data (AOF) and start it empty, then run the "
        "`leaderboard rebuild --all` code (processors.replay.rebuild_all) for the boards "
        "and stream on. "
    )
    how += (
        "Runbook variant: the projector is stopped before Redis goes and started after the rebuild."
        if stop_projector
        else "Live variant: the projector keeps running throughout (the traffic pauses for the "
        "rebuild)."
    )
    finish(
        scenario,
        how,
        v,
        figures_of(
            v,
            stream,
            p,
            events_sent=stream.sent + after.sent,
            outage_s=round(times["up"] - times["down"], 2),
            rebuild_s=rebuild_s,
            rebuilt_entries=sum(r.entries for r in reports),
            recovery_s=recovery,
            worker_restarts_unplanned=projector.restarts + sinks.restarts,
        ),
    )


def test_redis_emptied_rebuild_with_projector_stopped(pipeline: Pipeline) -> None:
    """Runbook: stop the projector, Redis comes back empty, rebuild all, start the projector."""
    _redis_emptied(pipeline, stop_projector=True)


def test_redis_emptied_rebuild_with_live_projector(pipeline: Pipeline) -> None:
    """Redis comes back empty under a running projector; rebuild all must leave no trace."""
    _redis_emptied(pipeline, stop_projector=False)


def test_rebuild_swaps_under_sustained_traffic(pipeline: Pipeline) -> None:
    """`rebuild --all` must finish while scores keep flowing (here 60 records/s, 3 boards)."""
    cfgs, _projector, _sinks, mon, stream = _start(pipeline, seed=61)
    stream.start()
    try:
        _wait_flowing(mon)
        time.sleep(2)
        _rebuild_all(pipeline, cfgs, timeout=30)
    finally:
        stream.finish()
        mon.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- gateway restart


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_gateway(p: Pipeline, port: int) -> subprocess.Popen[bytes]:
    """``leaderboard gateway`` on ``port`` with the pipeline's settings; waits for /ready."""
    import httpx

    log = open(ARTIFACTS / f"{p.tag}-gateway-{port}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "processors", "gateway", "--port", str(port), "--open"],
        env={**p.env, "LEADERBOARD_GATEWAY_HOST": "127.0.0.1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    p.procs.append(proc)  # stopped with the pipeline's workers

    def ready() -> bool:
        assert proc.poll() is None, "the gateway exited; see test-artifacts"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, every=0.3)
    return proc


class TopClient:
    """A WebSocket viewer of one board's top N that resumes with ``since_version`` when cut off."""

    def __init__(self, url: str, board: str, n: int = 10) -> None:
        self.url, self.board, self.n = url, board, n
        self.rows: list[tuple[str, int]] = []
        self.version = 0
        self.connects = 0
        self.resumed_with_delta = 0
        self.resumed_with_snapshot = 0
        self.errors: list[str] = []
        self.cut_at: float | None = None
        self.resume_s: list[float] = []

    def _apply(self, msg: dict) -> None:
        if msg["type"] == "snapshot":
            self.rows = [(e["participant_id"], e["score"]) for e in msg["entries"]][: self.n]
        else:
            for c in msg["changes"]:
                self.rows = [r for r in self.rows if r[0] != c["participant_id"]]
                if c["new_rank"] <= self.n:
                    self.rows.insert(c["new_rank"] - 1, (c["participant_id"], c["new_score"]))
            del self.rows[self.n :]
        if msg["version"] < self.version:
            self.errors.append(f"version went back: {self.version} -> {msg['version']}")
        self.version = msg["version"]

    async def run(self, until: asyncio.Event) -> None:
        import json

        import websockets

        while not until.is_set():
            try:
                ws = await websockets.connect(f"{self.url}/v1/leaderboards/{self.board}/subscribe")
            except OSError:
                await asyncio.sleep(0.2)
                continue
            try:
                sub: dict = {"type": "subscribe", "mode": "top", "n": self.n}
                if self.connects:
                    sub["since_version"] = self.version
                await ws.send(json.dumps(sub))
                first = True
                while not until.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    msg = json.loads(raw)
                    if msg["type"] == "ping":
                        continue
                    if msg["type"] == "error":
                        self.errors.append(str(msg))
                        return
                    if first and self.connects:
                        kind = msg["type"]
                        self.resumed_with_delta += kind == "delta"
                        self.resumed_with_snapshot += kind == "snapshot"
                        if self.cut_at is not None:
                            self.resume_s.append(time.monotonic() - self.cut_at)
                            self.cut_at = None
                    first = False
                    self._apply(msg)
            except websockets.ConnectionClosed:
                self.cut_at = self.cut_at or time.monotonic()
            finally:
                self.connects += 1
                await ws.close()


def test_gateway_restart_with_subscribers(pipeline: Pipeline) -> None:
    """The gateway dies and comes back while viewers are subscribed; they resume and converge."""
    from streams.events import LeaderboardConfigured, Operator, ResetPeriod, SortOrder

    tag = _tag()
    cfgs = [
        LeaderboardConfigured(f"{tag}-best", SortOrder.DESC, Operator.BEST, ResetPeriod.NONE),
        LeaderboardConfigured(f"{tag}-incr", SortOrder.DESC, Operator.INCR, ResetPeriod.NONE),
    ]
    configure(pipeline, cfgs)
    projector = Supervisor(pipeline, "projector")
    sinks = Supervisor(pipeline, "sinks")
    mon = Monitor(pipeline, [c.leaderboard_id for c in cfgs])
    mon.start()
    port = _free_port()
    gateway = _start_gateway(pipeline, port)
    url = f"ws://127.0.0.1:{port}"
    clients = [TopClient(url, c.leaderboard_id) for c in cfgs for _ in range(2)]
    stream = Stream(pipeline, cfgs, seed=71, rate=SIZES.rate / 2)
    done = asyncio.Event()
    box: dict = {}

    async def scenario() -> None:
        tasks = [asyncio.create_task(c.run(done)) for c in clients]
        await asyncio.sleep(1.0)
        stream.start()
        await asyncio.to_thread(_wait_flowing, mon)
        await asyncio.sleep(3)
        pipeline.kill(gateway, signal.SIGKILL)
        box["killed"] = time.monotonic()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_start_gateway, pipeline, port)
        box["back"] = time.monotonic()
        await asyncio.sleep(3)
        await asyncio.to_thread(_tail, stream, projector, sinks)
        v = await asyncio.to_thread(verdict, pipeline, cfgs)
        box["verdict"] = v
        models = await asyncio.to_thread(model_of_log, pipeline, cfgs)
        want = {
            b: (m.version, [(pid, s) for _, pid, s in m.standings("all")[:10]])
            for b, m in models.items()
        }
        box["want"] = want
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            (c.version, c.rows) != want[c.board] for c in clients
        ):
            await asyncio.sleep(0.3)
        done.set()
        await asyncio.gather(*tasks)

    asyncio.run(asyncio.wait_for(scenario(), 300))
    mon.stop()
    v = box["verdict"]
    want = box["want"]
    stale = [c.board for c in clients if (c.version, c.rows) != want[c.board]]
    resume = [s for c in clients for s in c.resume_s]
    figs = figures_of(
        v,
        stream,
        pipeline,
        subscribers=len(clients),
        gateway_down_s=round(box["back"] - box["killed"], 2),
        resumed_with_delta=sum(c.resumed_with_delta for c in clients),
        resumed_with_snapshot=sum(c.resumed_with_snapshot for c in clients),
        subscribers_not_converged=len(stale),
        client_errors=sum(len(c.errors) for c in clients),
        recovery_s=round(max(resume), 2) if resume else None,
    )
    v.mismatched_boards += stale
    finish(
        "gateway_restart_subscribers",
        "Four WebSocket viewers (top 10 of two boards) are subscribed while scores flow; the "
        "gateway is SIGKILLed and started again on the same port; each viewer reconnects with "
        "since_version and must end with exactly the model's top 10 at the model's version.",
        v,
        figs,
    )
    assert not any(c.errors for c in clients), [c.errors for c in clients]
    assert all(c.connects >= 2 for c in clients), "every viewer should have been cut off once"
