"""A minimal streaming reader of multipart/form-data request bodies.

aiohttp's own `MultipartReader` re-parses each part's Content-Disposition with a costly
routine and made multipart uploads about three times dearer than raw PUT uploads, so the
emulator reads the few shapes it needs itself: parts with headers and a body, delivered
in chunks without ever holding a whole body."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import unquote

from syncd.emulator.model import bad_input

__all__ = ["FormReader", "boundary_of", "disposition"]

_BOUNDARY = re.compile(r';\s*boundary=(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)
# One `; key=value` parameter of a Content-Disposition header; the value may be quoted.
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")
_PERCENT_ENCODED = re.compile(r"[A-Za-z0-9_.~-]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9_.~-]*)+")
_MAX_HEADERS = 64 * 1024


class ByteStream(Protocol):
    """What the reader needs from aiohttp's `StreamReader`."""

    async def readany(self) -> bytes:
        """Return the next available bytes, or b"" at the end."""
        ...


def boundary_of(content_type: str) -> str:
    """Return the boundary of a `multipart/form-data; boundary=...` header value.

    Raises:
        EmulatorError: not multipart/form-data, or no boundary.
    """
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise bad_input("the body must be multipart/form-data with a boundary")
    return match[1] or match[2]


def disposition(header: str) -> tuple[str, str | None]:
    """Return the field name and file name of a part's Content-Disposition header.

    An RFC 5987 `filename*=utf-8''...` is decoded with its charset. A plain `filename` is
    taken literally (browsers and `FormData(quote_fields=False)` send raw UTF-8), unless it
    looks percent-encoded: aiohttp's default client percent-encodes every byte outside
    `A-Za-z0-9_.-~` (RFC 7578 §4.2), so a value made only of those and `%XX` escapes, with
    at least one escape, is decoded.
    """
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(header):
        quoted = len(raw) >= 2 and raw[0] == raw[-1] == '"'
        params[key.lower()] = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if quoted else raw.strip()
    filename: str | None = None
    if "filename*" in params:
        charset, _, rest = params["filename*"].partition("'")
        _, _, encoded = rest.partition("'")
        try:
            filename = unquote(encoded, charset or "utf-8", "strict")
        except (LookupError, UnicodeDecodeError):
            raise bad_input("undecodable filename* in a form part") from None
    elif "filename" in params:
        filename = params["filename"]
        if _PERCENT_ENCODED.fullmatch(filename):
            filename = unquote(filename)
    return params.get("name", ""), filename


class FormReader:
    """Reads the parts of one multipart body in order.

    Call `next_part` for each part's headers, then (optionally) iterate `body`; whatever
    is left unread is skipped by the next `next_part`.

    Args:
        stream: the request body.
        boundary: the boundary from the Content-Type header.
    """

    def __init__(self, stream: ByteStream, boundary: str) -> None:
        self._stream = stream
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # A leading CRLF lets the first boundary, at the very start of the body, match the
        # same delimiter as the others; the preamble is then skipped like an unread body.
        self._buffer = bytearray(b"\r\n")
        self._in_body = True
        self._done = False

    async def _fill(self) -> None:
        chunk = await self._stream.readany()
        if not chunk:
            raise bad_input("the multipart body ended before its closing boundary")
        self._buffer += chunk

    async def next_part(self) -> dict[str, str] | None:
        """Return the next part's headers (lower-case names), or None after the last part."""
        if self._in_body:
            async for _ in self.body():
                pass
        if self._done:
            return None
        while len(self._buffer) < 2:
            await self._fill()
        if self._buffer.startswith(b"--"):
            self._done = True
            return None
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > _MAX_HEADERS:
                raise bad_input("multipart part headers are too long")
            await self._fill()
        # The block starts right after the delimiter with the CRLF that ends its line.
        lines = bytes(self._buffer[:end]).split(b"\r\n")[1:]
        del self._buffer[: end + 4]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            # Browsers send raw UTF-8 in filenames; HTTP itself only promises Latin-1.
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode(
                "utf-8", "replace"
            )
        self._in_body = True
        return headers

    async def body(self) -> AsyncIterator[bytes]:
        """Yield the current part's body in chunks, up to the next delimiter."""
        delimiter = self._delimiter
        keep = len(delimiter) - 1  # a delimiter may straddle two reads
        while True:
            index = self._buffer.find(delimiter)
            if index >= 0:
                if index:
                    yield bytes(self._buffer[:index])
                del self._buffer[: index + len(delimiter)]
                self._in_body = False
                return
            if len(self._buffer) > keep:
                cut = len(self._buffer) - keep
                yield bytes(self._buffer[:cut])
                del self._buffer[:cut]
            await self._fill()
