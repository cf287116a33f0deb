"""Logging setup: structlog everywhere, a coloured console on a terminal, JSON lines
(one event per line, snake_case names) otherwise, which suits journald. Records from
stdlib loggers (aiohttp, watchfiles) go through the same chain. Every event names its
logger (the module it comes from), and every secret registered with
`syncd.redact.redact()` is masked in it before it is rendered, control characters
escaped on a terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from functools import partial
from typing import Any, Literal, TextIO

import structlog

from syncd.redact import escape, mask, secrets_registered

__all__ = ["Format", "configure"]

Format = Literal["auto", "console", "json"]


def _escape_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # The console renderer writes strings as they are; JSON escapes them by itself.
    for k, v in event.items():
        if isinstance(v, str):
            event[k] = escape(v)
    return event


def _redact_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if secrets_registered():
        for k, v in event.items():
            event[k] = mask(v)
    return event


class _NamedLogger(structlog.PrintLogger):
    """A print logger that knows the name `structlog.get_logger(__name__)` gave it."""

    def __init__(self, file: TextIO, name: str = "syncd", *args: Any) -> None:
        super().__init__(file)
        self.name = name


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
        # `logger`: the module an event comes from (`syncd.dam.client`, `aiohttp.client`).
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        # Exceptions are rendered to text before redaction, so a secret in an exception
        # message is masked like any other value.
        tail: list[Any] = [
            structlog.processors.format_exc_info,
            _redact_processor,
            _escape_processor,
        ]
    else:
        renderer = structlog.processors.JSONRenderer()
        # No locals in tracebacks: they are cut at a length that could cut a secret, and
        # they may hold file contents or DAM bodies.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        tail = [tracebacks, _redact_processor]
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=partial(_NamedLogger, out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
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
