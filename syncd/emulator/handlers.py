"""Request handlers for the file and folder endpoints of the emulated API (listing, details,
download, delete, rename, move, folders), plus the helpers the upload handlers share."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from syncd.emulator.model import EmulatorError, Folder, StoredFile, bad_input
from syncd.emulator.server import Emulator
from syncd.emulator.shapes import Renderer, parse_flag, parse_int, parse_sort, parse_time_ms

__all__ = [
    "EMULATOR",
    "create_folder",
    "delete_file",
    "delete_files",
    "delete_folder",
    "delete_folders",
    "download",
    "emulator_of",
    "error_reply",
    "file_details",
    "folder_details",
    "json_body",
    "list_files",
    "list_folders",
    "move_file",
    "move_files",
    "rename_file",
    "renderer",
    "reply",
]

EMULATOR = web.AppKey("emulator", Emulator)
_MAX_BULK = 1000
_MAX_OFFSET = 10**9


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def reply(body: dict[str, Any], status: int = 200) -> web.Response:
    """Return a JSON reply."""
    return web.json_response(body, status=status, dumps=_dumps)


def error_reply(error: EmulatorError) -> web.Response:
    """Return the JSON reply of an `EmulatorError`, with its headers."""
    return web.json_response(error.body(), status=error.status, headers=error.headers, dumps=_dumps)


def emulator_of(request: web.Request) -> Emulator:
    """Return the emulator serving `request`."""
    return request.app[EMULATOR]


def renderer(request: web.Request) -> Renderer:
    """Return a renderer whose URLs use the origin the client connected to."""
    emu = emulator_of(request)
    return Renderer(f"{request.scheme}://{request.host}", emu.token, emu.options)


def not_found(what: str) -> EmulatorError:
    """Return the 404 for an unknown uuid (the code the real API uses, docs/dam-api.md §7.1)."""
    return EmulatorError(404, "ROUTE_NOT_FOUND", f"{what} not found", "check the uuid")


async def json_body(request: web.Request) -> dict[str, Any]:
    """Return the request's JSON object body, or raise a 400."""
    try:
        body = await request.json()
    except ValueError:
        raise bad_input("the body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_input("the body must be a JSON object")
    return body


def _uuid_list(body: dict[str, Any], key: str) -> list[str]:
    uuids = body.get(key)
    if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
        raise bad_input(f"{key} must be a list of uuid strings")
    if len(uuids) > _MAX_BULK:
        raise bad_input(f"at most {_MAX_BULK} uuids per request, got {len(uuids)}")
    return uuids


def _file(request: web.Request) -> StoredFile:
    found = emulator_of(request).store.file(request.match_info["uuid"])
    if found is None:
        raise not_found("file")
    return found


def _listed_folder(request: web.Request) -> Folder:
    path = request.query.get("folder", "/")
    folder = emulator_of(request).store.folder(path)
    if folder is None:
        raise EmulatorError(404, "FOLDER_NOT_FOUND", f"folder {path!r} not found", "check path")
    return folder


def _page(request: web.Request) -> tuple[int, int]:
    query = request.query
    limit = parse_int(query.get("limit"), "limit", default=1000, low=1, high=4000)
    offset = parse_int(query.get("offset"), "offset", default=0, low=0, high=_MAX_OFFSET)
    return limit, offset


# ---- files -------------------------------------------------------------------------------


async def list_files(request: web.Request) -> web.Response:
    """`GET /{token}/v4/files`: list and search (docs/dam-api.md §3.1).

    Files, counts and the subfolders' counters come from one view of the project, which
    lags behind writes with `listing_lag_s`; the folders themselves are always live.
    """
    query = request.query
    folder = _listed_folder(request)
    recursive = parse_flag(query.get("recursive"), "recursive")
    limit, offset = _page(request)
    emu = emulator_of(request)
    listing = emu.store.list_files(
        folder,
        recursive=recursive,
        q=query.get("q") or None,
        updated_after_ms=parse_time_ms(query.get("updated_after"), "updated_after"),
        sort=parse_sort(query.get("sort") or query.get("order")),
    )
    render = renderer(request)
    total = len(listing.files)
    sha1 = emu.options.listing_sha1
    body: dict[str, Any] = {
        "status": "success",
        "type": "LIST",
        "base": render.folder(folder, listing.counts(folder)),
        "files": [render.file(f, sha1=sha1) for f in listing.files[offset : offset + limit]],
    }
    if not recursive:
        children = sorted(folder.children.values(), key=lambda f: f.name)
        body["folders"] = [render.folder(child, listing.counts(child)) for child in children]
    body["stats"] = {
        "approx_files_count": total,
        "approx_files_size": listing.total_bytes,
        "approx_files_count_method": "COUNT_EXACT",
    }
    body["info"] = {"total_files_count": total}
    return reply(body)


async def file_details(request: web.Request) -> web.Response:
    """`GET /{token}/v4/files/{uuid}`."""
    return reply({"status": "success", "file": renderer(request).file(_file(request))})


async def download(request: web.Request) -> web.StreamResponse:
    """`GET /{token}/v4/get/{uuid}[/download]`: the file's content."""
    f = _file(request)
    content = emulator_of(request).store.blobs.get(f.uuid)
    if content is None:
        raise EmulatorError(
            410, "CONTENT_NOT_STORED", "this emulator keeps no content", "run without --no-content"
        )
    if isinstance(content, bytes):
        return web.Response(body=content, content_type=f.mime)
    return web.FileResponse(content, headers={"Content-Type": f.mime})


async def delete_file(request: web.Request) -> web.Response:
    """`DELETE /{token}/v4/files/{uuid}`."""
    f = _file(request)
    emulator_of(request).store.delete_files([f.uuid])
    return reply({"status": "success", "action": "file_deleted", "file_uuid": f.uuid})


async def delete_files(request: web.Request) -> web.Response:
    """`DELETE /{token}/v4/files` with `{"files_uuids": [...]}`; unknown uuids are skipped."""
    uuids = _uuid_list(await json_body(request), "files_uuids")
    deleted = emulator_of(request).store.delete_files(uuids)
    return reply({"status": "success", "action": "files_deleted", "files_uuids": deleted})


async def rename_file(request: web.Request) -> web.Response:
    """`PATCH /{token}/v4/files/{uuid}` with `{"name": "new.jpg"}`."""
    f = _file(request)
    name = (await json_body(request)).get("name")
    if not isinstance(name, str):
        raise bad_input("name must be a string")
    emulator_of(request).store.rename(f, name)
    body = {"status": "success", "action": "file_renamed", "file_uuid": f.uuid}
    return reply({**body, "file": renderer(request).file(f)})


def _moved(request: web.Request, files: Iterable[StoredFile]) -> web.Response:
    render = renderer(request)
    rendered = [render.file(f) for f in files]
    return reply(
        {
            "status": "success",
            "action": "files_moved",
            "files_uuids": [f["uuid"] for f in rendered],
            "files": rendered,
        }
    )


async def move_file(request: web.Request) -> web.Response:
    """`PUT /{token}/v4/files/{uuid}/folders/{folder_uuid}`."""
    f = _file(request)
    store = emulator_of(request).store
    folder = store.folder_by_uuid(request.match_info["folder_uuid"])
    if folder is None:
        raise not_found("folder")
    return _moved(request, store.move([f], folder))


async def move_files(request: web.Request) -> web.Response:
    """`POST /{token}/v4/files/move` with `{"files_uuids", "new_folder_name"}`.

    The target folder is created if missing; unknown uuids are skipped.
    """
    body = await json_body(request)
    uuids = _uuid_list(body, "files_uuids")
    target = body.get("new_folder_name")
    if not isinstance(target, str) or not target:
        raise bad_input("new_folder_name must be a folder path")
    store = emulator_of(request).store
    files = [f for u in uuids if (f := store.file(u)) is not None]
    return _moved(request, store.move(files, store.ensure_folder(target)))


# ---- folders -----------------------------------------------------------------------------


async def create_folder(request: web.Request) -> web.Response:
    """`POST /{token}/v4/folders` with `{"name": "/full/path"}`."""
    name = (await json_body(request)).get("name")
    if not isinstance(name, str) or not name.strip("/"):
        raise bad_input("name must be a folder path such as /a/b")
    folder = emulator_of(request).store.create_folder(name)
    return reply(
        {
            "status": "success",
            "action": "folder_created",
            "folder_uuid": folder.uuid,
            "folder": renderer(request).folder(folder),
        }
    )


async def list_folders(request: web.Request) -> web.Response:
    """`GET /{token}/v4/folders?folder=&recursive=&q=&limit=&offset=`."""
    query = request.query
    found = emulator_of(request).store.list_folders(
        _listed_folder(request),
        recursive=parse_flag(query.get("recursive"), "recursive"),
        q=query.get("q") or None,
    )
    limit, offset = _page(request)
    render = renderer(request)
    return reply(
        {
            "status": "success",
            "folders": [render.folder(f) for f in found[offset : offset + limit]],
            "info": {"total_folders_count": len(found)},
        }
    )


async def folder_details(request: web.Request) -> web.Response:
    """`GET /{token}/v4/folders/{uuid}`."""
    folder = emulator_of(request).store.folder_by_uuid(request.match_info["uuid"])
    if folder is None:
        raise not_found("folder")
    return reply({"status": "success", "folder": renderer(request).folder(folder)})


async def delete_folder(request: web.Request) -> web.Response:
    """`DELETE /{token}/v4/folders/{uuid}`: only an empty folder, never the root."""
    store = emulator_of(request).store
    folder = store.folder_by_uuid(request.match_info["uuid"])
    if folder is None:
        raise not_found("folder")
    store.delete_folders([folder.uuid])
    return reply({"status": "success", "action": "folder_deleted", "folder_uuid": folder.uuid})


async def delete_folders(request: web.Request) -> web.Response:
    """`DELETE /{token}/v4/folders` with `{"folders_uuids": [...]}`, all or none."""
    uuids = _uuid_list(await json_body(request), "folders_uuids")
    deleted = emulator_of(request).store.delete_folders(uuids)
    return reply({"status": "success", "action": "folders_deleted", "folders_uuids": deleted})
