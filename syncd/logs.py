"""Logging setup: structlog everywhere, a coloured console on a terminal, JSON lines
(one event per line, snake_case names) otherwise, which suits journald. Records from
stdlib loggers (aiohttp, watchfiles) go through the same chain, and every secret
registered with `redact()` is masked in every event before it is rendered."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["Format", "configure", "redact", "scrub"]

Format = Literal["auto", "console", "json"]

_secrets: set[str] = set()


def redact(secret: str) -> None:
    """Mask `secret` in every log event from now on."""
    if secret:
        _secrets.add(secret)


def scrub(text: str) -> str:
    """`text` with every registered secret masked (for messages printed outside logs)."""
    masked = _mask(text)
    assert isinstance(masked, str)
    return masked


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        for s in _secrets:
            if s in value:
                value = value.replace(s, "***")
        return value
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v) for v in value)
    return value


def _redact_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _secrets:
        for k, v in event.items():
            event[k] = _mask(v)
    return event


def configure(
    level: str = "info",
    fmt: Format = "auto",
    *,
    stream: TextIO | None = None,
    cache: bool = False,
) -> bool:
    """Configure structlog and the stdlib root logger. Returns True when the console
    renderer (a terminal) was chosen."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        # Exceptions are rendered to text before redaction, so a secret in an exception
        # message is masked like any other value.
        tail: list[Any] = [structlog.processors.format_exc_info, _redact_processor]
    else:
        renderer = structlog.processors.JSONRenderer()
        tail = [structlog.processors.dict_tracebacks, _redact_processor]
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # watchfiles logs every batch at INFO and aiohttp's access log is noise for a client.
    logging.getLogger("watchfiles").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return console
