"""A deliberately malicious DAM: the answers of `Options.malice`, which prove that a
hostile DAM cannot hang, bloat or crash syncd, nor make it show the key (issue 10). One
mode at a time:

* `echo_key`: every write is refused (400) with the request's key in `msg` and `hint`;
* `endless_pages`: every page of a file listing is full, of files never listed before
  (new uuids at every offset), while the counts stay honest;
* `repeat_pages`: every page of a file listing is the same full page;
* `uncounted_pages`: like `endless_pages`, with every count left out;
* `gzip_bomb`: file listings answer with a gzip body of about a MiB on the wire that
  inflates to 1 GiB (streamed from one precompressed block, so it costs the emulator
  next to nothing);
* `trickle`: uploads are read, not stored, and answered a byte at a time, for 10 minutes;
* `wrong_types`: each answer in turn carries another wrong type (`code: []`, `url` as a
  string, `size: NaN`, `files` not a list, deep nesting, a `Date` without a zone,
  garbage `Retry-After`, ...).

Requests the mode does not concern are answered normally: reads pass in `echo_key`, and
only listings of more than one file are bombed, so syncd gets past its key check.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from aiohttp import web

from syncd.emulator.model import EmulatorError
from syncd.emulator.server import Emulator

__all__ = ["BOMB_BYTES", "answer"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PAGES = ("endless_pages", "repeat_pages", "uncounted_pages")
_MiB = 1024 * 1024
BOMB_BYTES = 1024 * _MiB
"""What one gzip bomb inflates to."""
_TRICKLE_EVERY_S = 0.2  # well under any client's per-read timeout
_TRICKLE_FOR_S = 600.0  # then give up, so no handler outlives a test run for long
_NAMESPACE = uuid.UUID("6f1d8c3e-2b7a-4c1e-9a5d-0e4b3c2a1f00")


async def answer(
    request: web.Request, emu: Emulator, route: str, handler: _Handler
) -> web.StreamResponse:
    """Answer one API request the way `emu.options.malice` says."""
    mode = emu.options.malice
    writes = request.method != "GET"
    listing = request.method == "GET" and route == "/files"
    if mode == "echo_key" and writes:
        key = request.headers.get("X-Filerobot-Key", "")
        raise EmulatorError(
            400, "INVALID_REQUEST", f"request refused for key {key}", f"X-Filerobot-Key: {key}"
        )
    if mode == "trickle" and request.method in ("POST", "PUT") and route == "/files":
        return await _trickle(request)
    if mode == "gzip_bomb" and listing and request.query.get("limit") != "1":
        return await _bomb(request)
    response = await handler(request)
    raw = response.body if isinstance(response, web.Response) else None
    if not isinstance(raw, bytes) or response.content_type != "application/json":
        return response  # a download: nothing to twist
    if listing and mode in _PAGES:
        return _pages(request, json.loads(raw), mode)
    if mode == "wrong_types":
        turn = emu.stats.faults["wrong_types"]
        emu.stats.faults["wrong_types"] += 1
        return _wrong(json.loads(raw), response.status, turn)
    return response


# ---- pages that never end ------------------------------------------------------------------


def _fake_file(folder: str, n: int) -> dict[str, Any]:
    name = f"endless-{n:09d}.jpg"
    return {
        "uuid": str(uuid.uuid5(_NAMESPACE, str(n))),
        "name": name,
        "size": {"bytes": 1, "pretty": "1 B"},
        "hash": {"sha1": hashlib.sha1(str(n).encode()).hexdigest()},
        "created_at": "2026-01-01T00:00:00.000Z",
        "modified_at": "2026-01-01T00:00:00.000Z",
        "folder": {"uuid": str(uuid.uuid5(_NAMESPACE, folder)), "name": folder},
        "info": {"name": name},
    }


def _pages(request: web.Request, body: dict[str, Any], mode: str) -> web.Response:
    """The real listing `body` (its counts are honest) with a full page of made-up files."""
    limit = int(request.query.get("limit") or 1000)
    start = 0 if mode == "repeat_pages" else int(request.query.get("offset") or 0)
    folder = "/" + request.query.get("folder", "/").strip("/")
    body["files"] = [_fake_file(folder, start + i) for i in range(limit)]
    if mode == "uncounted_pages":
        body.pop("stats", None)
        body.pop("info", None)
        if isinstance(body.get("base"), dict):
            body["base"].pop("count", None)
    return web.json_response(body)


# ---- a gzip bomb -----------------------------------------------------------------------------


@functools.cache
def _bomb_parts(size: int) -> tuple[bytes, bytes, int, bytes]:
    """The gzip stream of `{"files":[` + `size` bytes of spaces + `]}`, as a head, a
    segment to repeat, how often, and a tail. Each segment is one MiB of spaces compressed
    after a full flush: deflate then forgets what came before, so every segment's bytes
    are the same, and only the trailer's CRC needs the whole content (computed once)."""
    block = b" " * _MiB
    prefix, suffix = b'{"status":"success","files":[', b"]}"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = z.compress(prefix) + z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    segment = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    blocks = max(1, size // _MiB)
    ending = z.compress(suffix) + z.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(suffix, crc)
    total = len(prefix) + blocks * _MiB + len(suffix)
    trailer = crc.to_bytes(4, "little") + (total % 2**32).to_bytes(4, "little")
    return head, segment, blocks - 1, ending[:-8] + trailer


async def _bomb(request: web.Request) -> web.StreamResponse:
    head, segment, repeats, tail = _bomb_parts(BOMB_BYTES)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(head) + repeats * len(segment) + len(tail)),
        }
    )
    await response.prepare(request)
    batch = 64
    try:
        await response.write(head)
        for i in range(0, repeats, batch):
            await response.write(segment * min(batch, repeats - i))
        await response.write(tail)
    except ConnectionError:
        pass  # the client stopped reading: the point of the exercise
    return response


# ---- a trickled answer -----------------------------------------------------------------------


async def _trickle(request: web.Request) -> web.StreamResponse:
    async for _chunk in request.content.iter_any():
        pass  # read the upload, keep nothing
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    deadline = time.monotonic() + _TRICKLE_FOR_S
    try:
        await response.write(b'{"status":"success"')
        while time.monotonic() < deadline:
            await anyio.sleep(_TRICKLE_EVERY_S)
            await response.write(b" ")
    except ConnectionError:
        pass
    return response


# ---- wrong types -----------------------------------------------------------------------------


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    files = body.get("files")
    found = [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []
    if isinstance(body.get("file"), dict):
        found.append(body["file"])
    return found


# Each twists an answer's body in place; field-level ones leave the asset usable, item-level
# ones make it unusable (syncd skips it), body-level ones break the whole answer.
_FIELD_TWISTS: tuple[tuple[str, Any], ...] = (
    ("size", float("nan")),
    ("size", float("inf")),
    ("hash", ["not", "an", "object"]),
    ("created_at", {"not": "a string"}),
    ("info", "not an object"),
)
_ITEM_TWISTS: tuple[tuple[str, Any], ...] = (
    ("uuid", 12345),
    ("name", ["a", "list"]),
    ("folder", "/a/string"),
    ("url", "a string"),
    ("uuid", None),
)


def _twist_items(body: dict[str, Any], turn: int) -> None:
    for i, item in enumerate(_items(body)):
        twists = _ITEM_TWISTS if (turn + i) % 3 == 0 else _FIELD_TWISTS
        key, value = twists[(turn + i) % len(twists)]
        item[key] = value
        if key == "url":
            item["folder"] = None  # so the url is what syncd falls back on


def _wrong(body: dict[str, Any], status: int, turn: int) -> web.Response:
    """The answer `body` with the `turn`-th kind of wrong type."""
    headers: dict[str, str] = {}
    kind = turn % 12
    if kind == 0:
        body["code"] = []
    elif kind == 1:
        _twist_items(body, turn)
    elif kind == 2:
        body["files" if "files" in body else "file"] = "not a list"
    elif kind == 3:
        headers["Date"] = "garbage, 99 Foo 12345 99:99:99"
    elif kind == 4:
        headers["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S", time.gmtime())  # no zone
        _twist_items(body, turn)
    elif kind == 5:
        # 503 rather than 429: a 429 would (rightly) teach syncd's pacer a lower rate.
        status, headers["Retry-After"] = 503, "soon"
    elif kind == 6:
        status, headers["Retry-After"] = 503, "-5"
    elif kind == 7:
        deep = 100_000
        return web.Response(body=b"[" * deep + b"]" * deep, content_type="application/json")
    elif kind == 8:
        body = {
            "status": "error",
            "code": "SAME_ASSET_EXISTS_SKIP_UPLOAD",
            "existing_file_uuid": {},
        }
        status = 409
    elif kind == 9:
        body.update(stats=[], info={"total_files_count": "many"}, base="root", status=5)
    elif kind == 10:
        return web.json_response([1, 2, 3])
    else:
        body.update(status="error", code={"not": "a code"}, msg=["not", "text"])
        status = 200
    return web.json_response(body, status=status, headers=headers)
