"""Participant profiles and personal notifications against the real stack, a projector, a sinks
worker and a gateway (HTTP, WebSocket with the ``websockets`` client, the CLI)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis
import websockets
from websockets.asyncio.client import ClientConnection

from processors.bootstrap import migrate_database
from projections.profiles import profiles_key, profiles_version_key
from streams.settings import Settings
from tests.e2e.test_gateway import ADMIN, WRITER, Gateway, next_data, start_gateway, stop
from tests.integration.conftest import Pipeline, wait_until
from tests.player_tokens import AUDIENCE, ISSUER, SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

W = {"X-API-Key": WRITER}
A = {"X-API-Key": ADMIN}


def bearer(sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, audience=AUDIENCE, issuer=ISSUER)}"}


@pytest.fixture(scope="module")
def gw(stack: Settings) -> Iterator[Gateway]:
    """A projector, a sinks worker (the profile projector) and a gateway taking player tokens."""
    migrate_database(stack.postgres_dsn)
    p = Pipeline(stack, f"pf{uuid.uuid4().hex[:8]}")
    p.start_worker("projector")
    p.start_worker("sinks")
    proc, url = start_gateway(
        p,
        LEADERBOARD_JWT_SECRET=SECRET,
        LEADERBOARD_JWT_AUDIENCE=AUDIENCE,
        LEADERBOARD_JWT_ISSUER=ISSUER,
    )
    try:
        yield Gateway(url, url.replace("http://", "ws://"), p, proc)
    finally:
        stop(proc)
        p.stop_all()


def put_profile(gw: Gateway, pid: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    with gw.client() as c:
        return c.put(f"/v1/participants/{pid}/profile", json=body, headers=headers)


def profile_of(gw: Gateway, pid: str) -> dict[str, Any] | None:
    with gw.client() as c:
        r = c.get(f"/v1/participants/{pid}/profile")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()["profile"]
    return found


def test_profile_is_validated_and_only_its_owner_or_a_service_sets_it(gw: Gateway) -> None:
    pid = f"ann-{uuid.uuid4().hex[:6]}"
    bad = [
        ({"country": "fr"}, "country"),
        ({"display_name": "x" * 65}, "display_name"),
        ({"display_name": "a\u200bb"}, "display_name"),
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 257}}, "metadata"),
        ({"nickname": "x"}, "nickname"),
    ]
    for body, field in bad:
        r = put_profile(gw, pid, body, W)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["error"]["message"], r.text
    r = put_profile(gw, pid, {"display_name": "Mallory"}, bearer("mallory"))
    assert r.status_code == 403, r.text
    with gw.client() as c:
        assert (
            c.put(f"/v1/participants/{pid}/profile", json={"display_name": "x"}).status_code == 401
        )
    r = put_profile(gw, pid, {"display_name": "Ann", "country": "FR"}, bearer(pid))
    assert r.status_code == 202, r.text
    assert r.json()["profile"] == {"display_name": "Ann", "country": "FR"}
    assert wait_until(lambda: profile_of(gw, pid), timeout=30) == {
        "display_name": "Ann",
        "country": "FR",
    }


async def test_profiles_in_rankings_participant_reads_and_websocket(gw: Gateway) -> None:
    board = gw.create_board()
    tag = uuid.uuid4().hex[:6]
    ann, bob, cid = f"ann-{tag}", f"bob-{tag}", f"cid-{tag}"
    meta = {"clan": "red"}
    assert put_profile(gw, ann, {"display_name": "Ann", "metadata": meta}, W).status_code == 202
    assert put_profile(gw, bob, {"display_name": "Bob", "country": "DE"}, W).status_code == 202
    assert put_profile(gw, cid, {"display_name": "Cid"}, W).status_code == 202
    wait_until(lambda: profile_of(gw, cid), timeout=30)
    gw.submit(board, ann, 300)
    gw.submit(board, bob, 200)
    with gw.client() as c:
        page = c.get(f"/v1/leaderboards/{board}/rankings").json()
        me = c.get(f"/v1/leaderboards/{board}/participants/{bob}").json()
        listed = c.get(f"/v1/leaderboards/{board}/rankings", params={"participants": bob}).json()
    assert [(e["participant_id"], e.get("profile")) for e in page["entries"]] == [
        (ann, {"display_name": "Ann", "metadata": meta}),
        (bob, {"display_name": "Bob", "country": "DE"}),
    ]
    assert me["profile"] == {"display_name": "Bob", "country": "DE"}
    assert me["above"][0]["profile"]["display_name"] == "Ann"
    assert listed["entries"][0]["profile"]["display_name"] == "Bob"

    ws = await websockets.connect(f"{gw.ws}/v1/leaderboards/{board}/subscribe")
    try:
        await ws.send(json.dumps({"type": "subscribe", "mode": "top", "n": 10}))
        snap = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert snap["type"] == "snapshot"
        assert [e["profile"]["display_name"] for e in snap["entries"]] == ["Ann", "Bob"]
        await asyncio.to_thread(gw.submit, board, cid, 500, metadata={"team": "x"})
        delta = await next_data(ws, 5)
        assert delta["type"] == "delta"
        assert [(c["participant_id"], c["profile"], c["metadata"]) for c in delta["changes"]] == [
            (cid, {"display_name": "Cid"}, {"team": "x"})
        ]
    finally:
        await ws.close()

    # a new profile shows in the next read (the rank and version did not move)
    assert put_profile(gw, bob, {"display_name": "Robert"}, W).status_code == 202
    wait_until(lambda: (profile_of(gw, bob) or {}).get("display_name") == "Robert", timeout=30)
    with gw.client() as c:
        row = c.get(f"/v1/leaderboards/{board}/participants/{bob}").json()
    assert row["profile"] == {"display_name": "Robert"}  # a PUT replaces the whole profile


def test_a_profile_change_moves_the_etag_of_the_rankings_that_show_it(gw: Gateway) -> None:
    """The board does not move, the profile shown in its rows does: no stale 304."""
    board = gw.create_board()
    ann = f"ann-{uuid.uuid4().hex[:6]}"
    assert put_profile(gw, ann, {"display_name": "Ann"}, W).status_code == 202
    wait_until(lambda: profile_of(gw, ann), timeout=30)
    gw.submit(board, ann, 10)
    url = f"/v1/leaderboards/{board}/rankings"
    with gw.client() as c:
        first = c.get(url)
        etag = first.headers["etag"]
        assert first.json()["entries"][0]["profile"] == {"display_name": "Ann"}
        assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert put_profile(gw, ann, {"display_name": "Annie"}, W).status_code == 202
    wait_until(lambda: (profile_of(gw, ann) or {}).get("display_name") == "Annie", timeout=30)
    with gw.client() as c:
        again = c.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 200, "a stale 304 hides the new display name"
        assert again.headers["etag"] != etag
        assert again.json()["version"] == first.json()["version"]  # the board did not move
        assert again.json()["entries"][0]["profile"] == {"display_name": "Annie"}
        newer = c.get(url, headers={"If-None-Match": again.headers["etag"]})
        assert newer.status_code == 304 and newer.headers["etag"] == again.headers["etag"]


def test_profiles_rebuild_from_the_compacted_topic(gw: Gateway, stack: Settings) -> None:
    """Redis and PostgreSQL lose every profile; ``leaderboard profile rebuild`` restores the
    latest one of each participant from the topic alone."""
    tag = uuid.uuid4().hex[:6]
    ann, bob = f"ann-{tag}", f"bob-{tag}"
    assert put_profile(gw, ann, {"display_name": "Ann v1"}, W).status_code == 202
    assert put_profile(gw, bob, {"display_name": "Bob", "country": "SE"}, W).status_code == 202
    assert (
        put_profile(gw, ann, {"display_name": "Ann v2", "metadata": {"a": "1"}}, W).status_code
        == 202
    )
    wait_until(lambda: (profile_of(gw, ann) or {}).get("display_name") == "Ann v2", timeout=30)
    wait_until(lambda: profile_of(gw, bob), timeout=30)
    key = profiles_key(gw.pipeline.settings.topic_prefix)
    r = redis.Redis.from_url(stack.redis_url)
    before = r.hgetall(key)
    version = int(r.get(profiles_version_key(key)) or 0)
    assert version >= 1  # one bump per projected batch of profile writes
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        rows_before = conn.execute(
            "SELECT participant_id, display_name, country, metadata FROM participants"
            " WHERE participant_id = ANY(%s) ORDER BY 1",
            ([ann, bob],),
        ).fetchall()
        assert [row[1] for row in rows_before] == ["Ann v2", "Bob"]
        r.delete(key)
        conn.execute("DELETE FROM participants WHERE participant_id = ANY(%s)", ([ann, bob],))
    assert profile_of(gw, ann) is None

    out = subprocess.run(
        [sys.executable, "-m", "processors", "profile", "rebuild"],
        env=gw.pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "rebuilt" in out.stdout
    assert r.hgetall(key) == before
    assert int(r.get(profiles_version_key(key)) or 0) > version  # validators move on a rebuild
    assert profile_of(gw, ann) == {"display_name": "Ann v2", "metadata": {"a": "1"}}
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        rows_after = conn.execute(
            "SELECT participant_id, display_name, country, metadata FROM participants"
            " WHERE participant_id = ANY(%s) ORDER BY 1",
            ([ann, bob],),
        ).fetchall()
    assert rows_after == rows_before
    shown = subprocess.run(
        [sys.executable, "-m", "processors", "profile", "show", bob],
        env=gw.pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(shown.stdout) == {"display_name": "Bob", "country": "SE"}


def test_profile_cli_refuses_bad_input_in_one_line(gw: Gateway) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "processors", "profile", "set", "ann", "--country", "France"],
        env=gw.pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "country" in out.stderr and "ISO 3166-1" in out.stderr


async def listen(
    gw: Gateway, pid: str, headers: dict[str, str], query: str = ""
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(
        f"{gw.ws}/v1/participants/{pid}/notifications{query}", additional_headers=headers
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, first


async def notices(ws: ClientConnection, count: int, within: float = 10) -> list[dict[str, Any]]:
    got = []
    while len(got) < count:
        msg = await next_data(ws, within)
        assert msg["type"] == "notification", msg
        got.append(msg)
    return got


async def test_personal_notifications_over_websocket(gw: Gateway) -> None:
    board = gw.create_board(watch_top_n=2)
    other = gw.create_board(watch_top_n=2)
    tag = uuid.uuid4().hex[:6]
    ann, bob, cid = f"ann-{tag}", f"bob-{tag}", f"cid-{tag}"

    # a player hears only their own; no credentials at all is refused
    ws, first = await listen(gw, ann, bearer(bob))
    assert first["type"] == "error" and first["error"]["code"] == "forbidden"
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4403
    ws, first = await listen(gw, ann, {})
    assert first["type"] == "error" and ws is not None
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4401

    mine, first = await listen(gw, ann, bearer(ann))
    service, sfirst = await listen(gw, bob, W, f"?leaderboards={board}")
    try:
        assert first["type"] == "subscribed" and first["participant_id"] == ann
        assert sfirst["leaderboards"] == [board]
        await asyncio.to_thread(gw.submit, board, ann, 100)  # ann enters the top 2
        (n1,) = await notices(mine, 1)
        assert (n1["leaderboard_id"], n1["kind"], n1["rank"]) == (board, "entered_top_n", 1)
        await asyncio.to_thread(gw.submit, board, bob, 50)  # bob enters the top 2 below ann
        (b1,) = await notices(service, 1)
        assert (b1["kind"], b1["rank"], b1["participant_id"]) == ("entered_top_n", 2, bob)
        await asyncio.to_thread(gw.submit, board, bob, 200)  # bob passes ann
        got = await notices(mine, 1)
        assert [(n["kind"], n["rank"], n["by_participant_id"]) for n in got] == [
            ("overtaken", 2, bob)
        ]
        # bob's listener follows only `board`: his entry into the top of `other` is not sent
        await asyncio.to_thread(gw.submit, other, bob, 10)
        await asyncio.to_thread(gw.submit, board, cid, 10)  # rank 3: nobody is told
        await asyncio.to_thread(gw.submit, board, cid, 300)  # passes both, ann leaves the top
        got = await notices(mine, 2)
        assert sorted((n["kind"], n["rank"]) for n in got) == [
            ("left_top_n", 3),
            ("overtaken", 3),
        ]
        (b2,) = await notices(service, 1)
        assert (b2["leaderboard_id"], b2["kind"], b2["by_participant_id"]) == (
            board,
            "overtaken",
            cid,
        )
        with pytest.raises(TimeoutError):
            await next_data(service, 1.5)
    finally:
        await mine.close()
        await service.close()


def test_notifications_route_is_in_the_openapi_and_profile_routes_too(gw: Gateway) -> None:
    with httpx.Client(base_url=gw.url) as c:
        spec = c.get("/openapi.json").json()
    assert "put" in spec["paths"]["/v1/participants/{participant}/profile"]
    assert "get" in spec["paths"]["/v1/participants/{participant}/profile"]


def page(gw: Gateway, board: str, **params: Any) -> httpx.Response:
    with gw.client() as c:
        return c.get(f"/v1/leaderboards/{board}/rankings", params=params)


def test_cursor_paging_is_stable_while_rows_move(gw: Gateway) -> None:
    board = gw.create_board()
    # p0..p3 tie at 50 (first to reach ranks higher), p4..p9 at 100..600
    for i in range(4):
        gw.submit(board, f"p{i}", 50)
    for i in range(4, 10):
        gw.submit(board, f"p{i}", (i - 3) * 100)
    order = [f"p{i}" for i in range(9, 3, -1)] + ["p0", "p1", "p2", "p3"]
    first = page(gw, board, limit=7).json()
    assert [e["participant_id"] for e in first["entries"]] == order[:7]  # ends at p0 (a tie)
    assert first["offset"] == 0 and first["next_cursor"]

    # the cursor's own row leaves (p0 jumps to the top), a newcomer enters above the cursor
    gw.submit(board, "p0", 1000)
    gw.submit(board, "new", 700)
    second = page(gw, board, limit=2, cursor=first["next_cursor"]).json()
    assert [e["participant_id"] for e in second["entries"]] == ["p1", "p2"]
    # ranks are current: p1 is 8th as it was, p0 moved above and the newcomer pushed it down
    assert [e["rank"] for e in second["entries"]] == [9, 10] and second["offset"] == 8
    # the offset page that follows would repeat p4, already on the first page
    assert page(gw, board, limit=2, offset=7).json()["entries"][0]["participant_id"] == "p4"
    third = page(gw, board, limit=2, cursor=second["next_cursor"]).json()
    assert [e["participant_id"] for e in third["entries"]] == ["p3"]
    assert third["next_cursor"] is None

    for bad in ({"cursor": "bm90LWEtY3Vyc29y"}, {"cursor": "%%%"}):
        r = page(gw, board, **bad)
        assert r.status_code == 400 and "cursor" in r.json()["error"]["message"], r.text
    r = page(gw, board, cursor=first["next_cursor"], offset=3)
    assert r.status_code == 400, r.text
