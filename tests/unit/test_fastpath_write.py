"""The fast path's one-write answers (gateway/fastpath.py ``_write_whole``) through a real
uvicorn server on loopback: the same bytes as uvicorn's own two messages, keep-alive and
pipelined requests intact, the ordinary path for a connection that closes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn

from processors.gateway.fastpath import _write_whole

_HEADERS = [(b"content-length", b"5"), (b"content-type", b"application/json"), (b"vary", b"Origin")]


class _App:
    """Answers ``b"hello"``: in one write on /whole (when possible), as two messages else."""

    def __init__(self) -> None:
        self.whole: list[bool] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/whole":
            wrote = _write_whole(send, 200, list(_HEADERS), b"hello")
            self.whole.append(wrote)
            if wrote:
                return
        await send({"type": "http.response.start", "status": 200, "headers": list(_HEADERS)})
        await send({"type": "http.response.body", "body": b"hello"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _server(app: _App) -> Any:
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(500):  # up to 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(port: int, raw: bytes, answers: int) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    got = []
    for _ in range(answers):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readexactly(5), 5)
        # the date header moves with the clock: compare the rest
        lines = [ln for ln in head.split(b"\r\n") if not ln.startswith(b"date:")]
        got.append(b"\r\n".join(lines) + body)
    rest = b""
    with contextlib.suppress(TimeoutError):
        rest = await asyncio.wait_for(reader.read(), 0.3)
    writer.close()
    return [*got, rest]


async def test_one_write_answers_equal_uvicorns_and_keep_the_connection() -> None:
    app = _App()
    async with _server(app) as port:
        req = b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n"
        got = await _exchange(port, req % b"/whole" + req % b"/plain" + req % b"/whole", 3)
    assert app.whole == [True, True]
    whole, plain, again, rest = got
    assert whole == plain == again
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest == b""  # nothing more, and the connection was still open for the third


async def test_a_closing_connection_takes_the_ordinary_path() -> None:
    app = _App()
    async with _server(app) as port:
        got = await _exchange(
            port, b"GET /whole HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 1
        )
    assert app.whole == [False]
    assert b"connection: close" in got[0]
