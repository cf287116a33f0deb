"""Uploading one file: the body streamed and hashed in one pass, small files in one
multipart body, big ones through the streaming PUT; an upload whose outcome is unknown
is looked for before it is sent again, so a retry never creates a second asset; and the
replacement of a changed file when the project refuses a second file of the same name.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from syncd.dam import Body, DamClient, Uploaded
from syncd.errors import NameConflict, TransientDamError
from syncd.model import LocalFile, remote_location
from syncd.source import FileSource

if TYPE_CHECKING:
    from syncd.workers import FolderTarget

__all__ = ["Uploader"]

log = structlog.get_logger("syncd.upload")


class Uploader:
    """Uploads local files through one DAM client."""

    def __init__(self, dam: DamClient) -> None:
        self.dam = dam

    async def upload(
        self, target: FolderTarget, local: LocalFile, old_uuid: str | None
    ) -> tuple[Uploaded, str]:
        folder, name = remote_location(target.remote, local.path)
        source = FileSource(target.root, local, self.dam.pacer.heartbeat)
        stream = local.size > target.stream_threshold

        def body() -> Body:
            if source.error is not None:
                raise source.error  # the file itself failed last time: no point in resending
            return source.read_all() if source.small() else source.stream()

        try:
            uploaded = await self._send(source, folder, name, body, stream)
        except NameConflict:
            if old_uuid is None:
                raise
            uploaded = await self._replace_refused(source, folder, name, body, stream, old_uuid)
        except TransientDamError:
            if source.error is not None:
                raise source.error from None
            raise
        if source.error is not None:
            raise source.error
        return uploaded, await source.ensure_sha1()

    async def _send(
        self, source: FileSource, folder: str, name: str, body: Callable[[], Body], stream: bool
    ) -> Uploaded:
        """One upload of `source` as `folder/name`, looking before any re-send."""
        return await self.dam.upload(
            folder, name, body, stream=stream, before_retry=self._look_first(source, folder, name)
        )

    def _look_first(
        self, source: FileSource, folder: str, name: str
    ) -> Callable[[], Awaitable[Uploaded | None]]:
        """Before re-sending an upload whose outcome is unknown (it may have been
        committed), look for it in the target folder by name and sha1, so a retry never
        creates a second asset. Works when the project stores a suffixed name: listings
        carry the original name."""

        async def look() -> Uploaded | None:
            if source.error is not None:
                raise source.error
            sha1 = await source.ensure_sha1()
            async for r in self.dam.list_files(folder, recursive=False, q=name):
                if r.path.rpartition("/")[2] == name and r.sha1 == sha1:
                    log.info("upload_adopted_after_retry", path=source.local.path, uuid=r.uuid)
                    return Uploaded(uuid=r.uuid, name=r.name, remote_sha1=r.sha1)
            return None

        return look

    async def _replace_refused(
        self,
        source: FileSource,
        folder: str,
        name: str,
        body: Callable[[], Body],
        stream: bool,
        old_uuid: str,
    ) -> Uploaded:
        """Replace under a "refuse same name" policy: upload aside, delete, rename."""
        stem, dot, ext = name.rpartition(".")
        temp = f"{stem or ext}.syncd-{secrets.token_hex(4)}{dot}{ext if stem else ''}"
        try:
            uploaded = await self._send(source, folder, temp, body, stream)
        except NameConflict:
            # Not even a fresh name is accepted: the one way left is delete, then upload.
            log.warning("replace_by_delete_then_upload", folder=folder, name=name)
            await self.dam.delete(old_uuid)
            return await self._send(source, folder, name, body, stream)
        await self.dam.delete(old_uuid)
        await self.dam.rename(uploaded.uuid, name)
        return Uploaded(uuid=uploaded.uuid, name=name, remote_sha1=uploaded.remote_sha1)
