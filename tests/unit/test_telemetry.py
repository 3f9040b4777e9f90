"""Tracing hooks without services: off means untouched, on means W3C headers and JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from processors import telemetry
from streams.settings import Settings


@pytest.fixture(autouse=True)
def _off_afterwards() -> Iterator[None]:
    yield
    telemetry.shutdown()


def settings(**kw: object) -> Settings:
    return Settings(**{"otlp_endpoint": "", "trace_file": None, **kw})  # type: ignore[arg-type]


async def handle(batch: Sequence[object]) -> int:
    return len(batch)


def test_off_by_default_and_the_hot_path_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert telemetry.setup(settings(), "t") is False
    assert not telemetry.enabled()
    assert telemetry.kafka_headers() is None
    # the worker's batch handler is the very same function: no wrapper, no per-batch cost
    assert telemetry.traced_batches("b", "topic", handle) is handle
    with telemetry.span("nothing") as s:
        assert s is None


def test_endpoint_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert telemetry._otlp_endpoint(settings()) == ""
    assert (
        telemetry._otlp_endpoint(settings(otlp_endpoint="http://c:4318/"))
        == "http://c:4318/v1/traces"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://std:4318")
    assert telemetry._otlp_endpoint(settings()) == "http://std:4318/v1/traces"


def test_context_crosses_headers_and_spans_land_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    assert telemetry.setup(settings(trace_file=path), "svc")
    with telemetry.span("outer", kind=SpanKind.PRODUCER, attributes={"a": 1}) as outer:
        assert outer is not None
        headers = telemetry.kafka_headers()
    assert headers is not None and headers[0][0] == "traceparent"
    ctx = telemetry.context_of(headers)
    assert ctx is not None and ctx.span_id == outer.get_span_context().span_id
    assert telemetry.context_of({"traceparent": b"garbage"}) is None
    assert telemetry.context_of(None) is None
    links = telemetry.links_of([ctx, ctx, None])
    with telemetry.span("batch", links=links, new_trace=True):
        pass
    telemetry.shutdown()  # exports what is buffered
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in rows] == ["outer", "batch"]
    first, batch = rows
    assert (
        first["service"] == "svc"
        and first["kind"] == "producer"
        and first["attributes"] == {"a": 1}
    )
    assert batch["trace_id"] != first["trace_id"] and batch["parent_span_id"] is None
    assert batch["links"] == [{"trace_id": first["trace_id"], "span_id": first["span_id"]}]
