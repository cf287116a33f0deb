"""Logging setup: structlog everywhere, a coloured console on a terminal, JSON lines
(one event per line, snake_case names) otherwise, which suits journald. Records from
stdlib loggers (aiohttp, watchfiles) go through the same chain, and every secret
registered with `redact()` is masked in every event before it is rendered: the whole
secret, and any run of `_FRAGMENT` or more of its characters, so a message cut short
(a truncated traceback value, a DAM echo cut at some length) cannot leak part of it.

Also `escape()`, for text bound for a terminal: file names and DAM text may hold control
characters (ANSI escapes, a carriage return that hides a line, a fake new line)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["Format", "configure", "escape", "redact", "scrub"]

Format = Literal["auto", "console", "json"]

_secrets: set[str] = set()
# A run of this many characters of a secret is masked wherever it stands: short enough to
# catch a key cut at a truncation, long enough not to mask ordinary words.
_FRAGMENT = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def redact(secret: str) -> None:
    """Mask `secret` in every log event, and in everything `scrub` sees, from now on."""
    if secret:
        _secrets.add(secret)


def scrub(text: str) -> str:
    """`text` with every registered secret masked, whole or in part (for text that is
    stored or printed outside logs: DAM messages, parked reasons, the summary)."""
    masked = _mask(text)
    assert isinstance(masked, str)
    return masked


def escape(text: str) -> str:
    """`text` with control characters (C0, DEL, C1) and lone surrogates shown as escapes
    such as `\\x1b`, so a name or a DAM message cannot move the cursor or forge a line."""
    return _CONTROL.sub(_escaped, text)


def _escaped(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _mask_text(value: str) -> str:
    for secret in _secrets:
        if secret in value:
            value = value.replace(secret, "***")
        if len(secret) > _FRAGMENT:
            value = _mask_fragments(value, secret)
    return value


def _mask_fragments(value: str, secret: str) -> str:
    """Mask every run of at least `_FRAGMENT` characters that `value` shares with
    `secret`: each window of the secret is looked for, and each hit widened to the
    longest run the two share there."""
    spans: list[tuple[int, int]] = []
    for i in range(len(secret) - _FRAGMENT + 1):
        start = value.find(secret[i : i + _FRAGMENT])
        while start != -1:
            lo, hi, k, j = start, start + _FRAGMENT, i + _FRAGMENT, i
            while hi < len(value) and k < len(secret) and value[hi] == secret[k]:
                hi, k = hi + 1, k + 1
            while lo > 0 and j > 0 and value[lo - 1] == secret[j - 1]:
                lo, j = lo - 1, j - 1
            spans.append((lo, hi))
            start = value.find(secret[i : i + _FRAGMENT], start + 1)
    if not spans:
        return value
    out, at = [], 0
    for lo, hi in sorted(spans):
        if hi <= at:
            continue
        out.append(value[at:lo] if lo > at else "")
        out.append("***" if lo >= at else "")
        at = hi
    out.append(value[at:])
    return "".join(out)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _mask_text(value) if _secrets else value
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v) for v in value)
    return value


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
