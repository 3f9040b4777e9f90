"""The gateway through a Redis failover: it keeps answering reads once the Sentinels promoted
the replica, with the same standings, and scores sent afterwards show up in its reads."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from processors.kafka.producer import LeaderboardProducer
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings
from tests.integration.conftest import ARTIFACTS, Pipeline, wait_until
from tests.integration.ha import ha_pipeline_of, kill_primary, wait_new_primary

pytestmark = pytest.mark.integration


@pytest.fixture
def ha_pipe(stack: Settings) -> Iterator[Pipeline]:
    """A pipeline whose workers and gateway reach Redis through the Sentinels."""
    with ha_pipeline_of(stack) as p:
        yield p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway(p: Pipeline) -> str:
    """Start ``leaderboard gateway`` with the pipeline's settings; its base URL once ready."""
    port = _free_port()
    log = open(ARTIFACTS / f"{p.tag}-gateway.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "processors", "gateway", "--port", str(port), "--open"],
        env={**p.env, "LEADERBOARD_GATEWAY_HOST": "127.0.0.1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    p.procs.append(proc)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, "the gateway exited; see test-artifacts"
        try:
            return httpx.get(url + "/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, every=0.3)
    return url


def _submit(p: Pipeline, board: str, scores: dict[str, int]) -> None:
    with LeaderboardProducer(p.settings) as prod:
        for pid, score in scores.items():
            prod.submit(
                MatchResultSubmitted(
                    uuid.uuid4().hex,
                    f"m-{pid}",
                    board,
                    1_790_000_000_000,
                    (ScoreEntry(pid, score),),
                )
            )


def _rankings(url: str, board: str) -> dict | None:
    """The board's top 10 from the gateway, None while it cannot answer."""
    try:
        resp = httpx.get(f"{url}/v1/leaderboards/{board}/rankings", params={"limit": 10}, timeout=2)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def test_gateway_serves_reads_after_failover(ha_pipe: Pipeline) -> None:
    """SIGKILL the primary: reads answer again with the same standings, then move on."""
    board = f"ha-{uuid.uuid4().hex[:6]}"
    with LeaderboardProducer(ha_pipe.settings) as prod:
        prod.configure(
            LeaderboardConfigured(board, SortOrder.DESC, Operator.BEST, ResetPeriod.NONE)
        )
    ha_pipe.start_worker("projector")
    url = _gateway(ha_pipe)
    _submit(ha_pipe, board, {"ann": 30, "bob": 20, "cid": 10})
    before = wait_until(
        lambda: (r := _rankings(url, board)) is not None and r["count"] == 3 and r, timeout=90
    )

    old, killed_at = kill_primary(ha_pipe.settings)
    failover_s = wait_new_primary(ha_pipe.settings, old, killed_at)
    after = wait_until(lambda: _rankings(url, board), timeout=60, every=0.1)
    reads_back_s = round(time.monotonic() - killed_at, 2)
    print(f"failover {failover_s}s, gateway reads back {reads_back_s}s after the kill")
    assert after["entries"] == before["entries"]
    assert after["version"] == before["version"]

    _submit(ha_pipe, board, {"dan": 40})
    moved = wait_until(
        lambda: (r := _rankings(url, board)) is not None and r["count"] == 4 and r, timeout=90
    )
    assert [e["participant_id"] for e in moved["entries"]] == ["dan", "ann", "bob", "cid"]
