"""Small helpers shared by the command modules: time options, metadata pairs."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import click

from streams.events import (
    Operator,
)
from streams.settings import Settings
from streams.validation import parse_time

OPERATORS = [o.value for o in Operator]


def wall_ms() -> int:
    return int(time.time() * 1000)


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_option(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def parse_meta(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value (got {pair!r})", param_hint="--meta")
        out[key] = value
    return out


# --- topics -------------------------------------------------------------------------------


def config_topic(settings: Settings) -> str:
    return settings.topic(settings.config_topic)
