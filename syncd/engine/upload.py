"""Uploading one file: the body streamed and hashed in one pass, small files in one
multipart body, big ones through the streaming PUT; an upload whose outcome is unknown
is journalled in the state and looked for before it is sent again, so a retry does not
create a second asset (and one it still creates is found later, see `syncd.engine.strays`);
and the replacement of a changed file when the project refuses a second file of the
same name.

The look needs no search semantics: it lists the target folder (with `updated_after`
from just before the first attempt, by the DAM's clock) and matches by sha1 plus the
name, `info.name` or a name the naming rule made of it. Where listings lag behind
writes, it looks again with backoff for up to `dam.listing_lag_s`
(docs/dam-api.md, "Uploads of unknown outcome").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio
import structlog

from syncd.dam.client import Body, DamClient, Uploaded
from syncd.dam.wire import iso, parse_time
from syncd.engine.match import WINDOW_MARGIN, name_matches, temporary_name
from syncd.errors import NameConflict, RateLimited, TransientDamError
from syncd.local.source import FileSource
from syncd.model import FolderTarget, LocalFile, RemoteFile, Unsure, remote_location
from syncd.state.store import State

__all__ = ["Uploader"]

log = structlog.get_logger(__name__)

_FIRST_LOOK_PAUSE_S = 0.25


class Uploader:
    """Uploads local files through one DAM client, journalling unknown outcomes."""

    def __init__(self, dam: DamClient, state: State) -> None:
        self.dam = dam
        self.state = state

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

        send = _Sender(self, target, source, body, stream, old_uuid)
        try:
            uploaded = await send(folder, name)
        except NameConflict:
            if old_uuid is None:
                raise
            uploaded = await self._replace_refused(send, folder, name, old_uuid)
        except TransientDamError:
            if source.error is not None:
                raise source.error from None
            raise
        if source.error is not None:
            raise source.error
        return uploaded, await source.ensure_sha1()

    async def find(self, entry: Unsure, replacing: str | None = None) -> RemoteFile | None:
        """An asset in the entry's folder that holds its content under its name (or a
        name the naming rule made of it), changed since just before the first attempt,
        that no state row knows, unless it is `replacing` (a new version keeps the uuid).
        A DAM that ignores `updated_after` lists older assets too; their own times say."""
        since = _parse(entry.window_start) - WINDOW_MARGIN
        until = _parse(entry.window_end) + WINDOW_MARGIN
        listed = [
            r
            async for r in self.dam.list_files(
                entry.folder, recursive=False, updated_after=iso(since)
            )
            if name_matches(r, entry.name)
            and (when := parse_time(r.modified_at or r.created_at)) is not None
            and since <= when <= until
        ]
        known = self.state.known_uuids(r.uuid for r in listed) - {replacing}
        for r in listed:
            found = None if r.uuid in known else await self.dam.hashed(r)
            if found is not None and found.sha1 == entry.sha1:
                return found
        return None

    async def _replace_refused(
        self, send: _Sender, folder: str, name: str, old_uuid: str
    ) -> Uploaded:
        """Replace under a "refuse same name" policy: upload aside, delete, rename."""
        temp = temporary_name(name)
        try:
            uploaded = await send(folder, temp)
        except NameConflict:
            # Not even a fresh name is accepted: the one way left is delete, then upload.
            log.warning("replace_by_delete_then_upload", folder=folder, name=name)
            await self.dam.delete(old_uuid)
            return await send(folder, name)
        await self.dam.delete(old_uuid)
        await self.dam.rename(uploaded.uuid, name)
        return Uploaded(uuid=uploaded.uuid, name=name, remote_sha1=uploaded.remote_sha1)


class _Sender:
    """Sends one file as `folder/name`, journalling every failure whose outcome is
    unknown and looking for a committed copy before any re-send."""

    def __init__(
        self,
        uploader: Uploader,
        target: FolderTarget,
        source: FileSource,
        body: Callable[[], Body],
        stream: bool,
        replacing: str | None,
    ) -> None:
        self.up = uploader
        self.target = target
        self.source = source
        self.body = body
        self.stream = stream
        self.replacing = replacing  # the asset a new version may keep the uuid of

    async def __call__(self, folder: str, name: str) -> Uploaded:
        # A monotonic reading: turned into the DAM's clock only if the outcome is unknown.
        started = time.monotonic()
        try:
            return await self.up.dam.upload(
                folder,
                name,
                self.body,
                stream=self.stream,
                before_retry=self._look_first(folder, name, started),
                size=self.source.local.size,
            )
        except TransientDamError as exc:
            # Retries ran out; the last attempt may still have landed.
            if not (isinstance(exc, RateLimited) and exc.status == 429):
                await self._journal(folder, name, started)
            raise

    async def _journal(self, folder: str, name: str, started: float) -> Unsure | None:
        if self.source.error is not None:
            return None
        sha1 = await self.source.ensure_sha1()
        entry = Unsure(
            self.source.local.path,
            folder,
            name,
            sha1,
            self.source.local.size,
            iso(self.up.dam.clock_at(started)),
            iso(self.up.dam.now()),
        )
        self.up.state.note_unsure(self.target.folder_id, entry)
        return entry

    def _look_first(
        self, folder: str, name: str, started: float
    ) -> Callable[[], Awaitable[Uploaded | None]]:
        async def look() -> Uploaded | None:
            if self.source.error is not None:
                raise self.source.error
            entry = await self._journal(folder, name, started)
            assert entry is not None
            deadline = time.monotonic() + self.up.dam.listing_lag_s
            pause = _FIRST_LOOK_PAUSE_S
            while True:
                found = await self.up.find(entry, self.replacing)
                if found is not None:
                    log.info("upload_adopted_after_retry", path=entry.path, uuid=found.uuid)
                    return Uploaded(
                        uuid=found.uuid, name=found.name, remote_sha1=found.sha1 or entry.sha1
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                # The DAM's listings may lag behind its writes: look again before re-sending.
                await anyio.sleep(min(pause, left))
                pause *= 2

        return look


def _parse(value: str) -> datetime:
    when = parse_time(value)
    assert when is not None, value  # written by `iso`
    return when
