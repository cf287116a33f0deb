"""The emulator's aiohttp application: the route table, the API middleware (token check,
authentication, permissions, fault injection, error bodies, statistics) and the unauthenticated
`/_emulator/` control endpoints."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
from aiohttp import web

from syncd.emulator import handlers as h
from syncd.emulator import malice
from syncd.emulator.faults import Faults
from syncd.emulator.handlers import EMULATOR, emulator_of, error_reply, reply
from syncd.emulator.model import EmulatorError
from syncd.emulator.permissions import denied
from syncd.emulator.server import Emulator
from syncd.emulator.uploads import DropConnection, upload_multipart, upload_stream

__all__ = ["make_app"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_API = "/{token}/v4"
_FAULTS: tuple[tuple[str, Callable[[Faults], EmulatorError | None]], ...] = (
    ("server_error", Faults.server_error),
    ("error_body", Faults.error_body),
)


def _route_not_found(msg: str = "no such route") -> EmulatorError:
    return EmulatorError(404, "ROUTE_NOT_FOUND", msg, "check the URL and the project token")


def _from_http_exception(exc: web.HTTPException) -> EmulatorError:
    """Give aiohttp's own errors (no route, wrong method, body too large) the DAM's shape."""
    if exc.status == 404:
        return _route_not_found()
    hint = ""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        hint = f"use {', '.join(sorted(exc.allowed_methods))}"
    return EmulatorError(exc.status, exc.reason.upper().replace(" ", "_"), exc.reason, hint)


async def _guarded(
    request: web.Request, handler: _Handler, emu: Emulator, route: str
) -> web.StreamResponse:
    """Run an API handler behind the token check, authentication, the key's permissions and
    injected faults."""
    if (delay := emu.faults.delay_s()) > 0:
        await anyio.sleep(delay)
    if request.match_info.get("token") != emu.token:
        raise _route_not_found("unknown project token")
    key = request.headers.get("X-Filerobot-Key", "")
    if key != emu.key and key not in emu.extra_keys:
        raise EmulatorError(401, "UNAUTHORIZED", "missing or invalid X-Filerobot-Key", "check key")
    if emu.key_revoked:
        # Echoing the key is what some APIs do; syncd must mask it wherever it shows up.
        raise EmulatorError(401, "KEY_EXPIRED", f"key {emu.key} was revoked", "use a new key")
    if (refused := denied(emu.options.denied_permissions, request.method, route)) is not None:
        raise refused
    if (limited := emu.faults.rate_limited(key)) is not None:
        emu.stats.rate_limited += 1
        raise limited
    for kind, draw in _FAULTS:
        if (fault := draw(emu.faults)) is not None:
            emu.stats.faults[kind] += 1
            raise fault
    if emu.options.malice != "off":
        return await malice.answer(request, emu, route, handler)
    return await handler(request)


@web.middleware
async def _api_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Wrap every request: API routes get the guards and JSON errors; control routes pass."""
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else None
    if pattern is not None and pattern.startswith("/_emulator/"):
        return await handler(request)
    emu = emulator_of(request)
    # The route below /{token}/v4, such as /files/{uuid}; None for anything else.
    route = pattern[len(_API) :] if pattern is not None and pattern.startswith(_API) else None
    emu.stats.requests[f"{request.method} {pattern if route is not None else '(unrouted)'}"] += 1
    emu.stats.arrived(time.monotonic())
    try:
        if route is not None:
            response = await _guarded(request, handler, emu, route)
        else:
            response = await handler(request)
    except EmulatorError as error:
        response = error_reply(error)
    except web.HTTPException as exc:
        response = error_reply(_from_http_exception(exc))
    except DropConnection as drop:
        emu.stats.faults[drop.kind] += 1
        # Closing the transport makes the client see a disconnect; aiohttp then fails to
        # write this placeholder response and drops it quietly.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    emu.stats.statuses[response.status] += 1
    emu.stats.answered = time.monotonic()
    return response


# ---- control endpoints (no auth, no faults) ---------------------------------------------


async def _control_files(request: web.Request) -> web.Response:
    return reply({"files": [r.as_dict() for r in emulator_of(request).files()]})


async def _control_stats(request: web.Request) -> web.Response:
    emu = emulator_of(request)
    # The root's recursive counter: benchmarks poll this, and listing every file would not do.
    return reply({**emu.stats.as_dict(), "files_count": emu.store.root.files_recursive})


async def _control_options(request: web.Request) -> web.Response:
    emu = emulator_of(request)
    if request.method == "POST":
        try:
            changes = await h.json_body(request)
            emu.configure(changes)
        except (ValueError, EmulatorError) as exc:
            return reply({"status": "error", "code": "BAD_OPTIONS", "msg": str(exc)}, 400)
    return reply({"status": "success", "options": emu.options.as_dict()})


async def _control_revoke(request: web.Request) -> web.Response:
    emulator_of(request).revoke_key()
    return reply({"status": "success", "action": "key_revoked"})


async def _control_restore(request: web.Request) -> web.Response:
    emulator_of(request).restore_key()
    return reply({"status": "success", "action": "key_restored"})


async def _control_reset(request: web.Request) -> web.Response:
    emulator_of(request).reset()
    return reply({"status": "success", "action": "reset"})


def make_app(emu: Emulator) -> web.Application:
    """Return the aiohttp application serving `emu`."""
    # client_max_size bounds only request.json()/post(); uploads are streamed part by part.
    app = web.Application(middlewares=[_api_middleware], client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = emu
    app.router.add_routes(
        [
            web.get("/_emulator/files", _control_files),
            web.get("/_emulator/stats", _control_stats),
            web.get("/_emulator/options", _control_options),
            web.post("/_emulator/options", _control_options),
            web.post("/_emulator/revoke", _control_revoke),
            web.post("/_emulator/restore", _control_restore),
            web.post("/_emulator/reset", _control_reset),
            web.post(f"{_API}/files", upload_multipart),
            web.put(f"{_API}/files", upload_stream),
            web.get(f"{_API}/files", h.list_files),
            web.delete(f"{_API}/files", h.delete_files),
            web.post(f"{_API}/files/move", h.move_files),
            web.get(f"{_API}/files/{{uuid}}", h.file_details, allow_head=False),
            web.delete(f"{_API}/files/{{uuid}}", h.delete_file),
            web.patch(f"{_API}/files/{{uuid}}", h.rename_file),
            web.put(f"{_API}/files/{{uuid}}/folders/{{folder_uuid}}", h.move_file),
            web.get(f"{_API}/get/{{uuid}}", h.download, allow_head=False),
            web.get(f"{_API}/get/{{uuid}}/download", h.download, allow_head=False),
            web.post(f"{_API}/folders", h.create_folder),
            web.get(f"{_API}/folders", h.list_folders),
            web.delete(f"{_API}/folders", h.delete_folders),
            web.get(f"{_API}/folders/{{uuid}}", h.folder_details, allow_head=False),
            web.delete(f"{_API}/folders/{{uuid}}", h.delete_folder),
        ]
    )
    return app
