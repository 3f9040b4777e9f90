"""streams/ stays pure: importing every module of it loads no client library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import streams

FORBIDDEN = ("faust", "aiokafka", "confluent_kafka", "redis", "psycopg")


def test_streams_imports_no_client_library() -> None:
    modules = [f"streams.{m.name}" for m in pkgutil.iter_modules(streams.__path__)]
    assert {"streams.ports", "streams.testing", "streams.model"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
