"""Upload handlers of the emulated API: multipart `POST /{token}/v4/files` and streamed
`PUT /{token}/v4/files?filename=`. Bodies are read in chunks and hashed as they arrive;
only the stored content is ever held whole."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import hdrs, web

from syncd.emulator.blobs import Blobs, Content
from syncd.emulator.formdata import FormReader, boundary_of, disposition
from syncd.emulator.handlers import emulator_of, renderer, reply
from syncd.emulator.model import EmulatorError, StoredFile, bad_input, normalize_folder

__all__ = ["DropConnection", "upload_multipart", "upload_stream"]

_MAX_FIELD = 1024 * 1024


class DropConnection(Exception):
    """Raised by an upload handler to have the middleware drop the connection unanswered.

    Args:
        kind: the fault, for the statistics (`reset_before_commit`, `reset_after_commit`).
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(slots=True)
class _Staged:
    """One received file waiting to be stored."""

    name: str
    info_type: str | None
    sha1: str
    size: int
    content: Content


async def _receive(chunks: AsyncIterator[bytes], blobs: Blobs) -> tuple[str, int, Content]:
    """Hash and keep (per the content mode) a stream of chunks; return sha1, size, content."""
    hasher = hashlib.sha1()
    size = 0
    if blobs.mode == "disk":
        path = blobs.staging_path()
        try:
            async with await anyio.open_file(path, "wb") as out:
                async for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    await out.write(chunk)
        except BaseException:
            Blobs.discard(path)
            raise
        return hasher.hexdigest(), size, path
    kept: list[bytes] | None = [] if blobs.mode == "memory" else None
    async for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
        if kept is not None:
            kept.append(chunk)
    return hasher.hexdigest(), size, b"".join(kept) if kept is not None else None


def _field_of(name: str, prefix: str) -> str | None:
    """Return `X` for a part named `prefix[X]`, else None."""
    if name.startswith(prefix + "[") and name.endswith("]"):
        return name[len(prefix) + 1 : -1]
    return None


async def _read_form(request: web.Request, blobs: Blobs) -> list[_Staged]:
    """Receive every file part of a multipart body, applying `info[X]`/`name[X]` parts."""
    reader = FormReader(request.content, boundary_of(request.headers.get(hdrs.CONTENT_TYPE, "")))
    names: dict[str, str] = {}
    types: dict[str, str] = {}
    staged: list[_Staged] = []
    try:
        while (headers := await reader.next_part()) is not None:
            field, filename = disposition(headers.get("content-disposition", ""))
            if filename is None and (target := _field_of(field, "info")) is not None:
                info = _json_object(await _small_text(reader), field)
                if isinstance(info.get("name"), str):
                    names[target] = info["name"]
                if isinstance(info.get("type"), str):
                    types[target] = info["type"]
            elif filename is None and (target := _field_of(field, "name")) is not None:
                names[target] = await _small_text(reader)
            elif filename is not None or field in names:
                name = names.get(field) or filename or ""
                sha1, size, content = await _receive(reader.body(), blobs)
                staged.append(_Staged(name, types.get(field), sha1, size, content))
            # Other parts (meta[X], tags[X], ...) are accepted and skipped unread.
    except BaseException:
        for item in staged:
            Blobs.discard(item.content)
        raise
    return staged


async def _small_text(reader: FormReader) -> str:
    """Return a short text part (`info[X]`, `name[X]`) as a string."""
    data = bytearray()
    async for chunk in reader.body():
        data += chunk
        if len(data) > _MAX_FIELD:
            raise bad_input("form field too long")
    return data.decode("utf-8", "replace")


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise bad_input(f"part {field} must be JSON") from None
    if not isinstance(value, dict):
        raise bad_input(f"part {field} must be a JSON object")
    return value


async def _commit(request: web.Request, folder: str, staged: list[_Staged]) -> web.Response:
    """Store received files and reply, injecting the commit faults."""
    emu = emulator_of(request)
    stored: list[StoredFile] = []
    errors: list[dict[str, Any]] = []
    try:
        if emu.faults.reset_before_commit():
            raise DropConnection("reset_before_commit")
        limit = emu.options.max_upload_bytes
        for item in staged:
            if limit and item.size > limit:
                raise EmulatorError(
                    413,
                    "ERR_FILE_TOO_LARGE",
                    f"{item.name} is {item.size} bytes; the limit is {limit}",
                    "upload a smaller file",
                )
            content, item.content = item.content, None
            try:
                stored.append(
                    emu.store.upload(
                        folder,
                        item.name,
                        sha1=item.sha1,
                        size=item.size,
                        content=content,
                        info_type=item.info_type,
                    )
                )
            except EmulatorError as error:
                if len(staged) == 1:
                    raise
                errors.append(error.body())
            else:
                emu.stats.uploads_committed += 1
    finally:
        for item in staged:
            Blobs.discard(item.content)
    if emu.faults.reset_after_commit():
        raise DropConnection("reset_after_commit")
    render = renderer(request)
    body: dict[str, Any] = {"status": "success"}
    if len(staged) == 1:
        body["file"] = render.file(stored[0])
    else:
        body["files"] = [render.file(f) for f in stored]
    body["info"] = {
        "uploaded_files": len(stored),
        "files_count": len(staged),
        "version": "emulator",
    }
    if errors:
        body["errors"] = errors
    return reply(body)


async def upload_multipart(request: web.Request) -> web.Response:
    """`POST /{token}/v4/files?folder=/a/b` with a multipart/form-data body.

    The file part may have any field name. An `info[X]` JSON part (`{"name", "type"}`) or
    a `name[X]` text part sent before file part `X` overrides its name. With several file
    parts the reply has `files` instead of `file`, and `errors` lists refused ones.
    """
    folder = normalize_folder(request.query.get("folder", "/"))
    staged = await _read_form(request, emulator_of(request).store.blobs)
    if not staged:
        raise bad_input("no file part in the form")
    return await _commit(request, folder, staged)


async def upload_stream(request: web.Request) -> web.Response:
    """`PUT /{token}/v4/files?folder=/a&filename=n.jpg` with the raw content as the body."""
    folder = normalize_folder(request.query.get("folder", "/"))
    name = request.query.get("filename")
    if not name:
        raise bad_input("the filename query parameter is required")
    sha1, size, content = await _receive(
        request.content.iter_any(), emulator_of(request).store.blobs
    )
    return await _commit(request, folder, [_Staged(name, None, sha1, size, content)])
