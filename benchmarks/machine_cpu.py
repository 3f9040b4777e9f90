"""The whole machine's CPU split by process while a scenario runs, from ``/proc``.

Rates swing with whatever else runs on the two cores; CPU seconds per unit of work do not
(much). A ``CpuSplit`` reads, at two instants, the user + system CPU of every process that
serves a run: the Kafka broker (its JVM), Redis, PostgreSQL (the postmaster and every backend,
the WAL writer, the checkpointer...), the workers the scenario started, and this process (the
load generator: producer, readers). Each group counts its live descendants and the children it
has reaped, so a PostgreSQL backend that ends within the window still counts. ``other`` is the
rest of the machine's busy time (``/proc/stat``): other programs on a shared machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict

from infra.stack import LOCAL_HOSTS, Kafka
from processors.bootstrap import pg_connect, sync_redis
from streams.settings import Settings

_TICK = os.sysconf("SC_CLK_TCK")

#: The group name of this process (the benchmark's producer, readers and clients).
BENCH = "bench"
#: The stack's services, in report order.
SERVICES = ("kafka", "redis", "postgres")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds used so far, by group, and the machine's busy seconds (all cores)."""

    groups: dict[str, float]
    machine: float


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, own + reaped children's CPU seconds) of ``pid``, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None
    # after the command: state is fields[0], ppid fields[1], utime..cstime fields[11:15]
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot, every core (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as f:
        cpu = f.readline().split()
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in cpu[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _processes() -> dict[int, tuple[int, float]]:
    """Every live process: pid → (parent pid, CPU seconds with its reaped children)."""
    out: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def _tree_cpu(
    root: int, procs: Mapping[int, tuple[int, float]], skip: frozenset[int] = frozenset()
) -> float:
    """CPU seconds of ``root`` and its live descendants (each with its reaped children),
    leaving out the subtrees of ``skip``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        if pid in procs:
            total += procs[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def stack_pids(settings: Settings) -> dict[str, int]:
    """The pids of the services a run uses: the stack's Kafka, the PostgreSQL server and the
    Redis that ``settings`` address (the stack's or the benchmark's private Redis). A service
    that does not answer or is not on this machine is not measured."""
    found: dict[str, int] = {}
    kafka = Kafka(settings).our_pid()
    if kafka is not None:
        found["kafka"] = kafka
    if urlsplit(settings.redis_url).hostname in LOCAL_HOSTS:
        r = sync_redis(url=settings.redis_url, socket_connect_timeout=3)
        try:
            found["redis"] = int(r.info("server")["process_id"])
        except (redis.RedisError, KeyError, ValueError):
            pass
        finally:
            r.close()
    pg_host = str(conninfo_to_dict(settings.postgres_dsn).get("host", ""))
    if pg_host in LOCAL_HOSTS or pg_host.startswith("/"):  # a socket directory is local too
        try:
            with pg_connect(settings.postgres_dsn, connect_timeout=3) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
        except psycopg.Error:
            row = None
        st = _stat(int(row[0])) if row else None
        if st is not None:
            found["postgres"] = st[0]  # the backend's parent: the postmaster
    return {name: found[name] for name in SERVICES if name in found}


class CpuSplit:
    """CPU of the stack's services, the given workers and this process, at chosen instants."""

    def __init__(self, settings: Settings, workers: Mapping[str, int]) -> None:
        """``workers``: name → pid of each process the scenario started (with its children)."""
        self.roots = {**stack_pids(settings), **workers}
        self.bench_extra: set[int] = set()

    def count_as_bench(self, pid: int) -> None:
        """Count ``pid`` (e.g. the PostgreSQL backend serving the benchmark's own progress
        queries) as the benchmark's work, not its service's."""
        self.bench_extra.add(pid)

    def snapshot(self) -> CpuSnapshot:
        """Every group's CPU seconds so far, and the machine's busy seconds."""
        machine = machine_busy_s()
        procs = _processes()
        skip = frozenset(self.bench_extra)
        groups = {name: _tree_cpu(pid, procs, skip) for name, pid in self.roots.items()}
        # this process alone: its workers are its children and counted as their own groups
        own = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        extra = sum(procs[pid][1] for pid in skip if pid in procs)
        groups[BENCH] = (int(own[11]) + int(own[12])) / _TICK + extra
        return CpuSnapshot(groups, machine)


def us_per_unit(first: CpuSnapshot, last: CpuSnapshot, units: int) -> dict[str, float]:
    """µs of CPU per unit of work between two snapshots, by group, plus ``machine`` (every
    group measured, summed) and ``other`` (the rest of the machine's busy time)."""
    if units <= 0:
        return {}
    out = {
        name: 1e6 * (last.groups[name] - first.groups.get(name, 0.0)) / units
        for name in last.groups
    }
    ours = sum(out.values())
    out["machine"] = ours
    out["other"] = max(0.0, 1e6 * (last.machine - first.machine) / units - ours)
    return out


def describe(split: Mapping[str, float]) -> str:
    """One line: ``kafka 9.1, redis 12.0, ... machine 80.2 µs`` (``other`` in parentheses)."""
    parts = [f"{k} {v:.1f}" for k, v in split.items() if k not in ("machine", "other")]
    tail = f"; machine {split.get('machine', float('nan')):.1f} µs"
    return ", ".join(parts) + tail + f" (other programs {split.get('other', 0.0):.1f})"
