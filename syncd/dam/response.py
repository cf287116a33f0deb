"""Reading a DAM response within bounds: the byte cap on every body (counted after
decompression), the decoding of a body that may hold anything into a JSON object, and the
deadline of an upload. Part of the DAM client: only `syncd.dam.client` uses it; it stands apart so
the limits can be read and tested on their own (docs/dam-api.md §7).

A hostile or broken DAM must cost syncd one failed request, never unbounded memory or
time: a body past the cap, a body that is not a JSON object, and JSON nested too deeply to
parse are each a `TransientDamError` for that request (retried, then the file is parked or
the folder's run fails).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import aiohttp

from syncd.errors import TransientDamError

__all__ = [
    "MAX_BODY_BYTES",
    "MIN_UPLOAD_RATE",
    "decode_body",
    "note_rate_headers",
    "read_body",
    "upload_deadline",
    "upload_timeout",
]

KiB = 1024
MiB = 1024 * KiB

MAX_BODY_BYTES = 16 * MiB
"""The most bytes of one response body syncd reads, counted after decompression. A listing
page of 1,000 files (syncd's page size) is a few hundred KB and one of 4,000 (the largest
page the DAM serves) a few MiB, so 16 MiB leaves ample room for a verbose DAM, while a
hostile one (a gzip bomb, an endless body) costs at most that much per request in flight."""

MIN_UPLOAD_RATE = 64 * KiB
"""Bytes per second below which an upload has stalled. An upload attempt may take
`timeout_s` plus its size at this rate (a 1 GiB file: about 4.5 hours), so a DAM that
trickles its reply (or reads the body a byte at a time) fails the attempt instead of
holding it forever; 64 KiB/s is far below any link syncd is meant for."""

_CHUNK = 256 * KiB
_RATE_HEADERS = 32  # kept at most, however many names a DAM invents
# One of these comes with every rate-limit scheme in use (the IETF draft, GitHub-style
# X-RateLimit-*, Retry-After); only then are all of an answer's headers walked.
_RATE_HINTS = (
    "Retry-After",
    "RateLimit",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Policy",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)


async def read_body(resp: aiohttp.ClientResponse, what: str, cap: int | None = None) -> bytearray:
    """The body of `resp`, decompressed, read in chunks; `cap` defaults to
    `MAX_BODY_BYTES`.

    aiohttp inflates a compressed body a bounded chunk at a time as it is read, so reading
    in chunks and stopping past `cap` bounds memory whatever the compression ratio.

    Raises:
        TransientDamError: the body is larger than `cap` bytes; the connection is closed
            rather than drained.
    """
    cap = MAX_BODY_BYTES if cap is None else cap
    length = resp.content_length
    if length is not None and length <= cap and not resp.headers.get("Content-Encoding"):
        # The common case, read at once: an uncompressed body whose length is known cannot
        # grow past it (aiohttp reads exactly Content-Length bytes).
        return bytearray(await resp.read())
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > cap:
            resp.close()
            raise TransientDamError(
                f"{what}: the response is larger than {cap / MiB:g} MiB", status=resp.status
            )
    return body


def _finite(text: str) -> float | None:
    # `NaN`, `Infinity` and numbers like 1e999 are no JSON numbers; they read as absent.
    value = float(text)
    return value if math.isfinite(value) else None


def _absent(_text: str) -> None:
    return None


# One decoder for every body: `json.loads` with hooks would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_absent, parse_float=_finite)


def decode_body(raw: bytes | bytearray, status: int, what: str) -> dict[str, Any]:
    """The JSON object in `raw`; `{}` for a failure status whose body is none (the status
    says enough). Non-finite numbers (`NaN`, `Infinity`, `1e999`) decode as null.

    Raises:
        TransientDamError: a 2xx whose body is empty, not JSON, not an object, or nested
            too deeply to parse.
    """
    ok = 200 <= status < 300
    if not raw:
        if ok:
            raise TransientDamError(f"{what}: empty response", status=status)
        return {}
    try:
        body = _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        body = None
    if not isinstance(body, dict):
        body = {}
    if ok and not body:
        raise TransientDamError(f"{what}: response is not JSON", status=status)
    return body


def upload_deadline(size: int | None, timeout_s: float) -> float | None:
    """The longest one upload attempt of `size` bytes may take, reply included:
    `timeout_s` plus the size at `MIN_UPLOAD_RATE`. None when the size is unknown; only
    the per-read timeout applies then."""
    if size is None:
        return None
    return timeout_s + max(0, size) / MIN_UPLOAD_RATE


def upload_timeout(size: int | None, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """The timeouts of one upload attempt, from those of other requests (`total` is the
    configured `timeout_s`): each read may take that long, and the whole attempt
    `upload_deadline`. A big upload may take longer than any fixed total; a DAM trickling
    its reply a byte at a time keeps every read alive, and only the deadline ends it."""
    limit = timeout.total
    if limit is None:
        return timeout
    return aiohttp.ClientTimeout(
        total=upload_deadline(size, limit), sock_connect=timeout.sock_connect, sock_read=limit
    )


def note_rate_headers(seen: dict[str, str], headers: Mapping[str, str]) -> None:
    """Keep an answer's rate-limit headers in `seen` (`syncd probe` reports them), bounded
    in number and length."""
    for hint in _RATE_HINTS:
        if hint in headers:
            break
    else:
        return  # the usual answer: a few case-insensitive lookups, no walk of every header
    for name, value in headers.items():
        lower = name.lower()
        if not (lower.startswith(("x-ratelimit", "ratelimit")) or lower == "retry-after"):
            continue
        if name in seen or len(seen) < _RATE_HEADERS:
            seen[name] = value[:200]
