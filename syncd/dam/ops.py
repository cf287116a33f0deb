"""The DAM's operations on existing assets and folders (delete, move, rename, look up,
remove an emptied folder), written against the request primitive of `syncd.dam.client.DamClient`,
which mixes them in. No HTTP here: `_call` sends, paces and translates errors.

Also owns `uuid_segment`, the check every DAM-supplied uuid passes before it is spliced
into a URL path.
"""

from __future__ import annotations

import re
from typing import Any, Final

import structlog

from syncd.dam.wire import remote_file
from syncd.errors import AuthError, DamError, NameConflict, NotFound, PermanentDamError
from syncd.model import RemoteFile

__all__ = ["BULK", "AssetOps", "uuid_segment"]

log = structlog.get_logger(__name__)

BULK = 500
"""The most uuids per bulk request (the DAM documents no limit)."""

# Filerobot's uuids are RFC 4122 strings; this accepts any plain token of letters, digits and
# dashes, which is URL-safe as it is and cannot be `.`, `..`, a `/`, a `?` or a `%` escape.
_UUID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")


def uuid_segment(uuid: object, what: str) -> str:
    """`uuid` as a URL path segment, once it looks like a uuid.

    Every uuid comes from the DAM (a listing, an upload reply, the state that recorded
    one); spliced unchecked, `..` or `a/b?x=` would address another resource.

    Args:
        uuid: the value the DAM gave as a uuid.
        what: the operation, for the message ("delete", "rename", ...).

    Raises:
        PermanentDamError: `uuid` is not a letters, digits and dashes token of 1 to 64
            characters. The same value fails the same way on a retry, so only the request
            for it fails; the message shows it escaped (`repr`, at most 100 characters).
    """
    if isinstance(uuid, str) and _UUID.fullmatch(uuid):
        return uuid
    shown = repr(uuid)
    if len(shown) > 100:
        shown = shown[:97] + "..."
    raise PermanentDamError(f"{what}: the DAM gave {shown} as a uuid, which is not one")


class AssetOps:
    """Asset and folder operations; `DamClient` provides `_call` and `count`."""

    async def _call(self, method: str, path: str, *, what: str, **kw: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def count(self, folder: str) -> int | None:
        raise NotImplementedError

    async def exists(self, uuid: str) -> bool:
        """Whether an asset still exists."""
        return await self.details(uuid) is not None

    async def details(self, uuid: str) -> RemoteFile | None:
        """One asset as the DAM holds it now (`GET /files/{uuid}`, which, unlike a listing,
        reads its own writes), with its path relative to `/`; None when it is gone."""
        path = f"/files/{uuid_segment(uuid, 'details')}"
        try:
            body = await self._call("GET", path, what=f"details {uuid}")
        except NotFound:
            return None
        item = body.get("file")
        if isinstance(item, dict) and "uuid" in item:
            return remote_file(item, "/")
        # Alive, but described in a shape syncd does not know: a stub that says so.
        return RemoteFile(uuid, "", "", "", None, None)

    async def hashed(self, r: RemoteFile) -> RemoteFile | None:
        """`r` with its sha1 (and creation time) filled in from its details when a
        listing left them out (docs/dam-api.md §3.3); None when the asset is gone."""
        if r.sha1 is not None:
            return r
        found = await self.details(r.uuid)
        if found is None:
            return None
        r.sha1 = found.sha1
        r.created_at = r.created_at or found.created_at
        return r

    async def delete(self, uuid: str) -> bool:
        """Delete one asset; an asset that is already gone counts as deleted. Returns
        whether this call removed it."""
        path = f"/files/{uuid_segment(uuid, 'delete')}"
        try:
            await self._call("DELETE", path, what=f"delete {uuid}")
        except NotFound:
            return False
        return True

    async def delete_many(self, uuids: list[str]) -> None:
        """Delete assets in bulk requests of at most `BULK` uuids. Uuids that are
        already gone are not an error."""
        for i in range(0, len(uuids), BULK):
            chunk = uuids[i : i + BULK]
            await self._call(
                "DELETE",
                "/files",
                what=f"delete {len(chunk)} files",
                json_body={"files_uuids": chunk},
            )

    async def move_files(self, uuids: list[str], folder: str) -> None:
        """Move assets into `folder` (created if missing), keeping their uuids, in bulk
        requests of at most `BULK`.

        A replayed move (the state write after it was lost) may find assets already in
        `folder`, and some DAMs answer that with 409 (docs/dam-api.md, "no-op renames and
        moves"): on a 409 each asset is looked up, the ones already there count as moved,
        and the rest are sent once more."""
        for i in range(0, len(uuids), BULK):
            chunk = uuids[i : i + BULK]
            try:
                await self._move(chunk, folder)
            except NameConflict:
                rest = [u for u in chunk if not await self._is_in(u, folder)]
                if rest:
                    await self._move(rest, folder)

    async def _move(self, uuids: list[str], folder: str) -> None:
        await self._call(
            "POST",
            "/files/move",
            what=f"move {len(uuids)} files to {folder}",
            json_body={"files_uuids": uuids, "new_folder_name": folder},
        )

    async def _is_in(self, uuid: str, folder: str) -> bool:
        found = await self.details(uuid)
        if found is None:
            raise NotFound(f"move {uuid}: the asset is gone from the DAM", status=404)
        return found.folder.strip("/") == folder.strip("/")

    async def remove_emptied_folders(self, remote: str, rels: list[str]) -> None:
        """Remove the DAM folders mirroring deleted local directories (`rels`, relative
        to the DAM folder `remote`) once they are empty; syncd filled them, so they go
        with their local directory. A failure is logged, never raised (but `AuthError`)."""
        for rel in sorted(rels, key=len, reverse=True):  # children before parents
            path = f"{remote.rstrip('/')}/{rel}"
            try:
                if await self.remove_empty_folder(path):
                    log.info("folder_removed", remote=path)
            except AuthError:
                raise
            except DamError as exc:
                log.warning("folder_not_removed", remote=path, error=str(exc))

    async def remove_empty_folder(self, path: str) -> bool:
        """Delete the DAM folder at `path` if it holds no file at all; True when it did.

        The count is checked first: whether the DAM deletes a non-empty folder with its
        files is undocumented (docs/dam-api.md, open question 10), and it must never happen.
        """
        if await self.count(path) != 0:
            return False
        parent = path.rstrip("/").rpartition("/")[0] or "/"
        try:
            body = await self._call(
                "GET", "/folders", what=f"find folder {path}", params={"folder": parent}
            )
        except NotFound:
            return False
        folders = body.get("folders")
        for item in folders if isinstance(folders, list) else []:
            if isinstance(item, dict) and str(item.get("path", "")).rstrip("/") == path.rstrip("/"):
                counts = item.get("count")
                if isinstance(counts, dict) and counts.get("files_recursive", 0) != 0:
                    return False
                what = f"remove {path}"
                target = f"/folders/{uuid_segment(item.get('uuid'), what)}"
                try:
                    await self._call("DELETE", target, what=what)
                except NotFound:
                    return False
                return True
        return False

    async def rename(self, uuid: str, name: str) -> None:
        """Rename an asset in place; it keeps its uuid.

        A 409 is checked against the DAM before it counts as a failure: a replayed rename
        finds the asset already under `name`, and some DAMs answer a rename to the current
        name with 409 `E801_ALREADY_EXIST` (docs/dam-api.md, "no-op renames and moves")."""
        path = f"/files/{uuid_segment(uuid, 'rename')}"
        try:
            await self._call("PATCH", path, what=f"rename {uuid}", json_body={"name": name})
        except NameConflict:
            found = await self.details(uuid)
            if found is None or found.name != name:
                raise
            log.info("rename_already_done", uuid=uuid)
