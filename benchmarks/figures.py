"""The result model: a target, a figure (the runs of one measurement) and the run's report.

Every figure carries a stable ``key`` (dotted snake_case, e.g. ``replay.kafka``): its name is
prose that may be reworded, the key is what issues, the analysis and tools refer to.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from benchmarks.params import Params
from benchmarks.stats import fmt_range, summary


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for a figure: ``value`` is a floor (``at_least``) or a ceiling."""

    value: float
    at_least: bool
    text: str

    def met(self, figure: float) -> bool:
        """True if ``figure`` satisfies the target."""
        return figure >= self.value if self.at_least else figure <= self.value

    def gap(self, figure: float) -> str:
        """How far ``figure`` is from the target, in words."""
        if figure != figure:
            return "not measured"
        if self.met(figure):
            return "met"
        if self.at_least:
            return f"missed by {1 - figure / self.value:.0%} ({figure / self.value:.0%} of it)"
        return f"missed: {figure / self.value:.2f}\u00d7 the ceiling"

    @classmethod
    def parse(cls, text: str) -> Target | None:
        """Rebuild a target from its text ('≥ 20,000 entries/s', '≤ 5 ms'); None if unknown."""
        m = re.match(r"\s*([\u2265\u2264])\s*([0-9][0-9,.]*)", text)
        if m is None:
            return None
        return cls(float(m.group(2).replace(",", "")), m.group(1) == "\u2265", text)


#: A figure key: two or more dot-separated snake_case parts ("ingest.e2e_entries_per_s").
KEY_PATTERN: Final = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


@dataclass(slots=True)
class Figure:
    """One row of the table: the runs of one measurement and what they mean.

    ``key`` is the figure's stable id (keyword-only, required): unlike ``name`` it is not
    reworded, so results can be compared and referred to across runs.
    """

    scenario: str
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    params: str = ""
    target: Target | None = None
    note: str = ""
    ratio: bool = False
    key: str = field(kw_only=True)

    def __post_init__(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise ValueError(
                f"figure {self.scenario} / {self.name}: key {self.key!r} is not dotted "
                f"snake_case ({KEY_PATTERN.pattern})"
            )

    @property
    def median(self) -> float:
        """Median of the runs (for ratios: the ratio of the medians)."""
        if self.ratio:
            return self.runs[0] if self.runs else float("nan")
        return summary(self.runs)[0]

    def range_text(self) -> str:
        """min-max text (for ratios: from the extreme pairs)."""
        return fmt_range(self.runs[1:] if self.ratio else self.runs, self.unit)

    def status(self) -> str:
        """Target text with met/missed, or the note when the figure was not measured."""
        if not self.runs:
            return self.note or "not run"
        if self.target is None:
            return ""
        mark = "✅" if self.target.met(self.median) else "❌"
        return f"{mark} {self.target.text}"


@dataclass(slots=True)
class Report:
    """Everything one run produced: figures, parameters, profiles and notes."""

    params: Params
    started: str
    machine: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, figure: Figure) -> Figure:
        """Append ``figure`` and return it; its key must be new to the report."""
        clash = self.get(figure.key)
        if clash is not None:
            raise ValueError(
                f"figure {figure.scenario} / {figure.name}: key {figure.key!r} already used by "
                f"{clash.scenario} / {clash.name}"
            )
        self.figures.append(figure)
        return figure

    def alias(self, key: str, of: str, target: Target | None) -> Figure | None:
        """Publish figure ``of`` again under ``key`` (the name an issue gives it), with
        ``target``; both keys stay, for the tools that read either. None if ``of`` is absent.
        """
        src = self.get(of)
        if src is None:
            return None
        return self.add(
            Figure(
                src.scenario,
                f"{src.name} (= `{of}`)",
                src.unit,
                list(src.runs),
                src.params,
                target,
                src.note,
                src.ratio,
                key=key,
            )
        )

    def get(self, key: str) -> Figure | None:
        """The figure with that key, if any."""
        return next((f for f in self.figures if f.key == key), None)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (benchmarks/results.json)."""
        return {
            "params": asdict(self.params),
            "started": self.started,
            "machine": self.machine,
            "seconds": round(self.seconds, 1),
            "figures": [
                {
                    "key": f.key,
                    "scenario": f.scenario,
                    "name": f.name,
                    "unit": f.unit,
                    "median": None if f.median != f.median else f.median,
                    "runs": f.runs,
                    "params": f.params,
                    "target": f.target.text if f.target else None,
                    "met": f.target.met(f.median) if f.target and f.runs else None,
                    "note": f.note,
                    "ratio": f.ratio,
                }
                for f in self.figures
            ],
            "details": self.details,
            "profiles": self.profiles,
        }


#: What each figure key means, for BENCHMARKS.md ("## Figure keys"). A pattern may end in
#: ``*`` (a family: percentiles, query kinds). Every key a run produces must match one
#: (tests/unit/test_bench_pure.py); the issue's names stand beside the older ones.
KEY_DOCS: Final[dict[str, str]] = {
    "ingest.e2e_entries_per_s": "10-entry records over 20 boards, pre-produced backlog, 1 "
    "projector + 1 sinks worker: entries/s from the first applied entry to the last audit row",
    "ingest.e2e": "the same figure under the issue's name (target ≥ 30,000)",
    "ingest.redis_entries_per_s": "the same run, entries/s applied to Redis",
    "ingest.audit_rows_per_s": "the same run, audit rows/s written to PostgreSQL",
    "ingest.projector_cpu_us_per_entry": "the same run, CPU (user + system) per entry of the "
    "projector while draining, µs: what load on the shared cores distorts least",
    "ingest.sinks_cpu_us_per_entry": "the same run, CPU (user + system) per entry of the sinks "
    "worker while draining, µs",
    "ingest.kafka_cpu_us_per_entry": "the same run, CPU per entry of the Kafka broker (its JVM) "
    "from the first applied entry to the last audit row, µs (benchmarks/machine_cpu.py)",
    "ingest.redis_cpu_us_per_entry": "the same window, CPU per entry of Redis, µs",
    "ingest.postgres_cpu_us_per_entry": "the same window, CPU per entry of PostgreSQL (postmaster, "
    "backends, WAL writer, checkpointer...; not the benchmark's own progress queries), µs",
    "ingest.machine_cpu_us_per_entry": "the same window, CPU per entry of every process of the "
    "run together (broker, Redis, PostgreSQL, projector, sinks worker, benchmark), µs",
    "ingest.other_cpu_us_per_entry": "the same window, the rest of the machine's busy CPU per "
    "entry (other programs on a shared machine; not in machine_cpu), µs",
    "ingest.produce_client_cpu_us_per_entry": "while the backlog is produced: the SDK "
    "producer's CPU per entry (10-entry records, acks=all, idempotent), µs",
    "ingest.produce_kafka_cpu_us_per_entry": "while the backlog is produced: the broker's CPU "
    "per entry, µs",
    "ingest.hot_single*": "single-entry SDK records to ONE board, end to end, entries/s "
    "(coalesced by the SDK; _uncoalesced: one record each)",
    "ingest.hot_single_projector_cpu_us_per_entry": "the coalesced hot drains: CPU (user + "
    "system) per entry of the projector while draining, µs",
    "ingest.hot_single_sinks_cpu_us_per_entry": "the same, of the sinks worker, µs",
    "ingest.hot_single_uncoalesced_projector_cpu_us_per_entry": "the uncoalesced hot drains: "
    "CPU per entry of the projector while draining, µs",
    "ingest.hot_single_uncoalesced_sinks_cpu_us_per_entry": "the same, of the sinks worker, µs",
    "latency.headline.*": "at the headline rate (10,000 entries/s): produce → visible in Redis "
    "(redis_*) and produce → WebSocket delta of a tracked probe (websocket_*); p50/p99/max, ms; "
    "websocket_gateway_p99: the gateway's part (rank change published → delta), ms; "
    "client_cpu: the load generator's CPU, % of the machine; <group>_cpu_us_per_entry: CPU per "
    "entry sent while producing of kafka, redis, postgres, projector, sinks, gateway, bench "
    "(producer + readers), machine (all of them) and other (the rest of the machine), µs; "
    "producer_first_ack_ms: the load generator's new producer, created → first record "
    "acknowledged (its warm-up, before the clock starts), ms",
    "latency.low.*": "the same at the low rate (2,000 entries/s)",
    "ws.p99_10k": "= latency.headline.websocket_p99 under the issue's name (target ≤ 250 ms)",
    "ws.viewers": "top-10 viewers of one hot board ONE gateway process serves with push p99 "
    "(produce → viewer) ≤ 500 ms, every probe delivered, none closed, at 2,000 entries/s",
    "ws.viewers_fanout": "the same, judged on the gateway's part of the push (rank change "
    "published → viewer): what the fan-out carries whatever the projector's delay",
    "ws.viewers_top_*": "at the last viewer count tried: push p99 split into the gateway's part "
    "(fanout_p99) and produce → rank change published (upstream_p99), ms",
    "ws.viewers_client_cpu": "the Node viewers' client CPU at the last step, % of the machine",
    "ws.viewers_gateway_cpu": "the gateway's CPU at the last step, % of the machine",
    "ws.viewers_gateway_us_per_push": "the gateway's CPU per message a viewer received at the "
    "last step, µs (less distorted by a busy machine than the latencies)",
    "baseline.naive_entries_per_s": "naive synchronous design: ZINCRBY + ZREVRANK + INSERT "
    "committed per entry, one client",
    "baseline.zadd_ops_per_s": "hardware limit: redis-benchmark pipelined ZADD",
    "baseline.kafka_raw_entries_per_s": "hardware limit: raw Kafka consume of the ingest records",
    "baseline.kafka_decode_entries_per_s": "Kafka consume + Avro decode in one Python thread",
    "ratio.e2e_vs_*": "ingest.e2e_entries_per_s ÷ a baseline of the same run (naive, zadd, "
    "kafka_raw)",
    "ratio.naive": "= ratio.e2e_vs_naive under the issue's name (target at least 15 times)",
    "queries.load_entries_per_s": "loading the 1,000,000-entry board through the apply script",
    "memory.per_entry": "Redis bytes per entry of the 1,000,000-entry board (all its keys)",
    "redis.*": "Redis direct, one client: top100 / around (rank + 5 neighbours) / deep_page "
    "(100 at offset 500,000), p50/p99 ms",
    "http.top100_*": "top 100 at 1,000,000 participants through the HTTP gateway, concurrent "
    "clients: p50/p99 ms, rps",
    "http.top100_gateway_us": "the gateway's CPU (all threads, /proc) per top-100 request, one "
    "process, µs (less distorted by a busy machine than the latencies)",
    "http.around_gateway_us": "the gateway's CPU per rank + 5 neighbours request, one process, µs",
    "http.deep_page_gateway_us": "the gateway's CPU per deep-page request, one process, µs",
    "http.around_*": "rank + 5 neighbours through the HTTP gateway: p50/p99 ms, rps",
    "http.deep_page_*": "page of 100 at offset 500,000 through the HTTP gateway: p50/p99, rps",
    "http.submit*": "HTTP single-score submits to one board driven by wrk: sustained rate all "
    "applied (submit), acknowledged (submit_acked), ack p50/p99 ms, wrk's CPU share",
    "http.wait_*": "POST ?wait=true (new + previous rank): p50/p99 at 1,000/s (wait_*), at 100/s "
    "(wait_low_*), achieved rate",
    "replay.kafka": "rebuild of the 1,000,000-entry board from Kafka, entries/s",
    "replay.postgres": "the same from the PostgreSQL audit, entries/s",
    "replay.postgres_read*": "the audit read alone (rows to records), entries/s and per CPU-s",
    "replay.bulk_zadd_members_per_s": "the bulk loader's pipelined ZADD alone, members/s",
    "rebuild.*": "rebuild --all of 10 boards after Redis lost them, entries/s",
    "audit.*": "PostgreSQL audit: bytes per row, AuditWriter COPY rows/s, raw binary COPY in/out",
    "profile.*": "in-process Projector.process entries/s, and Redis per entry while it "
    "applies: µs inside the apply script, main-thread CPU µs, commands (under the profiler)",
}


def key_doc(key: str) -> str | None:
    """The meaning of ``key`` from KEY_DOCS (exact, else the longest matching family)."""
    if key in KEY_DOCS:
        return KEY_DOCS[key]
    families = [k for k in KEY_DOCS if k.endswith("*") and key.startswith(k[:-1])]
    return KEY_DOCS[max(families, key=len)] if families else None
