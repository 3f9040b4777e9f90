"""Turn test-artifacts/reliability.json (written by tests/faults) into RELIABILITY.md.

Usage: .venv/bin/python scripts/reliability_report.py [--input FILE] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Figures shown first, in this order, when a scenario has them; the rest follow sorted.
MAIN = (
    "events_sent",
    "entries_expected",
    "entries_applied",
    "audit_rows",
    "dead_lettered",
    "duplicates",
    "lost",
    "recovery_s",
    "recovery_s_max",
    "recovery_s_mean",
    "outage_s",
)

#: How each scenario is run, selected by name (pytest -k).
TESTS = {
    "sigkill_projector": "test_sigkill_projector_repeatedly",
    "kafka_restart": "test_kafka_restart_mid_stream",
    "postgres_outage": "test_postgres_outage",
    "rebalance_join_leave": "test_rebalance_join_and_leave",
    "redis_emptied_rebuild_projector_stopped": "test_redis_emptied_rebuild_with_projector_stopped",
    "redis_emptied_rebuild_live": "test_redis_emptied_rebuild_with_live_projector",
    "gateway_restart_subscribers": "test_gateway_restart_with_subscribers",
    "redis_failover_sigkill_primary": "test_redis_primary_sigkill_under_load",
    "redis_failover_replica_behind": "test_redis_primary_sigkill_replica_behind",
    "sharded_boards_kills_and_redis_emptied": "test_sharded_boards_through_kills_and_a_lost_redis",
}

INTRO = """# Reliability

Fault-injection scenarios run against the real local stack (Kafka KRaft, Redis, PostgreSQL; no
Docker), each in its own topic namespace, while a producer streams random match results into three
boards (monthly `incr`, all-time `best`, daily ascending `best`; the gateway scenario uses two
all-time boards). Every scenario ends with the same check:

- every board's live standings (checksum per period) and version equal a clean pass of the score
  log through the reference model (`streams.model.ModelBoard`);
- every version of every board was published on `rank-changes` (no gap, none invented);
- the PostgreSQL audit history holds every applied entry exactly once: rows = distinct versions =
  the model's version (**duplicates** counts extra rows for a (board, version) and versions beyond
  the model, **lost** counts versions missing from Redis or from the audit).

Run them: `make test-faults` (full form, `LEADERBOARD_FAULTS=full`) or `make test` (short form).
Figures below are those of the last run on this machine ({machine}); regenerate this file with
`.venv/bin/python scripts/reliability_report.py` after a run.
"""

KNOWN = """
Found by these scenarios and fixed (the tests that showed them now pass):

1. **Redis emptied under a running projector** (`redis_emptied_rebuild_live`). The projector
   used to keep applying onto the empty Redis: board versions restarted at 1 and rank changes
   were lost or duplicated. Fix: a marker key per projector group
   (`lb:epoch:<layout>:<app_id>`), set at the group's first start and by `rebuild --all`; the
   apply script refuses to run without it (atomically on a single node) and the worker waits,
   acknowledging nothing, until the rebuild sets it again (`processors/workers/epoch.py`).
2. **A failed batch was acknowledged anyway.** Faust's `take_events` acknowledges a batch in a
   `finally` block, so a batch whose processing raised (Redis gone mid-batch) had its offsets
   committed and was never redelivered. Fix: batches are read from the agent's channel without
   acknowledging (`processors/workers/lean.py`) and are acknowledged only after they succeeded; a
   failing batch is retried in place (`processors/workers/batching.py`).
3. **`replay --swap` / `rebuild --all` livelock under sustained traffic**
   (`test_rebuild_swaps_under_sustained_traffic`): each catch-up round was slower than the next
   record of a busy board. Fix: catch up exactly to the live watermark, ask the consumer for no
   more records than remain, reuse one probe consumer.
4. **Redis failover onto a replica that is behind** (`redis_failover_replica_behind`). Redis
   replicates asynchronously: the projector had applied, published and committed records that
   the promoted replica never received, then applied the next records on top. With the fix
   switched off the verdict read lost 624, duplicates 312, 3 of 3 boards wrong. Fix: the
   projector records its last applied offset per partition after each batch
   (`lb:applied:<app_id>`); after a Redis error or a change of primary (and before a
   partition's first batch) it re-reads from Kafka what the new primary lacks and re-applies it
   without publishing (`processors/workers/failover.py`).
5. **A hash-sharded board's record applied again took later versions**
   (`sharded_boards_kills_and_redis_emptied`, intermittent: it needs a batch applied again
   after later records reached a shard it does not touch). A hash board's version counts every
   shard's changes; a shard without a change in the batch gave its current version, which had
   moved on when the batch came again (redelivered after a SIGKILL with the next batches
   applied meanwhile, or applied by `rebuild --all` before the live projector re-read it), so
   the batch's rank changes went out under later records' versions: 8 duplicated and 8
   missing versions in the audit and on the rank-change topic, live Redis right. Fix: shard 0
   keeps the version before each applied record (`BoardKeys.bases`) until its results are
   acknowledged, and a record applied again is numbered from it
   (`tests/integration/test_hash_redelivery.py`, which fails without it).

Still open: `stack.up` right after `Redis.stop()` may take the daemonized redis-server's
not-yet-written pid file for an exit ("the process exited while starting"); the scenarios retry
`stack.up`.
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _test_of(name: str) -> str:
    for prefix, test in TESTS.items():
        if name.startswith(prefix):
            return test
    return name


def render(data: dict[str, Any]) -> str:
    """The Markdown document for the figures in ``data``."""
    machine = data.get("machine", {})
    lines = [
        INTRO.format(
            machine=f"{machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}"
        )
    ]
    scenarios: dict[str, Any] = data.get("scenarios", {})
    lines += ["## Summary", ""]
    lines += [
        "| scenario | form | result | events sent | applied | dead-lettered | duplicates | lost "
        "| recovery (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in sorted(scenarios):
        s = scenarios[name]
        f = s.get("figures", {})
        recovery = f.get("recovery_s", f.get("recovery_s_max"))
        result = "pass" if s.get("passed") else "**FAIL**"
        lines.append(
            f"| {name} | {s.get('mode', '?')} | {result} | {_fmt(f.get('events_sent'))} "
            f"| {_fmt(f.get('entries_applied'))} | {_fmt(f.get('dead_lettered'))} "
            f"| {_fmt(f.get('duplicates'))} | {_fmt(f.get('lost'))} | {_fmt(recovery)} |"
        )
    lines.append("")
    for name in sorted(scenarios):
        s = scenarios[name]
        f = s.get("figures", {})
        test = _test_of(name)
        lines += [f"## {name}", "", s.get("how", ""), ""]
        lines += [
            f"- run: `{s.get('command', '')} -k {test}`",
            f"- last run: {s.get('finished_at', '?')}, {s.get('mode', '?')} form, "
            + ("passed" if s.get("passed") else "**failed**"),
            "",
            "| figure | value |",
            "| --- | ---: |",
        ]
        keys = [k for k in MAIN if k in f] + sorted(k for k in f if k not in MAIN)
        lines += [f"| {k} | {_fmt(f[k])} |" for k in keys]
        lines.append("")
    lines += ["## Problems these scenarios found", "", KNOWN.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Read the JSON figures and write the Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=ROOT / "test-artifacts/reliability.json")
    parser.add_argument("--output", type=Path, default=ROOT / "RELIABILITY.md")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        sys.stderr.write(f"no figures at {args.input}: run `make test-faults` first\n")
        return 1
    data = json.loads(args.input.read_text())
    args.output.write_text(render(data))
    sys.stdout.write(f"wrote {args.output} ({len(data.get('scenarios', {}))} scenarios)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
