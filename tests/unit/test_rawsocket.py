"""The frames a view writes below Starlette are the frames websockets itself would send."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from processors.gateway.rawsocket import RawSocket, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_text_frame_is_what_websockets_serializes(size: int) -> None:
    text = ("é" + "x" * size)[:size] if size else ""
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert text_frame(text) == expected


def test_an_unknown_server_send_has_no_raw_socket() -> None:
    async def send(message: object) -> None:
        return None

    assert RawSocket.of(send) is None
    assert RawSocket.of(None) is None
