"""``lean.RawSchema``: the agent gets the bytes read, as through Faust's ``raw`` codec."""

from __future__ import annotations

import faust
import pytest
from faust.types import TP, Message

from processors.workers.lean import RawSchema


def message(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        topic="scores",
        partition=3,
        offset=7,
        timestamp=1.5,
        timestamp_type=1,
        headers=[("h", b"1")],
        key=key,
        value=value,
        checksum=None,
        tp=TP("scores", 3),
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"board-1", b"\xc3\x01avro"), (None, b"v"), (b"k", None), (b"", b"")],
)
async def test_events_equal_those_of_fausts_raw_codec(
    key: bytes | None, value: bytes | None
) -> None:
    app = faust.App("raw-schema-test", broker="memory://", store="memory://")
    lean = RawSchema().compile(app)
    faust_raw = faust.Schema(key_serializer="raw", value_serializer="raw").compile(app)
    msg = message(key, value)
    got, want = await lean(msg), await faust_raw(msg)
    assert (got.key, got.value, got.headers, got.message) == (
        want.key,
        want.value,
        want.headers,
        want.message,
    )
    assert got.value is value or got.value == value
