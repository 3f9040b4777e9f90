"""A viewer's WebSocket below Starlette: the server's transport, for frames encoded once.

A shared top-n view sends the same delta to every member. Through Starlette each member's
send costs a task wake-up, the ASGI wrappers, websockets' framing and a ``transport.write``;
here the view frames its delta once (a server frame is unmasked, so the bytes are the same
for every connection) and writes those bytes to each member's transport directly.

Only uvicorn's ``websockets-sansio`` protocol (its default when ``websockets`` is installed)
is recognised; under any other server ``RawSocket.of`` answers None and the member is served
through Starlette as before. Close and pings stay the server's: nothing is written once a
close was sent or received. Back-pressure: a transport holding more than ``SLOW_BYTES``
unsent is reported ``FULL`` instead of being written to, so the caller applies its
slow-consumer policy (the server's own sends still wait for its ``writable`` event).
"""

from __future__ import annotations

import contextlib
import enum
import socket
from typing import Any

from websockets.protocol import State

__all__ = ["SEND_BUFFER", "SERVER_SEND", "SLOW_BYTES", "RawSocket", "Write", "text_frame"]

#: the scope key under which the gateway keeps the server's own ``send`` of a WebSocket
#: (app.py), before middleware wraps it: ``RawSocket.of`` finds the connection from it
SERVER_SEND = "leaderboard.server_send"


#: unsent bytes in the server's buffer (after the kernel's socket buffers filled) past which
#: a client counts as slow. Above the transport's 64 KiB high-water mark, so that one large
#: frame (a top-1000 snapshot) to a client that does read is not taken for slowness.
SLOW_BYTES = 256 * 1024
#: the kernel send buffer of a viewer's socket (SO_SNDBUF; Linux doubles it): pushes are a
#: few hundred bytes, and a viewer's memory in the gateway stays bounded
SEND_BUFFER = 64 * 1024


class Write(enum.Enum):
    """What became of one write."""

    WRITTEN = "written"
    #: the connection is closing or closed: nothing written, its own task ends it
    GONE = "gone"
    #: the client reads too slowly: more than ``SLOW_BYTES`` wait in the server's buffer
    FULL = "full"


def text_frame(text: str) -> bytes:
    """``text`` as one final, unmasked WebSocket text frame (RFC 6455 §5.2), as a server
    sends it without extensions."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def _sansio_protocol() -> type[Any] | None:
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:  # pragma: no cover - uvicorn without websockets
        return None
    return WebSocketsSansIOProtocol


_PROTOCOL = _sansio_protocol()


class RawSocket:
    """Writes ready-made frames to one accepted WebSocket connection of uvicorn."""

    __slots__ = ("_proto",)

    def __init__(self, proto: Any) -> None:
        self._proto = proto

    @classmethod
    def of(cls, server_send: Any) -> RawSocket | None:
        """The connection behind the server's own ``send`` callable (the one the ASGI server
        handed the app, before any middleware wrapped it); None if it is not a known one,
        or not accepted without extensions (a negotiated extension changes the framing)."""
        proto = getattr(server_send, "__self__", None)
        if _PROTOCOL is None or not isinstance(proto, _PROTOCOL):
            return None
        conn = getattr(proto, "conn", None)
        if not getattr(proto, "handshake_complete", False) or conn is None or conn.extensions:
            return None
        sock = proto.transport.get_extra_info("socket")
        if sock is not None:
            # bounded kernel memory per viewer, and a slow one noticed after ~KiBs, not the
            # megabytes Linux's send-buffer autotuning would hold for it on loopback
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        return cls(proto)

    def write(self, frame: bytes) -> Write:
        """Write ``frame`` unless the connection is closing or its client is behind."""
        proto = self._proto
        if proto.close_sent or proto.disconnected or proto.conn.state is not State.OPEN:
            return Write.GONE
        transport = proto.transport
        if transport.is_closing():
            return Write.GONE
        if transport.get_write_buffer_size() > SLOW_BYTES:
            return Write.FULL
        transport.write(frame)
        return Write.WRITTEN

    def close_sent(self) -> tuple[int, str] | None:
        """The code and reason of the close frame the server sent (None: none yet), e.g.
        1011 "keepalive ping timeout" when the client stopped answering protocol pings."""
        close = self._proto.conn.close_sent
        return None if close is None else (int(close.code), str(close.reason))
