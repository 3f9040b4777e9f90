"""One submission's trace, followed hop by hop through the real gateway, Kafka, projector and
WebSocket push, as written to the JSON-lines trace file by each process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.bootstrap import migrate_database
from processors.trace_hops import HOPS
from streams.settings import Settings
from tests.e2e.test_gateway import Gateway, W, next_data, start_gateway, stop, subscribe
from tests.integration.conftest import Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Span = dict[str, Any]


@pytest.fixture(scope="module")
def traced(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Path]]:
    """A projector and a gateway that both append their spans to one trace file."""
    migrate_database(stack.postgres_dsn)
    trace_file = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    p = Pipeline(stack, f"tr{uuid.uuid4().hex[:8]}")
    p.env["LEADERBOARD_TRACE_FILE"] = str(trace_file)
    p.env.pop("LEADERBOARD_OTLP_ENDPOINT", None)
    p.env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    p.start_worker("projector")
    proc, url = start_gateway(p)
    try:
        yield Gateway(url, url.replace("http://", "ws://"), p, proc), trace_file
    finally:
        stop(proc)
        p.stop_all()


def spans(path: Path) -> list[Span]:
    """Every span written so far (a line still being written is left for the next read)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def leaderboard(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI."""
    command = [sys.executable, "-m", "processors", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def one(found: list[Span], what: str) -> Span:
    assert len(found) == 1, f"{what}: {len(found)} spans: {found}"
    return found[0]


def linked_to(s: Span, target: Span) -> bool:
    return {"trace_id": target["trace_id"], "span_id": target["span_id"]} in s["links"]


async def test_one_submission_is_traced_through_every_hop(
    traced: tuple[Gateway, Path],
) -> None:
    gw, trace_file = traced
    board = gw.create_board()
    ws, first = await subscribe(gw.ws, board, mode="track", participant_id="ann")
    assert first["type"] == "snapshot", first
    try:
        with gw.client() as c:
            r = await asyncio.to_thread(
                c.post,
                f"/v1/leaderboards/{board}/scores?wait=true",
                json={"participant_id": "ann", "score": 42},
                headers=W,
            )
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        delta = await next_data(ws, 10)
        assert delta["type"] == "delta" and delta["changes"][0]["new_score"] == 42, delta
    finally:
        await ws.close()

    def hops() -> tuple[Span, ...] | None:
        """The five spans of this submission, once every process exported them."""
        found = spans(trace_file)
        post = [
            s
            for s in found
            if s["name"] == "POST scores"
            and s["attributes"].get("leaderboard.event_id") == event_id
        ]
        send = [
            s
            for s in found
            if s["name"] == "scores send"
            and s["attributes"].get("leaderboard.event_id") == event_id
        ]
        if not post or not send:
            return None
        batch = [s for s in found if s["name"] == "projector batch" and linked_to(s, send[0])]
        if not batch:
            return None
        publish = [
            s
            for s in found
            if s["name"] == "rank-changes publish" and s["parent_span_id"] == batch[0]["span_id"]
        ]
        if not publish:
            return None
        push = [s for s in found if s["name"] == "ws push" and linked_to(s, publish[0])]
        if not push:
            return None
        return post[0], send[0], batch[0], publish[0], push[0]

    wait_until(hops, timeout=30, every=0.3)
    found = spans(trace_file)
    post = one(
        [
            s
            for s in found
            if s["name"] == "POST scores"
            and s["attributes"].get("leaderboard.event_id") == event_id
        ],
        "gateway span",
    )
    # gateway: the request span, and the produce span under it whose context went into Kafka
    assert post["service"] == "leaderboard-gateway" and post["kind"] == "server"
    assert post["attributes"]["http.response.status_code"] == 200
    send = one(
        [s for s in found if s["name"] == "scores send" and s["parent_span_id"] == post["span_id"]],
        "produce span",
    )
    assert send["trace_id"] == post["trace_id"] and send["kind"] == "producer"
    assert send["attributes"]["leaderboard.event_id"] == event_id
    # projector: the batch span (a trace of its own) links to the record's context
    batch = one(
        [s for s in found if s["name"] == "projector batch" and linked_to(s, send)], "batch span"
    )
    assert batch["service"] == "leaderboard-projector" and batch["kind"] == "consumer"
    assert batch["parent_span_id"] is None and batch["trace_id"] != post["trace_id"]
    assert batch["attributes"]["messaging.batch.message_count"] >= 1
    publish = one(
        [
            s
            for s in found
            if s["name"] == "rank-changes publish" and s["parent_span_id"] == batch["span_id"]
        ],
        "publish span",
    )
    assert event_id in publish["attributes"]["leaderboard.event_ids"]
    assert publish["attributes"]["leaderboard.rank_changed_records"] >= 1
    # gateway again: the WebSocket push links to the rank-change record's context
    push = one([s for s in found if s["name"] == "ws push" and linked_to(s, publish)], "push span")
    assert push["service"] == "leaderboard-gateway"
    assert push["attributes"]["leaderboard.id"] == board
    assert push["attributes"]["leaderboard.version"] == delta["version"]
    # the hops follow each other in time (one machine, one clock)
    assert post["start_ns"] <= send["start_ns"] <= batch["start_ns"]
    assert batch["start_ns"] <= publish["start_ns"] <= publish["end_ns"] <= push["start_ns"]
    assert send["end_ns"] <= post["end_ns"]

    # the same path, hop by hop, as `leaderboard traces` prints it
    args = ("traces", str(trace_file), "--event-id", event_id)
    shown = await asyncio.to_thread(leaderboard, *args)
    assert shown.returncode == 0, shown.stderr
    for name, _ in HOPS:
        assert name in shown.stdout, shown.stdout
    json_out = await asyncio.to_thread(leaderboard, *args, "--json")
    assert json_out.returncode == 0, json_out.stderr
    (only,) = [json.loads(x) for x in json_out.stdout.splitlines()]
    assert only["event_id"] == event_id
    hops = only["ms"]
    assert set(hops) == {name for name, _ in HOPS}, hops
    assert all(ms >= 0 for ms in hops.values()), hops
    assert hops["end to end"] == pytest.approx(
        hops["to projector"] + hops["apply"] + hops["publish"] + hops["to push"] + hops["push"],
        abs=0.01,
    )
