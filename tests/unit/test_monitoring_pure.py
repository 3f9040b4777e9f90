"""Monitoring without services: lag from the consumer's bookkeeping, quantiles, PromQL names."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import pytest
from prometheus_client import REGISTRY

from processors.gateway.metrics import quantile
from processors.workers.batching import RawRecord
from processors.workers.metrics import LagMeter

#: PromQL words that are not metric names.
_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
_WORDS |= {"offset", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels, ranges left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names: set[str] = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group(0).lower() in _WORDS:
            continue
        names.add(m.group(0))
    return names


def test_metric_names_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (role, le) (rate(lb_batch_seconds_bucket{role="x"}[5m])))'
        " / on (role) group_left sum(lb_records_total) > 0 and up == 0"
    )
    assert metric_names(expr) == {"lb_batch_seconds_bucket", "lb_records_total", "up"}


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    """What LagMeter reads of Faust's consumer: assignment, high watermarks, committed offsets."""

    def __init__(self, highs: dict[TP, int | None], committed: dict[TP, int]) -> None:
        self.highs = highs
        self._committed_offset = committed

    def assignment(self) -> set[TP]:
        return set(self.highs)

    def highwater(self, tp: TP) -> int | None:
        if tp not in self.highs:
            raise AssertionError("Partition is not assigned")
        return self.highs[tp]


class FakeApp:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer


def lag(role: str, topic: str, partition: int) -> float | None:
    labels = {"role": role, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("leaderboard_worker_consumer_lag", labels)


def test_lag_is_high_watermark_minus_the_position_after_the_last_processed_batch() -> None:
    t0, t1, t2, other = TP("s", 0), TP("s", 1), TP("s", 2), TP("elsewhere", 0)
    consumer = FakeConsumer({t0: 100, t1: 50, t2: None, other: 7}, {t1: 9})
    meter = LagMeter(FakeApp(consumer), "unit-lag", ["s"])
    meter.processed("s", [RawRecord(0, o, None, b"") for o in range(30, 40)])
    assert lag("unit-lag", "s", 0) == 60  # 100 - (39 + 1)
    assert lag("unit-lag", "s", 1) == 40  # nothing processed yet: after the committed offset 9
    assert lag("unit-lag", "s", 2) is None  # no fetch response yet: no high watermark
    assert lag("unit-lag", "elsewhere", 0) is None  # not one of the meter's topics
    consumer.highs = {t0: 120}  # partition 1 moved to another worker
    meter.refresh()
    assert lag("unit-lag", "s", 0) == 80
    assert lag("unit-lag", "s", 1) is None


@pytest.mark.parametrize(
    ("q", "want"),
    [(0.25, 0.0075), (0.5, 0.01), (0.95, 0.091), (1.0, 0.1)],
)
def test_quantile_of_the_observations_between_two_snapshots(q: float, want: float) -> None:
    before = {0.005: 10.0, 0.01: 10.0, 0.1: 10.0, float("inf"): 10.0}
    # 20 new observations: 10 in (0.005, 0.01], 10 in (0.01, 0.1]
    now = {0.005: 10.0, 0.01: 20.0, 0.1: 30.0, float("inf"): 30.0}
    assert quantile(q, now, before) == pytest.approx(want)


def test_quantile_without_observations_is_none() -> None:
    snap: dict[float, Any] = {0.1: 3.0, float("inf"): 3.0}
    assert quantile(0.95, snap, snap) is None
