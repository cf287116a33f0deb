"""The multipart/form-data body of an upload, as the DAM's own uploader sends it
(docs/dam-api.md §2.1). Part of the DAM client: only `syncd.dam.client` uses it; it stands apart
so the encoding can be read and tested on its own."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterable
from typing import Any

import aiohttp

__all__ = ["Body", "multipart_body"]

Body = bytes | AsyncIterable[bytes]
"""An upload body: the whole content, or chunks streamed from disk."""


def multipart_body(name: str, content: Body) -> tuple[Any, dict[str, str] | None]:
    """The multipart/form-data body of an upload, as the DAM's own uploader sends it: an
    `info[files[]]` JSON part (before the file, so the name is known first) and the
    `files[]` part.

    An in-memory body is encoded here into one `bytes`: aiohttp's FormData builds a
    writer and three payload objects per request and writes them in pieces, which costs
    more CPU than the rest of a small upload. A streamed body goes through FormData.
    """
    info = json.dumps({"name": name})
    if not isinstance(content, bytes):
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("info[files[]]", info, content_type="application/json")
        form.add_field("files[]", content, filename=name, content_type="application/octet-stream")
        return form, None  # FormData sets its own Content-Type
    boundary = secrets.token_hex(16)
    while boundary.encode() in content:
        boundary = secrets.token_hex(16)
    quoted = (
        name.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "%0D").replace("\n", "%0A")
    )
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="info[files[]]"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{info}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="files[]"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    ctype = f"multipart/form-data; boundary={boundary}"
    return b"".join((head, content, tail)), {"Content-Type": ctype}
