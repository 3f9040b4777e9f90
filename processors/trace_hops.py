"""A submission's latency by hop, from the spans of a trace file (``LEADERBOARD_TRACE_FILE``).

The spans of one submission sit in three traces joined by links (see processors.telemetry):
the gateway's ``POST scores`` with its child ``scores send``; the projector's ``projector batch``
linked to the ``scores send`` context from the record's header, with its child ``rank-changes
publish``; and each ``ws push`` linked to that publish span's context. Times are compared
across processes, so they are meaningful on one host (or hosts with synchronised clocks).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HOPS", "Submission", "breakdown", "paths", "read_spans"]

Span = dict[str, Any]

#: The hops, in order, each with how it is measured (all in milliseconds).
HOPS: tuple[tuple[str, str], ...] = (
    ("gateway", "POST start → record handed to the producer (auth, checks, encode)"),
    ("to projector", "record handed over → projector batch starts (Kafka ack, fetch, batch wait)"),
    ("apply", "batch start → rank-change publish starts (decode, validate, Redis script)"),
    ("publish", "rank-change publish until Kafka acknowledged it (the outbox is then cleared)"),
    ("to push", "publish acknowledged → WebSocket push starts (rank feed read, push window)"),
    ("push", "the WebSocket send"),
    ("visible in Redis", "record handed over → rank-change publish starts (BENCHMARKS 'Redis')"),
    ("end to end", "record handed over → WebSocket send done (BENCHMARKS 'WebSocket delta')"),
)


@dataclass(frozen=True, slots=True)
class Submission:
    """The spans of one submission, hop by hop (``push`` is None if nobody subscribed)."""

    event_id: str
    post: Span | None
    send: Span
    batch: Span
    publish: Span
    push: Span | None

    def hops(self) -> dict[str, float]:
        """Milliseconds per hop; hops not reached (no push, no gateway) are left out."""
        ms: dict[str, float] = {}
        send, batch, publish, push = self.send, self.batch, self.publish, self.push
        if self.post is not None:
            ms["gateway"] = _ms(send["start_ns"] - self.post["start_ns"])
        ms["to projector"] = _ms(batch["start_ns"] - send["end_ns"])
        ms["apply"] = _ms(publish["start_ns"] - batch["start_ns"])
        ms["publish"] = _ms(publish["end_ns"] - publish["start_ns"])
        ms["visible in Redis"] = _ms(publish["start_ns"] - send["end_ns"])
        if push is not None:
            ms["to push"] = _ms(push["start_ns"] - publish["end_ns"])
            ms["push"] = _ms(push["end_ns"] - push["start_ns"])
            ms["end to end"] = _ms(push["end_ns"] - send["end_ns"])
        return ms


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def read_spans(path: Path) -> list[Span]:
    """Every complete JSON line of a trace file (a line being written is skipped)."""
    out: list[Span] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _key(s: Span) -> tuple[str, str]:
    return s["trace_id"], s["span_id"]


def paths(spans: Iterable[Span], event_id: str | None = None) -> list[Submission]:
    """One path per submission (or only ``event_id``'s) whose spans reached the projector."""
    by_name: dict[str, list[Span]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    posts = {s["span_id"]: s for s in by_name.get("POST scores", ())}
    batch_of: dict[tuple[str, str], Span] = {}
    for b in by_name.get("projector batch", ()):
        for link in b["links"]:
            batch_of.setdefault((link["trace_id"], link["span_id"]), b)
    publish_of = {p["parent_span_id"]: p for p in by_name.get("rank-changes publish", ())}
    first_push: dict[tuple[str, str], Span] = {}
    for w in by_name.get("ws push", ()):
        for link in w["links"]:
            key = (link["trace_id"], link["span_id"])
            if key not in first_push or w["start_ns"] < first_push[key]["start_ns"]:
                first_push[key] = w
    found = []
    for send in by_name.get("scores send", ()):
        eid = send["attributes"].get("leaderboard.event_id", "")
        if event_id is not None and eid != event_id:
            continue
        batch = batch_of.get(_key(send))
        publish = publish_of.get(batch["span_id"]) if batch is not None else None
        if batch is None or publish is None:
            continue
        post = posts.get(send["parent_span_id"] or "")
        found.append(Submission(eid, post, send, batch, publish, first_push.get(_key(publish))))
    return found


def breakdown(found: Sequence[Submission]) -> list[tuple[str, str, int, float, float, float]]:
    """Per hop: name, meaning, count, p50, p99 and max in milliseconds (hops with samples)."""
    rows = []
    samples = [p.hops() for p in found]
    for name, meaning in HOPS:
        values = sorted(h[name] for h in samples if name in h)
        if not values:
            continue
        p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
        rows.append((name, meaning, len(values), statistics.median(values), p99, values[-1]))
    return rows
