"""Log lines: JSON objects with the request id, or text with the id appended."""

from __future__ import annotations

import json
import logging

from processors import logs
from streams.settings import Settings


def record(msg: str = "served %s", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("processors.test", logging.INFO, __file__, 1, msg, args or None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_the_request_id_and_extras() -> None:
    token = logs.request_id.set("rid-1")
    try:
        rec = record("served %s", "/health", status=200)
        assert logs.RequestIdFilter().filter(rec)
        out = json.loads(logs.JsonFormatter().format(rec))
    finally:
        logs.request_id.reset(token)
    assert out["message"] == "served /health" and out["request_id"] == "rid-1"
    assert out["status"] == 200 and out["level"] == "INFO" and out["logger"] == "processors.test"
    assert out["time"].endswith("+00:00")


def test_text_lines_append_the_request_id_only_when_there_is_one() -> None:
    config = logs.dict_config(Settings(log_format="text"), "INFO")
    fmt = logging.Formatter(config["formatters"]["default"]["format"])
    rec = record("plain")
    logs.RequestIdFilter().filter(rec)
    assert fmt.format(rec).endswith("processors.test: plain")
    token = logs.request_id.set("rid-2")
    try:
        rec = record("inside")
        logs.RequestIdFilter().filter(rec)
    finally:
        logs.request_id.reset(token)
    assert fmt.format(rec).endswith("inside [request_id=rid-2]")


def test_exceptions_become_one_field() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = json.loads(logs.JsonFormatter().format(rec))
    assert "ValueError: bad" in out["exc"] and out["message"] == "failed"
