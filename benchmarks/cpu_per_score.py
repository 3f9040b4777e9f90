"""CPU time per single score, with and without coalescing, on a machine shared with other load.

Rates swing with whatever else runs on the two cores; the CPU a process spends per unit of
work does not (much), so this measures that, from ``/proc/<pid>/stat``:

- projector: a backlog of N single scores to one board, produced as one record each or
  coalesced ``--coalesce`` to a ``ScoresSubmitted`` record by the SDK, drained by one projector
  worker; its CPU from the first applied entry to the last, per score;
- gateway: ``wrk`` posts single scores to one board for ``--seconds`` with coalescing off
  (``--coalesce-max 1``) and on (the default); the gateway's CPU per acknowledged submission
  and the Kafka records it wrote per submission (no workers run: the acknowledgement is
  Kafka's).

    python -m benchmarks.cpu_per_score [--records 20000] [--coalesce 100] [--seconds 8]

Prints one JSON object with stable keys: ``cpu.projector_us_per_score.{plain,coalesced}``,
``cpu.gateway_us_per_submit.{plain,coalesced}``, ``gateway.records_per_submit.{plain,coalesced}``
and ``gateway.submit_rps.{plain,coalesced}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx

from benchmarks.harness import Namespace, free_port, gateway_args, topic_end, wait_http
from benchmarks.params import Params
from benchmarks.scenarios.hot import WRK_SCRIPT, run_wrk
from benchmarks.scenarios.ingest import _produce_backlog
from benchmarks.workload import board_configs
from processors.bootstrap import sync_redis
from processors.kafka.producer import LeaderboardProducer
from projections.keys import BoardKeys
from streams.settings import Settings, get_settings

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (with its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the command: state is fields[0], so utime..cstime are fields[11:15]
    return sum(int(x) for x in fields[11:15]) / _TICK


def projector_us(base: Settings, records: int, coalesce: int, logs: Path) -> float:
    """Projector CPU (us) per single score while it drains ``records`` of them."""
    ns = Namespace(base, "cpu", logs)
    try:
        p = dataclasses.replace(
            Params.quick(), ingest_records=records, entries_per_record=1, boards=1
        )
        p = dataclasses.replace(p, coalesce=coalesce)
        _produce_backlog(ns, p)
        state = BoardKeys(ns.boards[0]).state
        r = sync_redis(url=ns.settings.redis_url)
        proc = ns.spawn("projector", ["worker", "--role", "projector", "--loglevel", "warning"])
        deadline = time.monotonic() + 600
        start = None
        while time.monotonic() < deadline:
            ver = int(r.hget(state, "ver") or 0)
            if start is None and ver > 0:
                start = (_cpu_s(proc.pid), ver)
            if ver >= records:
                assert start is not None
                return (_cpu_s(proc.pid) - start[0]) * 1e6 / max(1, ver - start[1])
            time.sleep(0.005 if start is None else 0.05)
        raise RuntimeError("the projector did not drain the backlog in 10 minutes")
    finally:
        ns.cleanup()


def gateway_us(base: Settings, seconds: float, coalesce_max: int, logs: Path) -> dict[str, float]:
    """Gateway CPU (us) per acknowledged submission under wrk, and records per submission."""
    ns = Namespace(base, "gwcpu", logs)
    try:
        (cfg,) = board_configs(ns.tag, 1)
        ns.boards = [cfg.leaderboard_id]
        with LeaderboardProducer(ns.settings) as prod:
            prod.configure(cfg)
        port = free_port()
        proc = ns.spawn("gateway", [*gateway_args(port), "--coalesce-max", str(coalesce_max)])
        url = f"http://127.0.0.1:{port}"
        if not wait_http(f"{url}/health"):
            raise RuntimeError("gateway did not answer /health")
        path = f"/v1/leaderboards/{cfg.leaderboard_id}/scores"
        for i in range(50):  # warm: the board's config, the producer's connection
            httpx.post(url + path, json={"participant_id": f"warm{i}", "score": i}, timeout=10)
        scores = ns.settings.topic(ns.settings.scores_topic)
        records0 = topic_end(ns.settings, scores)[0]
        script = logs / f"{ns.tag}-submit.lua"
        script.write_text(WRK_SCRIPT)
        cpu0 = _cpu_s(proc.pid)
        res = run_wrk(url + path, script, threads=2, conns=16, seconds=seconds, args=["s"])
        cpu = _cpu_s(proc.pid) - cpu0
        time.sleep(0.5)
        records = topic_end(ns.settings, scores)[0] - records0
        return {
            "us": cpu * 1e6 / max(1, res.ok),
            "records_per_submit": records / max(1, res.ok),
            "rps": res.rate,
        }
    finally:
        ns.cleanup(audit=False)


@click.command()
@click.option("--records", default=20_000, show_default=True, help="Single scores drained.")
@click.option("--coalesce", default=100, show_default=True, help="Scores per coalesced record.")
@click.option("--seconds", default=8.0, show_default=True, help="wrk load per gateway run.")
def main(records: int, coalesce: int, seconds: float) -> None:
    """Measure projector and gateway CPU per single score, coalesced and not."""
    base = get_settings()
    logs = Path(tempfile.mkdtemp(prefix="cpu-per-score-"))
    out: dict[str, Any] = {}
    for name, c in (("plain", 0), ("coalesced", coalesce)):
        out[f"cpu.projector_us_per_score.{name}"] = round(projector_us(base, records, c, logs), 1)
    for name, c in (("plain", 1), ("coalesced", 64)):
        g = gateway_us(base, seconds, c, logs)
        out[f"cpu.gateway_us_per_submit.{name}"] = round(g["us"], 1)
        out[f"gateway.records_per_submit.{name}"] = round(g["records_per_submit"], 3)
        out[f"gateway.submit_rps.{name}"] = round(g["rps"], 1)
    out["load_average"] = os.getloadavg()
    click.echo(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
