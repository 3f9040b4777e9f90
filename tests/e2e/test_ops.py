"""Monitoring end to end: worker and gateway metrics, our Prometheus, the Grafana JSON, /ops."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infra import stack as local_stack
from infra.stack.prometheus import MONITORING, RULES
from processors.kafka.producer import LeaderboardProducer
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ScoreEntry,
    SortOrder,
)
from streams.partitioning import partition_for
from streams.settings import Settings
from tests.e2e.test_browser import ARGS, ensure_chromium
from tests.e2e.test_gateway import free_port, start_gateway, stop
from tests.integration.conftest import ARTIFACTS, Pipeline, wait_until
from tests.unit.test_monitoring_pure import metric_names

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROLES = ("projector", "sinks", "topk")


@dataclass
class Monitored:
    """A pipeline whose workers serve metrics, a gateway, and a producer feeding one board."""

    pipeline: Pipeline
    gateway: str
    metrics: dict[str, int]  # role -> port
    board: str
    stop_load: threading.Event

    def scrape(self, url: str) -> str:
        try:
            r = httpx.get(url, timeout=5)
        except httpx.HTTPError:
            return ""
        return r.text if r.status_code == 200 else ""

    def worker_text(self, role: str) -> str:
        return self.scrape(f"http://127.0.0.1:{self.metrics[role]}/metrics")


def _load(settings: Settings, board: str, stop_load: threading.Event) -> None:
    """About 200 entries/s until told to stop (ten entries per match)."""
    with LeaderboardProducer(settings) as prod:
        n = 0
        while not stop_load.is_set():
            now = int(time.time() * 1000)
            entries = tuple(ScoreEntry(f"p{(n * 10 + i) % 500}", n + i) for i in range(10))
            prod.submit(
                MatchResultSubmitted(uuid.uuid4().hex, f"m{n}", board, now, entries)  # type: ignore[arg-type]
            )
            n += 1
            if n % 10 == 0:
                prod.flush()
                time.sleep(0.5)


@pytest.fixture(scope="module")
def monitored(stack: Settings) -> Iterator[Monitored]:
    p = Pipeline(stack, f"o{uuid.uuid4().hex[:8]}")
    ports = {role: free_port() for role in ROLES}
    for role in ROLES:
        p.start_worker(role, LEADERBOARD_WORKER_METRICS_PORT=str(ports[role]))
    proc, url = start_gateway(p)
    board = f"ops-{uuid.uuid4().hex[:6]}"
    with LeaderboardProducer(p.settings) as prod:
        prod.configure(LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST))
    stop_load = threading.Event()
    loader = threading.Thread(target=_load, args=(p.settings, board, stop_load), daemon=True)
    m = Monitored(p, url, ports, board, stop_load)
    loader.start()
    try:
        applied = 'leaderboard_worker_entries_applied_total{role="projector"} '
        wait_until(lambda: applied in m.worker_text("projector"), 90)
        yield m
    finally:
        stop_load.set()
        loader.join(10)
        stop(proc)
        p.stop_all()


def _sample_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_workers_export_lag_throughput_and_latency(monitored: Monitored) -> None:
    """Each worker's /metrics shows lag per partition and its counters move with the load."""

    part = str(partition_for(monitored.board, 3))

    def lag_of_the_boards_partition() -> str | None:
        text = monitored.worker_text("projector")
        got = _sample(text, "leaderboard_worker_consumer_lag", partition=part)
        return text if got is not None else None

    first = wait_until(lag_of_the_boards_partition, 60)
    before = _sample(first, "leaderboard_worker_entries_applied_total", role="projector") or 0.0
    wait_until(
        lambda: (
            (
                _sample(
                    monitored.worker_text("projector"),
                    "leaderboard_worker_entries_applied_total",
                    role="projector",
                )
                or 0.0
            )
            > before
        ),
        30,
    )
    text = monitored.worker_text("projector")
    assert (_sample(text, "leaderboard_worker_batch_records_count", role="projector") or 0) > 0
    assert (_sample(text, "leaderboard_worker_publish_seconds_count", role="projector") or 0) > 0
    assert _sample(text, "leaderboard_worker_outbox_entries", role="projector") is not None
    sinks = wait_until(
        lambda: (
            t
            if (
                _sample(t := monitored.worker_text("sinks"), "leaderboard_worker_copy_rows_total")
                or 0
            )
            > 0
            else None
        ),
        60,
    )
    assert _sample(sinks, "leaderboard_worker_periods_closed_total", role="sinks") is not None
    topk = monitored.worker_text("topk")
    assert _sample(topk, "leaderboard_worker_records_total", role="topk") is not None
    assert _sample(topk, "leaderboard_worker_topk_rebuilds_total", role="topk") is not None


def test_dashboard_and_alerts_name_only_exported_metrics(monitored: Monitored) -> None:
    """Every PromQL query of the Grafana JSON (and of the alerting rules) reads a metric that
    the gateway or a worker really exports, as scraped from their /metrics right now."""
    exported = _sample_names(monitored.scrape(monitored.gateway + "/metrics"))
    for role in ROLES:
        text = monitored.worker_text(role)
        assert text, f"{role} serves no metrics"
        exported |= _sample_names(text)
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 15
    used = set().union(*(metric_names(e) for e in exprs))
    assert not used - exported, f"not exported: {sorted(used - exported)}"
    rules = yaml.safe_load(RULES.read_text())
    alert_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used_by_alerts = set().union(*(metric_names(e) for e in alert_exprs)) - {"up"}
    assert not used_by_alerts - exported, f"not exported: {sorted(used_by_alerts - exported)}"


def test_prometheus_scrapes_every_target_and_answers_a_lag_query(
    monitored: Monitored, stack: Settings
) -> None:
    """`stack up --monitoring`: our Prometheus finds the gateway and the workers by their
    announcements, all up, and a lag query returns this pipeline's partitions."""
    states = local_stack.up(stack, monitoring=True)
    prom = next(s for s in states if s.name == "prometheus")
    assert prom.up and prom.owner == "ours", prom
    base = prom.where
    ours = {f"127.0.0.1:{port}" for port in monitored.metrics.values()}
    ours.add(monitored.gateway.removeprefix("http://"))

    def all_up() -> bool:
        r = httpx.get(base + "/api/v1/targets", timeout=5).json()
        health = {t["labels"]["instance"]: t["health"] for t in r["data"]["activeTargets"]}
        return all(health.get(i) == "up" for i in ours)

    wait_until(all_up, 60, every=1)
    topic = monitored.pipeline.settings.topic(monitored.pipeline.settings.scores_topic)
    query = f'sum by (partition) (leaderboard_worker_consumer_lag{{topic="{topic}"}})'

    def lag_series() -> list[Any]:
        r = httpx.get(base + "/api/v1/query", params={"query": query}, timeout=5).json()
        assert r["status"] == "success", r
        return list(r["data"]["result"])

    part = str(partition_for(monitored.board, 3))
    series = wait_until(lag_series, 60, every=1)
    assert part in {s["metric"]["partition"] for s in series}
    rules = httpx.get(base + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {"LeaderboardConsumerLagHigh", "LeaderboardWorkerStalled"} <= names


def test_ops_page_charts_live_throughput_lag_and_latency(monitored: Monitored) -> None:
    """The /ops page in headless chromium draws the three charts from live data (screenshot in
    test-artifacts/ops-page.png)."""
    data = httpx.get(monitored.gateway + "/ops/data", timeout=10).json()
    roles = {t["role"] for t in data["targets"] if t["up"]}
    assert {"projector", "sinks", "topk"} <= roles, data["targets"]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=ensure_chromium(), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(monitored.gateway + "/ops")
            page.wait_for_function("Number(document.body.dataset.points || 0) >= 4", timeout=30_000)
            page.wait_for_function(
                """() => {
                  const sel = '#throughput polyline[data-series="entries applied/s"]';
                  const line = document.querySelector(sel);
                  const pts = line ? line.getAttribute('points').trim().split(' ') : [];
                  return pts.length >= 3 && pts.some(p => Number(p.split(',')[1]) < 126);
                }""",
                timeout=30_000,
            )
            lag_lines = page.eval_on_selector_all(
                "#lag polyline", "ls => ls.map(l => l.dataset.series)"
            )
            assert "projector" in lag_lines
            latency = page.text_content("#latency .now") or ""
            assert "projector batch" in latency
            assert "\u2013" not in latency.split("·")[0], latency  # an en dash: no value
            assert page.text_content("#status") == "live"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ops-page.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


def test_a_stopped_process_withdraws_its_scrape_target(stack: Settings) -> None:
    """SIGTERM: the gateway and a worker delete their announcement, so Prometheus and /ops
    see no dead target."""
    import signal

    from processors.scrape_targets import targets

    p = Pipeline(stack, f"o{uuid.uuid4().hex[:8]}")
    worker = p.start_worker("projector", LEADERBOARD_WORKER_METRICS_PORT=str(free_port()))
    proc, _ = start_gateway(p)
    try:
        wait_until(lambda: {worker.pid, proc.pid} <= {t.pid for t in targets(stack)}, 60)
    finally:
        stop(proc)
        p.kill(worker, signal.SIGTERM)
    files = {path.name for path in (stack.stack_dir / "run" / "targets").glob("*.json")}
    assert f"gateway-{proc.pid}.json" not in files
    assert f"projector-{worker.pid}.json" not in files
