"""Carrying out planned actions against the DAM: N workers share the DAM client (and so
the pacer); each upload streams and hashes the file in one pass; every outcome lands in
the state store and the run's summary. One `job_done`/`job_failed` event per job.

Replacing a changed file never leaves the DAM without it: the new content is uploaded
first and the old asset is deleted only once the new one is committed. When the project
refuses a second file of the same name, the new content goes up under a temporary name,
the old asset is deleted, and the new one is renamed into place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import structlog

from syncd.dam.client import DamClient, Uploaded
from syncd.engine.match import derived_name
from syncd.engine.moves import carry_out_moves
from syncd.engine.progress import Progress, Summary
from syncd.engine.upload import Uploader
from syncd.errors import (
    AuthError,
    DamError,
    NameConflict,
    NotFound,
    RateLimited,
    StateError,
    TransientDamError,
)
from syncd.local.fs import FileChanged, UnsafePath
from syncd.model import Action, FolderTarget, Known, LocalFile, Op, Skip, remote_location
from syncd.redact import scrub
from syncd.state.store import State

__all__ = ["Executor", "FolderTarget", "failure_kind"]

log = structlog.get_logger(__name__)

_FLUSH_EVERY = 256
_CHANGE_RETRIES = 3


class Executor:
    """Runs actions with `workers` concurrent tasks and records every outcome."""

    def __init__(
        self,
        dam: DamClient,
        state: State,
        summary: Summary,
        progress: Progress,
        *,
        workers: int,
    ) -> None:
        self.dam = dam
        self.state = state
        self.summary = summary
        self.progress = progress
        self.workers = workers
        self.uploader = Uploader(dam, state)
        # Set when the state may now miss assets (the next run must list the DAM).
        self.needs_listing = False

    async def run(self, target: FolderTarget, actions: Sequence[Action]) -> None:
        """Carry out one folder's actions. Raises `AuthError` at once if the key is
        rejected; everything else is recorded per file."""
        transfers = [a for a in actions if a.op in (Op.UPLOAD, Op.REPLACE)]
        for a in actions:
            if a.op in (Op.ADOPT, Op.REFRESH):
                assert a.local is not None
                assert a.local.sha1 is not None
                assert a.uuid is not None
                self._record(target, a.local, a.local.sha1, a.uuid, a.remote_sha1)
                self.summary.adopted += a.op is Op.ADOPT
            elif a.op is Op.FORGET:
                self.state.forget(target.folder_id, a.path, a.uuid)
        self.progress.add(len(transfers), sum(a.local.size for a in transfers if a.local))
        # The workers share one iterator: the whole batch is known up front, so there is
        # nothing for a channel to buffer.
        jobs = iter(transfers)
        self._fatal: AuthError | StateError | None = None
        self.needs_listing = False
        await self._delete_orphans(target)
        moves = [a for a in actions if a.op is Op.MOVE]
        deletes = [a for a in actions if a.op is Op.DELETE]
        if moves:
            # Moves first: they free the names new uploads may take. An asset whose file
            # a moved file overwrote holds the move's target name: it goes before.
            targets = {m.path for m in moves}
            freeing = [d for d in deletes if d.path in targets]
            if freeing:
                kept = await self._delete(target, freeing)
                deletes = [d for d in deletes if d.path not in targets]
                # The name is still taken: that move waits for the next run.
                moves = [m for m in moves if m.path not in kept]
            await self._move(target, moves)
        async with anyio.create_task_group() as tg:
            for n in range(min(self.workers, len(transfers))):
                tg.start_soon(self._worker, target, jobs, tg.cancel_scope, name=f"syncd worker {n}")
        if self._fatal is not None:
            # Raised here rather than from a worker, so callers get the AuthError itself
            # and not an ExceptionGroup from the task group.
            raise self._fatal
        if deletes:
            await self._delete(target, deletes)
        self.state.flush()

    async def _worker(
        self, target: FolderTarget, jobs: Iterator[Action], scope: anyio.CancelScope
    ) -> None:
        for action in jobs:
            try:
                await self._transfer(target, action)
                if self.state.pending >= _FLUSH_EVERY:
                    self.state.flush()
            except (AuthError, StateError) as exc:
                # The key was rejected or the state cannot be written (a full disk): every
                # other worker stops too, at once.
                self._fatal = exc
                scope.cancel()
                return

    async def _transfer(self, target: FolderTarget, action: Action) -> None:
        assert action.local is not None
        local = action.local
        t0 = time.monotonic()
        for _ in range(_CHANGE_RETRIES):
            try:
                uploaded, sha1 = await self.uploader.upload(target, local, action.uuid)
            except FileChanged:
                fresh = _restat(target.root, local)
                if fresh is None:
                    return self._vanished(local)
                local = fresh
                continue
            except FileNotFoundError:
                return self._vanished(local)
            except UnsafePath as exc:
                self.summary.skipped.append(Skip(local.path, str(exc)))
                return None
            except OSError as exc:
                return self._failed(
                    target, action, f"cannot read the file: {exc.strerror}", "unreadable"
                )
            except AuthError:
                raise
            except DamError as exc:
                return self._failed(target, action, _explain(exc, action), failure_kind(exc))
            await self._committed(target, action, local, uploaded, sha1)
            log.debug(
                "job_done",
                op=action.op.value,
                path=local.path,
                bytes=local.size,
                uuid=uploaded.uuid,
                adopted=uploaded.adopted,
                ms=round((time.monotonic() - t0) * 1000, 1),
            )
            return None
        return self._failed(target, action, "the file kept changing while it was read", "changing")

    async def _committed(
        self, target: FolderTarget, action: Action, local: LocalFile, uploaded: Uploaded, sha1: str
    ) -> None:
        """Record an upload the DAM committed, then retire the asset it replaced."""
        foreign = uploaded.elsewhere is not None and not _is_here(
            target, local.path, uploaded.elsewhere
        )
        if foreign:
            log.warning(
                "identical_asset_elsewhere",
                path=local.path,
                uuid=uploaded.uuid,
                similar_file_path=uploaded.elsewhere,
                hint="the project refuses duplicate content; syncd will never delete it",
            )
        self._record(
            target, local, sha1, uploaded.uuid, uploaded.remote_sha1 or sha1, foreign=foreign
        )
        if action.uuid is not None and uploaded.uuid != action.uuid:
            await self._retire(target, action.uuid, local.path)
        if uploaded.adopted:
            self.summary.adopted += 1
        elif action.op is Op.REPLACE:
            self.summary.updated += 1
        else:
            self.summary.uploaded += 1
        if not uploaded.adopted:
            self.summary.bytes += local.size
        self.progress.advance(1, local.size)

    async def _retire(self, target: FolderTarget, old_uuid: str, path: str) -> None:
        """Delete the asset a replaced file had, now that its new content is committed
        and recorded. Override gives a new uuid and removes the old asset itself; with a
        random-suffix naming rule the old asset is still there."""
        if self.state.uuid_used_elsewhere(target.folder_id, old_uuid, path):
            # Another local file still maps to it (identical content the project refused
            # to store twice): keep it, unless the DAM's own same-name rule just removed it.
            if not await self.dam.exists(old_uuid):
                self._orphaned_paths(target, old_uuid)
            return
        try:
            await self.dam.delete(old_uuid)
        except AuthError:
            raise
        except DamError as exc:
            # The new content is safe; the old asset is deleted by the next run.
            self.state.add_orphan(target.folder_id, old_uuid, str(exc))
            log.warning("old_asset_kept", path=path, uuid=old_uuid, error=str(exc))

    async def _move(self, target: FolderTarget, moves: Sequence[Action]) -> None:
        """Renames and moves keep the asset (see `syncd.engine.moves`); the state follows."""
        outcome = await carry_out_moves(self.dam, target.remote, moves)
        for a, exc in outcome.failed:
            self._failed(target, a, str(exc), failure_kind(exc))
        for a in outcome.done:
            assert a.uuid is not None
            assert a.local is not None
            assert a.local.sha1 is not None
            if a.source is not None:
                self.state.forget(target.folder_id, a.source, a.uuid)
            self._record(target, a.local, a.local.sha1, a.uuid, a.remote_sha1)
            self.summary.moved += 1
            log.debug("job_done", op="move", path=a.path, source=a.source, uuid=a.uuid)

    async def _delete_orphans(self, target: FolderTarget) -> None:
        """Delete the assets earlier runs replaced but could not delete."""
        orphans = self.state.orphans(target.folder_id)
        if not orphans:
            return
        try:
            await self.dam.delete_many(orphans)
        except AuthError:
            raise
        except DamError as exc:
            log.warning("orphans_kept", count=len(orphans), error=str(exc))
            return
        self.state.drop_orphans(target.folder_id, orphans)

    async def _delete(self, target: FolderTarget, deletes: Sequence[Action]) -> set[str]:
        """Delete the assets of `deletes`; returns the paths whose delete failed."""
        by_uuid: dict[str, list[Action]] = {}
        for a in deletes:
            if a.uuid is not None:
                by_uuid.setdefault(a.uuid, []).append(a)
        failed: set[str] = set()
        try:
            await self.dam.delete_many(list(by_uuid))
        except AuthError:
            raise
        except DamError as exc:
            # Find the culprit one by one rather than failing the whole batch.
            log.warning("bulk_delete_failed", error=str(exc), files=len(by_uuid))
            for uuid, group in by_uuid.items():
                try:
                    await self.dam.delete(uuid)
                except AuthError:
                    raise
                except DamError as one:
                    self._failed(target, group[0], str(one), failure_kind(one))
                    failed.add(uuid)
        for uuid, group in by_uuid.items():
            if uuid in failed:
                continue
            for action in group:
                # Only while the row still maps to this asset: a file moved over the
                # path has been recorded there already.
                self.state.forget(target.folder_id, action.path, uuid)
            self.summary.deleted += 1
            log.debug("job_done", op="delete", path=group[0].path, uuid=uuid)
        return {a.path for uuid in failed for a in by_uuid[uuid]}

    def _record(
        self,
        target: FolderTarget,
        local: LocalFile,
        sha1: str,
        uuid: str,
        remote_sha1: str | None,
        *,
        foreign: bool = False,
    ) -> None:
        self.state.record(
            target.folder_id,
            Known(
                local.path,
                local.size,
                local.mtime_ns,
                local.inode,
                sha1,
                uuid,
                remote_sha1,
                foreign,
            ),
        )

    def _orphaned_paths(self, target: FolderTarget, uuid: str) -> None:
        # Those files are synced again by the next run, which lists the DAM in full.
        paths = self.state.forget_uuid(target.folder_id, uuid)
        self.needs_listing = True
        log.warning("shared_asset_removed_by_dam", uuid=uuid, paths=paths)

    def _vanished(self, local: LocalFile) -> None:
        # Deleted between scan and upload: not an error; the next run deletes it remotely
        # if it had been synced before.
        log.info("file_vanished", path=local.path)
        self.progress.advance(1, 0)

    def _failed(self, target: FolderTarget, action: Action, reason: str, kind: str) -> None:
        reason = scrub(reason)  # it may quote the DAM, which may echo the key
        self.summary.failed.append(Skip(action.path, reason, kind=kind))
        self.state.park(target.folder_id, action.path, action.op.value, reason)
        self.progress.advance(1, 0)
        log.warning("job_failed", op=action.op.value, path=action.path, error=reason)


def failure_kind(exc: DamError) -> str:
    """A short, fixed label for a DAM failure (a metrics label: never free text)."""
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, TransientDamError):
        return "dam_unavailable"  # retries ran out on errors, timeouts or 5xx
    if isinstance(exc, NameConflict):
        return "name_conflict"
    if isinstance(exc, NotFound):
        return "not_found"
    return "dam_rejected"


def _explain(exc: DamError, action: Action) -> str:
    if isinstance(exc, NameConflict) and action.uuid is None:
        return (
            f"{exc}; the DAM already holds a different file of this name that syncd did not"
            " upload: set delete_unknown = true on the folder to replace it"
        )
    return str(exc)


def _is_here(target: FolderTarget, path: str, dam_path: str) -> bool:
    """Whether a DAM path (`similar_file_path`) is where local `path` is synced to, under
    its name or a name the project's naming rule made of it."""
    folder, name = remote_location(target.remote, path)
    there, _, there_name = dam_path.rpartition("/")
    return "/" + there.strip("/") == "/" + folder.strip("/") and derived_name(there_name, name)


def _restat(root: Path, local: LocalFile) -> LocalFile | None:
    """The file's current stat, or None once it is gone."""
    try:
        st = (root / local.path).stat()
    except FileNotFoundError:
        return None
    return LocalFile(local.path, st.st_size, st.st_mtime_ns, st.st_ino)
