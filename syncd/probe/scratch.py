"""The ground `syncd probe` stands on: the `Findings` it fills in, the ledger of which
permissions the key showed it has, and its scratch folder, `/.syncd-probe-<hex>`: what
the probe created there, and removing all of it at the end.

The removal deletes every file by uuid, then sweeps the folder for files whose upload
reply was lost (an upload cut short by Ctrl-C may still land), then deletes the folders,
children first. It runs in a shielded cancel scope with a deadline, so an interrupt or a
cancellation cannot skip it and a dead DAM cannot hang it. Whatever it could not remove
is named in `Findings.left_behind`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Any, Final, TypeVar

import anyio

from syncd.dam.client import DamClient
from syncd.dam.ops import uuid_segment
from syncd.errors import AuthError, DamError, NameConflict, NotFound

__all__ = [
    "CLEANUP_S",
    "PERMISSIONS",
    "Denied",
    "Findings",
    "ScratchFolder",
    "Stop",
    "folder_uuid",
    "items_of",
]

T = TypeVar("T")

PERMISSIONS: Final = (
    "OBJECTS_LIST",
    "OBJECTS_FETCH",
    "FILE_UPLOAD",
    "FILE_RENAME",
    "FILE_MOVE",
    "FILE_DELETE",
    "DIR_CREATE",
    "DIR_DELETE",
)
"""The permissions syncd's key needs (README, "The API key"), each exercised for real."""

CLEANUP_S: Final = 60.0
"""The longest the removal of the scratch folder may take."""

_PAGE = 1000
_ROOT_PAGES = 20  # a project with more than 20,000 top-level folders is not looked through
_PAUSES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # between rounds of removal, while a folder is busy


@dataclass
class Findings:
    """What the probe found. None (or False for `q_matches_original_name`) where a finding
    could not be observed; `notes` then says why."""

    dam: str
    scratch_folder: str
    naming: str | None = None  # keep | suffix | random
    same_name: str | None = None  # override | version | refuse
    duplicates: str | None = None  # accept | refuse
    identical_same_name: str | None = None  # skipped | stored
    listing_lag_s: float | None = None
    listing_sha1: bool | None = None
    sort_honoured: bool | None = None
    updated_after_honoured: bool | None = None
    updated_after_granularity: str | None = None  # exact | second
    q_mode: str | None = None  # substring | words | ignored
    q_matches_original_name: bool = False
    rename_rewrites_info_name: bool | None = None
    noop_rename_conflict: bool | None = None
    rate_limit_headers: dict[str, str] = field(default_factory=dict)
    max_post_bytes: int | None = None
    permissions: dict[str, bool] = field(default_factory=dict)
    unexercised: list[str] = field(default_factory=list)  # false in `permissions`, untried
    cleaned_up: bool = False
    left_behind: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: str | None = None  # the name of the signal that stopped the checks
    key_rejected: str | None = None  # the DAM stopped accepting the key mid-run

    @property
    def ok(self) -> bool:
        """Every check ran, the key has every permission, and nothing was left behind."""
        return (
            not self.failures
            and self.cleaned_up
            and self.interrupted is None
            and self.key_rejected is None
            and all(self.permissions.get(p) for p in PERMISSIONS)
        )

    def as_dict(self) -> dict[str, Any]:
        """The findings as a JSON-ready dict."""
        return asdict(self)


class Denied(Exception):
    """A request needed a permission the key lacks (already recorded in the findings)."""


class Stop(Exception):
    """The DAM rejected the key mid-run: no check can go on."""


@dataclass
class Made:
    """A file the probe created: its stored name and folder, where known, and whether it
    is known to exist (an overridden file may be gone, unseen without OBJECTS_FETCH)."""

    name: str | None
    folder: str
    sure: bool = True


def folder_uuid(body: dict[str, Any]) -> str | None:
    """The folder uuid in a create-folder reply (or in any `{"folder": {...}}`)."""
    if isinstance(body.get("folder_uuid"), str):
        return str(body["folder_uuid"])
    folder = body.get("folder")
    uuid = folder.get("uuid") if isinstance(folder, dict) else None
    return uuid if isinstance(uuid, str) else None


def items_of(body: dict[str, Any], key: str = "files") -> list[dict[str, Any]]:
    """The objects listed under `key` in a reply, each with a string uuid."""
    items = body.get(key)
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("uuid"), str)]


def _folder_of(item: dict[str, Any]) -> str | None:
    folder = item.get("folder")
    name = folder.get("name") if isinstance(folder, dict) else None
    return "/" + name.strip("/") if isinstance(name, str) else None


class ScratchFolder:
    """The scratch folder of one probe run, and the findings its requests fill in.

    Args:
        dam: an open client.
        path: the folder, `/.syncd-probe-<hex>`.
        where: the DAM's address, for the report.
    """

    def __init__(self, dam: DamClient, path: str, where: str) -> None:
        self.dam = dam
        self.path = path
        self.found = Findings(dam=where, scratch_folder=path)
        self.files: dict[str, Made] = {}  # uuid -> file the probe made and has not deleted
        self.gone: set[str] = set()  # uuids deleted (a lagging listing may still show them)
        self.folders: dict[str, str | None] = {}  # path -> uuid, when known
        self.wrote = False  # a write was sent: there may be something to remove
        self.cleanup = anyio.CancelScope(shield=True)

    # ---- the ledger --------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.found.notes.append(text)

    async def ask(self, permission: str, call: Awaitable[T]) -> T:
        """Await `call`, which needs `permission`, and record whether the key has it.

        Raises:
            Denied: a 403; past the key check, the DAM knows the key, so it is a permission.
            Stop: a 401: the DAM rejects the key itself.
        """
        try:
            result = await call
        except NameConflict:
            # A 409 means the DAM weighed the request itself: the key may make it.
            self.found.permissions.setdefault(permission, True)
            raise
        except AuthError as exc:
            if exc.status != 403:
                self.found.key_rejected = str(exc)
                raise Stop(str(exc)) from None
            if self.found.permissions.get(permission) is not False:
                self.found.permissions[permission] = False
                self.note(f"{permission} is missing: {exc}")
            raise Denied(permission) from None
        self.found.permissions.setdefault(permission, True)
        return result

    def made_file(self, uuid: str, name: str | None, folder: str | None) -> None:
        """Record a file the probe created, or its new name or folder (None: unchanged)."""
        made = self.files.setdefault(uuid, Made(None, self.path))
        made.name = name if name is not None else made.name
        made.folder = folder if folder is not None else made.folder

    def made_folder(self, path: str, uuid: str | None) -> None:
        """Record a folder that exists because of the probe, with its uuid when known."""
        if uuid is not None or path not in self.folders:
            self.folders[path] = uuid

    # ---- requests inside the folder ----------------------------------------------------

    async def delete(self, uuid: str) -> None:
        """Delete a file the probe made (one already gone counts as deleted)."""
        await self.dam.delete(uuid)
        self.files.pop(uuid, None)
        self.gone.add(uuid)

    async def list(self, **params: object) -> list[dict[str, Any]]:
        """The files below the scratch folder, with extra listing parameters."""
        query = {"folder": self.path, "recursive": 1, "limit": 100, **params}
        try:
            body = await self.ask(
                "OBJECTS_LIST",
                self.dam._call("GET", "/files", what=f"list {self.path}", params=query),
            )
        except NotFound:
            return []
        return items_of(body)

    # ---- removal -----------------------------------------------------------------------

    async def remove(self) -> None:
        """Remove everything the probe made, shielded and bounded; record what is left."""
        self.cleanup.deadline = anyio.current_time() + CLEANUP_S
        with self.cleanup:
            try:
                if self.wrote:
                    await self._remove()
            except (Denied, Stop):
                pass  # recorded in the findings
            except DamError as exc:
                self.found.failures.append(f"cleanup: {exc}")
        if self.cleanup.cancelled_caught and anyio.current_time() >= self.cleanup.deadline:
            self.note(f"the cleanup ran out of time ({CLEANUP_S:g} s) before it finished")
        left = [f"file {m.folder}/{m.name or '?'} (uuid {u})" for u, m in self.files.items()]
        left += [f"folder {p} (uuid {u or 'unknown'})" for p, u in sorted(self.folders.items())]
        self.found.left_behind = left
        self.found.cleaned_up = not left

    async def _remove(self) -> None:
        # A folder can still hold a file when an upload cut short by an interrupt lands
        # after its reply was lost: each round sweeps again, then retries the folders.
        for pause in _PAUSES:
            await anyio.sleep(pause)
            await self._delete_files()
            if not await self._remove_folders():
                return

    async def _delete_files(self) -> None:
        if self.found.permissions.get("FILE_DELETE") is False:
            return
        with contextlib.suppress(Denied):
            for uuid in list(self.files):
                await self._delete_one(uuid)
            if self.found.permissions.get("OBJECTS_LIST") is False:
                return
            try:
                items = await self.list()
            except DamError as exc:
                self.found.failures.append(f"cleanup: {exc}")
                return
            for item in items:
                # Everything inside the scratch folder is the probe's; nothing outside is
                # touched, should a DAM ignore `folder=`.
                folder = _folder_of(item)
                if folder is None or not self._inside(folder) or item["uuid"] in self.gone:
                    continue
                self.made_file(item["uuid"], str(item.get("name") or "?"), folder)
                await self._delete_one(item["uuid"])

    async def _delete_one(self, uuid: str) -> None:
        try:
            await self.ask("FILE_DELETE", self.delete(uuid))
        except DamError as exc:
            self.found.failures.append(f"cleanup: {exc}")

    def _inside(self, path: str) -> bool:
        """Whether the DAM path `path` is the scratch folder or below it."""
        return (path.rstrip("/") + "/").startswith(self.path + "/")

    async def _remove_folders(self) -> bool:
        """Delete the probe's folders, deepest first; True when one was still not empty
        and another round may help."""
        with contextlib.suppress(Denied):  # then the uuids seen in replies must do
            await self._find_folders()
        busy = False
        for path in sorted(self.folders, key=lambda p: p.count("/"), reverse=True):
            uuid = self.folders[path]
            if uuid is None:
                continue
            try:
                await self.ask(
                    "DIR_DELETE",
                    self.dam._call(
                        "DELETE", f"/folders/{uuid_segment(uuid, 'remove')}", what=f"remove {path}"
                    ),
                )
            except NotFound:
                pass
            except Denied:
                return False
            except NameConflict:
                busy = True
                continue
            except DamError as exc:
                self.found.failures.append(f"cleanup: remove {path}: {exc}")
                continue
            del self.folders[path]
        return busy and self.found.permissions.get("FILE_DELETE") is not False

    async def _find_folders(self) -> None:
        """Learn the uuids of the scratch folder and every folder below it, and forget the
        folders that turn out not to exist."""
        if self.found.permissions.get("OBJECTS_FETCH") is False:
            return
        present = await self._in_root()
        if present is None:
            return  # too many folders to tell: the uuids seen in replies must do
        # A uuid seen in a reply is worth a DELETE whatever the listing says (a 404
        # settles it); a folder without one exists only if the listing shows it.
        known: dict[str, str | None] = {p: u for p, u in self.folders.items() if u}
        if not present:
            self.folders = known
            return
        params = {"folder": self.path, "recursive": 1, "limit": _PAGE}
        body = await self.ask(
            "OBJECTS_FETCH",
            self.dam._call("GET", "/folders", what=f"folders in {self.path}", params=params),
        )
        below = {
            "/" + path.strip("/"): item["uuid"]
            for item in items_of(body, "folders")
            # Only below the scratch folder: should a DAM ignore `folder=`, nothing else
            # is ever deleted.
            if isinstance(path := item.get("path"), str) and self._inside("/" + path.strip("/"))
        }
        self.folders = known | below

    async def _in_root(self) -> bool | None:
        """Whether `GET /folders?folder=/` lists the scratch folder (noting its uuid);
        None when there were too many folders to look through."""
        for page in range(_ROOT_PAGES):
            params = {"folder": "/", "limit": _PAGE, "offset": page * _PAGE}
            body = await self.ask(
                "OBJECTS_FETCH",
                self.dam._call("GET", "/folders", what="find the scratch folder", params=params),
            )
            folders = items_of(body, "folders")
            for item in folders:
                if "/" + str(item.get("path", "")).strip("/") == self.path:
                    self.folders[self.path] = item["uuid"]
                    return True
            if len(folders) < _PAGE:
                return False
        return None
