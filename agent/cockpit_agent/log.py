"""Logging: readable text on a terminal, JSON under systemd, journal fields STEP= and ACTION=."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "text", "json"]

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def _journal_sender() -> Any:
    """systemd.journal.send when systemd-python is importable and we run under systemd."""
    if not os.environ.get("JOURNAL_STREAM"):
        return None
    try:
        from systemd import journal  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    return journal.send


class JournalRenderer:
    """Send each event to the journal with STEP=/ACTION= fields; MESSAGE is the JSON event."""

    def __init__(self, send: Any) -> None:
        self._send = send

    def __call__(self, _: Any, method: str, event: MutableMapping[str, Any]) -> str:
        """Render to JSON, send with structured fields, and drop the event from stderr."""
        fields = {"PRIORITY": str(_PRIORITY.get(method, 6)), "SYSLOG_IDENTIFIER": "cockpit-agent"}
        for key in ("step", "action"):
            if key in event:
                fields[key.upper()] = str(event[key])
        self._send(json.dumps(event, default=str, sort_keys=True), **fields)
        raise structlog.DropEvent


def configure(fmt: LogFormat = "auto", verbose: int = 0) -> None:
    """Set up structlog once per process."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    under_systemd = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    if fmt == "auto":
        fmt = "json" if under_systemd or not sys.stderr.isatty() else "text"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    sender = _journal_sender() if fmt == "json" else None
    if sender is not None:
        processors.append(JournalRenderer(sender))
    elif fmt == "json":
        processors.append(structlog.processors.JSONRenderer(default=str, sort_keys=True))
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
