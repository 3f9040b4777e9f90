"""Player tokens against the real gateway: HTTP submissions and WebSocket subscriptions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from processors.bootstrap import migrate_database
from streams.settings import Settings
from tests.e2e.test_gateway import ADMIN, WRITER, Gateway, start_gateway, stop
from tests.integration.conftest import Pipeline
from tests.player_tokens import AUDIENCE, ISSUER, SECRET, rsa_key, token, write_jwks

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SIGNER = rsa_key()  # the identity provider's key, published in the gateway's JWKS file
STRANGER = rsa_key()  # anyone else's key: its tokens are forged


def rs(sub: str | None = "ann", **kw: Any) -> str:
    """A token signed by the identity provider's RSA key (kid ``idp-1``)."""
    return token(sub, key=SIGNER, algorithm="RS256", kid="idp-1", **kw)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(scope="module")
def gateway(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A projector and a gateway that accepts HS256 tokens and RS256 tokens of a JWKS file."""
    migrate_database(stack.postgres_dsn)
    jwks = write_jwks({"idp-1": SIGNER}, tmp_path_factory.mktemp("jwks") / "jwks.json")
    p = Pipeline(stack, f"t{uuid.uuid4().hex[:8]}")
    p.start_worker("projector")
    proc, url = start_gateway(
        p,
        LEADERBOARD_JWT_SECRET=SECRET,
        LEADERBOARD_JWT_JWKS_FILE=str(jwks),
        LEADERBOARD_JWT_AUDIENCE=AUDIENCE,
        LEADERBOARD_JWT_ISSUER=ISSUER,
    )
    try:
        yield Gateway(url, url.replace("http://", "ws://"), p, proc)
    finally:
        stop(proc)
        p.stop_all()


def post(gw: Gateway, board: str, pid: str, headers: dict[str, str], wait: bool = False) -> Any:
    with gw.client() as c:
        return c.post(
            f"/v1/leaderboards/{board}/scores",
            params={"wait": "true"} if wait else None,
            json={"participant_id": pid, "score": 10},
            headers=headers,
        )


def refused(r: httpx.Response, status: int, message: str) -> None:
    """A refusal in the gateway's error shape, with its reason and a Bearer challenge."""
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"] == message, r.text
    assert r.headers["www-authenticate"].startswith('Bearer realm="leaderboard"'), r.headers


def test_a_player_token_submits_its_own_scores_only(gateway: Gateway) -> None:
    board = gateway.create_board()
    r = post(gateway, board, "ann", auth(rs("ann")), wait=True)
    assert r.status_code == 200 and r.json()["rank"] == 1, r.text
    r = post(gateway, board, "bob", auth(token("bob")))  # HS256 works beside the JWKS
    assert r.status_code == 202, r.text
    r = post(gateway, board, "bob", auth(rs("ann")))
    refused(r, 403, "a player token for 'ann' may not submit scores of 'bob'")
    assert r.json()["error"]["code"] == "forbidden"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    # a service key keeps its powers: any participant
    assert post(gateway, board, "bob", {"X-API-Key": WRITER}).status_code == 202


@pytest.mark.parametrize(
    "tok, message",
    [
        (rs(expires_in=-120), "token expired"),
        (token(key=STRANGER, algorithm="RS256", kid="idp-1"), "token signature does not verify"),
        (token(key="forged" * 8), "token signature does not verify"),
        (rs(aud="another-service"), f"token audience is not {AUDIENCE!r}"),
        (rs(iss="https://evil.example"), f"token issuer is not {ISSUER!r}"),
        (rs(sub=None), "token has no 'sub' claim"),
        ("garbage", "malformed token"),
    ],
    ids=["expired", "forged-rs256", "forged-hs256", "audience", "issuer", "no-sub", "garbage"],
)
def test_a_bad_token_is_401_with_its_reason(gateway: Gateway, tok: str, message: str) -> None:
    board = gateway.create_board()
    r = post(gateway, board, "ann", auth(tok))
    refused(r, 401, message)
    assert r.json()["error"]["code"] == "unauthorized"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_no_credentials_and_admin_calls(gateway: Gateway) -> None:
    board = gateway.create_board()
    refused(
        post(gateway, board, "ann", {}),
        401,
        "write calls need an X-API-Key header or an Authorization: Bearer player token",
    )
    with gateway.client() as c:  # a token has no admin powers
        r = c.post("/v1/leaderboards", json={"leaderboard_id": f"x-{board}"}, headers=auth(rs()))
        assert r.status_code == 401, r.text
        r = c.post(
            "/v1/leaderboards", json={"leaderboard_id": f"x-{board}"}, headers={"X-API-Key": ADMIN}
        )
        assert r.status_code == 201, r.text


def test_public_reads_stay_public(gateway: Gateway) -> None:
    board = gateway.create_board()
    gateway.submit(board, "ann", 5)
    with gateway.client() as c:
        for headers in ({}, auth(rs(expires_in=-999))):
            r = c.get(f"/v1/leaderboards/{board}/rankings", headers=headers)
            assert r.status_code == 200 and r.json()["entries"][0]["participant_id"] == "ann"
            r = c.get(f"/v1/leaderboards/{board}/participants/ann", headers=headers)
            assert r.status_code == 200, r.text


async def subscribe(
    gw: Gateway, board: str, tok: str | None, **sub: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(
        f"{gw.ws}/v1/leaderboards/{board}/subscribe",
        additional_headers=auth(tok) if tok else None,
    )
    await ws.send(json.dumps({"type": "subscribe", **sub}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, first


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


async def test_websocket_a_token_tracks_only_its_subject(gateway: Gateway) -> None:
    board = gateway.create_board()
    await asyncio.to_thread(gateway.submit, board, "ann", 5)
    await asyncio.to_thread(gateway.submit, board, "bob", 7)
    ws, first = await subscribe(gateway, board, rs("ann"), mode="track", participant_id="ann")
    try:
        assert first["type"] == "snapshot", first
        assert [e["participant_id"] for e in first["entries"]] == ["ann"]
        r = await asyncio.to_thread(post, gateway, board, "ann", auth(rs("ann")))
        assert r.status_code == 202, r.text
        while (msg := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] == "ping":
            pass
        assert msg["type"] == "delta" and msg["changes"][0]["participant_id"] == "ann", msg
    finally:
        await ws.close()
    ws, first = await subscribe(gateway, board, rs("ann"), mode="track", participant_id="bob")
    assert first["type"] == "error" and first["error"] == {
        "code": "forbidden",
        "message": "a player token for 'ann' may track only 'ann'",
    }
    assert await closed_with(ws) == 4403
    ws, first = await subscribe(gateway, board, rs("ann"), mode="top", n=5)  # public read
    assert first["type"] == "snapshot", first
    await ws.close()
    ws, first = await subscribe(gateway, board, None, mode="track", participant_id="bob")
    assert first["type"] == "snapshot", first  # anonymous reads stay public
    await ws.close()


@pytest.mark.parametrize(
    "tok, message",
    [
        (rs(expires_in=-120), "token expired"),
        (token(key=STRANGER, algorithm="RS256", kid="idp-1"), "token signature does not verify"),
        (rs(aud="another-service"), f"token audience is not {AUDIENCE!r}"),
    ],
    ids=["expired", "forged", "audience"],
)
async def test_websocket_a_bad_token_is_refused(gateway: Gateway, tok: str, message: str) -> None:
    board = gateway.create_board()
    ws = await websockets.connect(
        f"{gateway.ws}/v1/leaderboards/{board}/subscribe", additional_headers=auth(tok)
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first == {"type": "error", "error": {"code": "unauthorized", "message": message}}
    assert await closed_with(ws) == 4401


def test_bad_key_settings_stop_the_gateway_with_one_line() -> None:
    env = {**os.environ, "LEADERBOARD_JWT_SECRET": "short"}
    out = subprocess.run(
        [sys.executable, "-m", "processors", "gateway", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "LEADERBOARD_JWT_SECRET has 5 bytes" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
