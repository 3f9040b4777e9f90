"""OpenTelemetry traces of one submission's path: gateway, Kafka record, projector, push.

Off by default, and then free: every hook first checks :func:`enabled` (one module attribute)
and does nothing else. :func:`setup` turns tracing on for a process when
``LEADERBOARD_OTLP_ENDPOINT`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``) is set, spans
then go over OTLP/HTTP, or else when ``LEADERBOARD_TRACE_FILE`` is set, spans are then appended
to that file as JSON lines (one span per line; several processes may share one file).

The trace context crosses Kafka as a W3C ``traceparent`` header written by the producer
(:func:`kafka_headers`). A consumer's batch holds records of many traces, so a batch span is a
new trace *linked* to each record's context (OpenTelemetry's messaging convention) rather than
the child of one of them; the hops of one submission are followed through those links:

    POST scores (gateway) ─▶ scores send ─ traceparent ─▶ projector batch (links)
        ─▶ rank-changes publish ─ traceparent ─▶ ws push (links)

The tracer lives in this module rather than in OpenTelemetry's global provider, so that a
library user's own provider is never replaced.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streams.settings import Settings

__all__ = [
    "JsonLinesExporter",
    "context_of",
    "enabled",
    "kafka_headers",
    "links_of",
    "setup",
    "shutdown",
    "span",
    "traced_batches",
]

log = logging.getLogger(__name__)

#: The header that carries the trace context on a Kafka record (W3C Trace Context).
TRACEPARENT = "traceparent"
#: Most links one span keeps (a batch of 500 records would otherwise carry 500).
MAX_LINKS = 128

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: Tracer | None = None

Headers = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None]
T = TypeVar("T")


class _Record(Protocol):
    """What a batch span needs of a record: its headers."""

    @property
    def headers(self) -> Headers | None: ...


def enabled() -> bool:
    """True once :func:`setup` installed an exporter in this process."""
    return _tracer is not None


def _otlp_endpoint(settings: Settings) -> str:
    """The OTLP/HTTP traces URL, or "" when none is configured."""
    base = settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if not base:
        return ""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def setup(settings: Settings, service: str) -> bool:
    """Turn tracing on for this process when an endpoint or a trace file is configured.

    Returns whether tracing is on. Called once per process by the entry points (the gateway
    and worker commands); calling it again replaces the exporter (tests).
    """
    global _provider, _tracer
    shutdown()
    exporter: SpanExporter
    endpoint = _otlp_endpoint(settings)
    delay_ms = 5000
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
        where = endpoint
    elif settings.trace_file is not None:
        exporter = JsonLinesExporter(settings.trace_file)
        where = str(settings.trace_file)
        delay_ms = 500  # a file is cheap to append to: spans show up soon
    else:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
    _provider = provider
    _tracer = provider.get_tracer("leaderboard")
    log.info("%s: traces exported to %s", service, where)
    return True


def shutdown() -> None:
    """Export what is buffered and turn tracing off."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


#: What :func:`span` returns while tracing is off: one shared no-op, nothing allocated.
_NO_SPAN: AbstractContextManager[None] = nullcontext(None)


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    links: Sequence[Link] = (),
    new_trace: bool = False,
) -> AbstractContextManager[Span | None]:
    """A current span named ``name`` (None, at the cost of one test, when tracing is off).

    ``new_trace`` starts a root span (a consumer's batch: its records' traces are linked).
    """
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(
        name,
        context=Context() if new_trace else None,
        kind=kind,
        attributes=attributes,
        links=links[:MAX_LINKS],
    )


def kafka_headers() -> list[tuple[str, str | bytes | None]] | None:
    """The current span's context as Kafka headers; None when tracing is off or no span."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    if not carrier:
        return None
    return [(k, v.encode()) for k, v in carrier.items()]


def context_of(headers: Headers | None) -> SpanContext | None:
    """The span context carried by a record's headers (None if it carries none)."""
    if not headers:
        return None
    items: Iterable[tuple[str, bytes | None]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    value = next((v for k, v in items if k == TRACEPARENT), None)
    if not value:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    found = get_current_span(_propagator.extract({TRACEPARENT: text})).get_span_context()
    return found if found.is_valid else None


def links_of(contexts: Iterable[SpanContext | None]) -> list[Link]:
    """Links to the distinct valid contexts, at most :data:`MAX_LINKS`."""
    seen: dict[tuple[int, int], Link] = {}
    for ctx in contexts:
        if ctx is not None and (ctx.trace_id, ctx.span_id) not in seen:
            seen[(ctx.trace_id, ctx.span_id)] = Link(ctx)
            if len(seen) >= MAX_LINKS:
                break
    return list(seen.values())


def traced_batches(
    name: str, topic: str, handle: Callable[[Sequence[Any]], Awaitable[T]]
) -> Callable[[Sequence[Any]], Awaitable[T]]:
    """``handle`` with a consumer span per batch linked to its records' trace contexts.

    Decided once, when the worker starts: with tracing off ``handle`` itself is returned.
    """
    if not enabled():
        return handle

    async def traced(batch: Sequence[_Record]) -> T:
        links = links_of(context_of(rec.headers) for rec in batch)
        attributes: dict[str, str | int] = {
            "messaging.destination.name": topic,
            "messaging.batch.message_count": len(batch),
            "messaging.batch.traced_count": len(links),
        }
        with span(name, kind=SpanKind.CONSUMER, attributes=attributes, links=links, new_trace=True):
            return await handle(batch)

    return traced


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a file as one JSON object per line.

    One ``write`` per exported batch on a file opened for appending, so processes that share
    the file never interleave inside a line.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``; a failed write is logged and reported, never raised."""
        text = "".join(json.dumps(span_json(s), separators=(",", ":")) + "\n" for s in spans)
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            log.warning("trace file %s: %s", self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing held open between batches."""


def span_json(s: ReadableSpan) -> dict[str, Any]:
    """One span as a plain JSON object (ids in lower-case hex, times in ns since the epoch)."""
    ctx = s.get_span_context()
    assert ctx is not None  # a finished SDK span always has one
    start, end = s.start_time or 0, s.end_time or 0
    return {
        "name": s.name,
        "service": s.resource.attributes.get("service.name", ""),
        "kind": s.kind.name.lower(),
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": round((end - start) / 1e6, 3),
        "attributes": dict(s.attributes or {}),
        "links": [
            {"trace_id": f"{ln.context.trace_id:032x}", "span_id": f"{ln.context.span_id:016x}"}
            for ln in s.links
        ],
        "status": s.status.status_code.name.lower(),
    }
