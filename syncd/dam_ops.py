"""The DAM's operations on existing assets and folders (delete, move, rename, look up,
remove an emptied folder), written against the request primitive of `syncd.dam.DamClient`,
which mixes them in. No HTTP here: `_call` sends, paces and translates errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog

from syncd.errors import AuthError, DamError, NotFound

__all__ = ["BULK", "AssetOps"]

log = structlog.get_logger("syncd.dam")

BULK = 500
"""The most uuids per bulk request (the DAM documents no limit)."""


class AssetOps:
    """Asset and folder operations; `DamClient` provides `_call` and `count`."""

    async def _call(self, method: str, path: str, *, what: str, **kw: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def count(self, folder: str) -> int | None:
        raise NotImplementedError

    async def exists(self, uuid: str) -> bool:
        """Whether an asset still exists."""
        try:
            await self._call("GET", f"/files/{quote(uuid, safe='')}", what=f"details {uuid}")
        except NotFound:
            return False
        return True

    async def delete(self, uuid: str) -> None:
        """Delete one asset; an asset that is already gone counts as deleted."""
        try:
            await self._call("DELETE", f"/files/{quote(uuid, safe='')}", what=f"delete {uuid}")
        except NotFound:
            return

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
        requests of at most `BULK`."""
        for i in range(0, len(uuids), BULK):
            chunk = uuids[i : i + BULK]
            await self._call(
                "POST",
                "/files/move",
                what=f"move {len(chunk)} files to {folder}",
                json_body={"files_uuids": chunk, "new_folder_name": folder},
            )

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
        files is undocumented (dam-api.md, open question 10), and it must never happen.
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
        for item in body.get("folders") or []:
            if isinstance(item, dict) and str(item.get("path", "")).rstrip("/") == path.rstrip("/"):
                counts = item.get("count")
                if isinstance(counts, dict) and counts.get("files_recursive", 0) != 0:
                    return False
                try:
                    await self._call(
                        "DELETE",
                        f"/folders/{quote(str(item['uuid']), safe='')}",
                        what=f"remove {path}",
                    )
                except NotFound:
                    return False
                return True
        return False

    async def rename(self, uuid: str, name: str) -> None:
        """Rename an asset in place; it keeps its uuid."""
        await self._call(
            "PATCH",
            f"/files/{quote(uuid, safe='')}",
            what=f"rename {uuid}",
            json_body={"name": name},
        )
