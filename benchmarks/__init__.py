"""Benchmarks: ingest, latency, baselines, queries, replay and memory, in one run.

Every scenario runs against the real local stack in its own namespace (topic prefix, consumer
groups, board ids), states its parameters, and cleans up what it wrote. Figures are medians of
several runs with their min-max; the pure helpers (statistics, formatting, rendering) are
tested in tests/unit/test_bench_pure.py.

Modules: ``params`` (sizes, scenario names), ``stats`` (pure statistics), ``figures`` (the
result model), ``workload`` (synthetic matches), ``harness`` (namespaces, processes, probes),
``scenarios/`` (one module per kind of measurement), ``runner`` (the run), ``report`` and
``analysis`` (BENCHMARKS.md and results.json). This package exports what ``leaderboard bench``
needs.
"""

from __future__ import annotations

from benchmarks.figures import Report
from benchmarks.params import SCENARIOS, Params
from benchmarks.report import (
    DEFAULT_JSON,
    DEFAULT_MARKDOWN,
    render_markdown,
    render_table,
    report_from_json,
    write_outputs,
)
from benchmarks.runner import run_bench

__all__ = [
    "DEFAULT_JSON",
    "DEFAULT_MARKDOWN",
    "SCENARIOS",
    "Params",
    "Report",
    "render_markdown",
    "render_table",
    "report_from_json",
    "run_bench",
    "write_outputs",
]
