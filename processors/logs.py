"""Logging setup shared by the CLI, the gateway and the workers: text or JSON lines.

``LEADERBOARD_LOG_FORMAT=json`` writes one JSON object per line (``time``, ``level``,
``logger``, ``message``, ``request_id`` when a gateway request is being served, ``exc`` with
the traceback), for log shippers that index fields; ``text`` (the default) stays readable.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

from streams.settings import Settings

__all__ = [
    "TEXT_FORMAT",
    "JsonFormatter",
    "RequestIdFilter",
    "configure",
    "dict_config",
    "request_id",
]

#: The request id of the HTTP request being served (set by the gateway), else None.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(request_suffix)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``record.request_id``, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        record.request_id = rid
        record.request_suffix = f" [request_id={rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO-8601), level, logger, message, extras."""

    #: ``extra=`` fields copied into the object when a record carries them.
    EXTRAS = ("request_id", "method", "path", "status", "duration_ms", "client")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.EXTRAS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def dict_config(settings: Settings, level: int | str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``settings.log_format``: one stderr handler on root."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    level_name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": sys.stderr,
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level_name, "handlers": ["default"]},
        # uvicorn's loggers write through root (their own handlers would bypass the format)
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure(settings: Settings, level: int | str) -> None:
    """Configure the process's logging from ``settings.log_format`` at ``level``."""
    logging.config.dictConfig(dict_config(settings, level))


def worker_config(settings: Settings, level: str) -> dict[str, Any] | None:
    """The ``logging_config`` of a Faust worker: ours for JSON, None (Faust's own) for text."""
    return dict_config(settings, level) if settings.log_format == "json" else None
