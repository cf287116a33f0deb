"""The first half of a folder's reconcile: what each side holds. When the state may be
trusted (the DAM's recursive count matches the last run's and every change since is
syncd's own), a sorted walk is compared with the state's rows a stretch at a time, in
bounded memory, while the DAM is asked. Otherwise the DAM folder is listed in full beside
a plain walk, after the listing lag; or, with nothing on either side, the walk is left to
the upload itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar

import anyio
import structlog

from syncd.config.schema import FolderConfig
from syncd.dam.client import DamClient
from syncd.dam.wire import iso, parse_time
from syncd.engine.executor import failure_kind
from syncd.engine.plan import StatDiff, foreign_change, full_listing_reason, stat_changes
from syncd.engine.progress import Summary
from syncd.errors import AuthError, DamError
from syncd.local.filters import SyncdFilter
from syncd.local.fs import ScanError, root_status
from syncd.local.scan import Segment, SortedWalk, scan
from syncd.model import LocalFile, RemoteFile, Skip
from syncd.state.rows import StatRows
from syncd.state.store import State

__all__ = ["Survey", "Surveyed"]

log = structlog.get_logger(__name__)

_UPDATED_AFTER_SLACK = timedelta(seconds=1)
_W = TypeVar("_W")
_R = TypeVar("_R")


class Survey:
    """One folder's survey. `seen_count` is the DAM's recursive file count as it first
    saw it (None until asked)."""

    def __init__(
        self,
        folder: FolderConfig,
        dam: DamClient,
        state: State,
        summary: Summary,
        unusable: Callable[[str], None],
        *,
        verify: bool,
        dry_run: bool,
    ) -> None:
        self.folder = folder
        self.root = folder.local
        self.dam = dam
        self.state = state
        self.summary = summary
        self.unusable = unusable
        self.verify = verify
        self.dry_run = dry_run
        self.folder_id = state.folder_id(str(folder.local), folder.remote)
        self.bookmark = state.bookmark(self.folder_id)
        self.filt = SyncdFilter(folder.local, folder.exclude)
        self.seen_count: int | None = None

    async def run(self) -> Surveyed | None:
        """Look at both sides at once. When the state may be trusted, a sorted walk is
        compared with it while the DAM is asked what changed; only when that check fails is
        the DAM listed in full, beside a plain walk."""
        problem = root_status(self.root)
        if problem is not None:
            self.unusable(problem)
            return None
        reason = self._stale_reason()
        surveyed: Surveyed | None = None
        if reason is None:
            assert self.folder_id is not None  # a bookmark needs a folder row
            stop = threading.Event()
            rows = self.state.stat_rows(self.folder_id)

            async def check() -> str | None:
                reason = await self._remote_change()
                if reason is not None:
                    stop.set()  # the walk is moot: the DAM is listed in full instead
                return reason

            try:
                compared = await self._alongside(partial(self._compare, rows, stop), check, stop)
            finally:
                rows.close()  # also when the walk never started (the DAM failed first)
            if compared is None:
                return None
            diff, reason = compared
            if reason is None:
                assert diff is not None
                log.info("remote_unchanged", folder_remote=self.folder.remote)
                surveyed = Surveyed(diff[1], diff=diff[0])
        if surveyed is None and await self._fresh():
            log.info("remote_empty", folder_remote=self.folder.remote)
            return Surveyed([], fresh=True)
        if surveyed is None:
            log.info("remote_full_listing", folder_remote=self.folder.remote, reason=reason)
            walk = partial(scan, self.root, self.filt, on_progress=self.dam.pacer.heartbeat)
            listed = await self._alongside(walk, self._full_listing)
            if listed is None:
                return None
            scanned, listing = listed
            assert scanned is not None
            surveyed = Surveyed(scanned.skipped, scanned=scanned.files, listing=listing)
        self.summary.add_skips(surveyed.skipped)
        return surveyed

    async def _alongside(
        self,
        walk: Callable[[], _W],
        remote: Callable[[], Awaitable[_R]],
        stop: threading.Event | None = None,
    ) -> tuple[_W | None, _R] | None:
        """Run `walk` in a thread while `remote` asks the DAM; None when either fails (the
        failure is recorded). Setting `stop` ends the walk early, as moot: its result is
        then None."""
        walked: list[_W | ScanError | None] = []
        answered: list[_R] = []
        failed: list[DamError] = []

        async def run_walk() -> None:
            try:
                walked.append(await anyio.to_thread.run_sync(walk))
            except ScanError as exc:
                walked.append(exc)
            except _Stopped:
                walked.append(None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_walk)
            try:
                answered.append(await remote())
            except DamError as exc:
                failed.append(exc)
                if stop is not None:
                    stop.set()
                tg.cancel_scope.cancel()
        if failed:
            if isinstance(failed[0], AuthError):
                raise failed[0]  # outside the task group, so callers see it unwrapped
            reason = f"could not list the DAM folder: {failed[0]}"
            self.summary.failed.append(Skip(self.folder.name, reason, kind=failure_kind(failed[0])))
            log.error("folder_failed", error=str(failed[0]))
            return None
        outcome = walked[0]
        if stop is not None and stop.is_set():
            return None, answered[0]
        if isinstance(outcome, ScanError):
            self.unusable(str(outcome))
            return None
        return outcome, answered[0]

    def _compare(self, rows: StatRows, stop: threading.Event) -> tuple[StatDiff, list[Skip]]:
        """(In a thread.) The sorted walk against the state's rows, a stretch at a time."""
        walk = SortedWalk(self.root, self.filt, self.dam.pacer.heartbeat)

        def segments() -> Iterator[Segment]:
            for segment in walk:
                if stop.is_set():
                    raise _Stopped("the DAM is listed in full instead")
                yield segment

        return stat_changes(segments(), rows.until), walk.skipped

    def _stale_reason(self) -> str | None:
        """Why the state cannot be trusted even before asking the DAM, or None."""
        b = self.bookmark
        return full_listing_reason(
            verify=self.verify,
            bookmarked=self.folder_id is not None
            and b.listed_at is not None
            and b.remote_count is not None,
            parked=bool(self.state.parked(self.folder_id)),
            delete_unknown=self.folder.delete_unknown,
            unknown_kept=b.unknown_kept,
            unsure=len(self.state.unsure(self.folder_id)),
        )

    async def _remote_change(self) -> str | None:
        """Why the DAM folder must be listed in full after all, or None after a constant
        number of requests: the recursive count matches the last run's and every change
        since then is one syncd made itself."""
        b, remote_root = self.bookmark, self.folder.remote
        count = self.seen_count = await self.dam.count(remote_root)
        if count is None or count != b.remote_count:
            return f"remote file count {count} differs from {b.remote_count}"
        since = [
            r async for r in self.dam.list_files(remote_root, updated_after=_before(b.listed_at))
        ]
        known = self.state.known_by_uuid(self.folder_id, (r.uuid for r in since))
        return foreign_change(since, known)

    async def _after_listing_lag(self) -> None:
        """A full listing taken within `dam.listing_lag_s` of the last run's writes may not
        show them yet (docs/dam-api.md §12.2), and would read as assets gone or outdated: a
        run right after another waits out the rest of the lag first. (The cheap re-run
        trusts the state for syncd's own writes, and needs no wait.)"""
        last, lag = self.bookmark.last_sync, self.dam.listing_lag_s
        wait = 0.0 if last is None or lag <= 0 else min(lag, last + lag - time.time())
        if wait > 0:
            log.info("listing_lag_wait", wait_s=round(wait, 2))
            await anyio.sleep(wait)

    async def _fresh(self) -> bool:
        """Whether there is nothing on either side to match: no file synced yet and an
        empty DAM folder (counted once the listing lag is over). The tree is then
        uploaded a stretch at a time instead of being planned whole."""
        if self.dry_run or self.state.count(self.folder_id):
            return False
        await self._after_listing_lag()
        self.seen_count = await self.dam.count(self.folder.remote)
        return self.seen_count == 0

    async def _full_listing(self) -> list[RemoteFile]:
        await self._after_listing_lag()
        listing = [r async for r in self.dam.list_files(self.folder.remote)]
        self.seen_count = len(listing)
        return listing


@dataclass(slots=True)
class Surveyed:
    """What a survey found: the walk's skips, and either the walk compared with a trusted
    state (`diff`) or the whole walk and the DAM's full listing."""

    skipped: list[Skip]
    # Nothing synced and an empty DAM folder: the walk is still to be made.
    fresh: bool = False
    diff: StatDiff | None = None
    scanned: dict[str, LocalFile] | None = None
    listing: list[RemoteFile] | None = None


class _Stopped(Exception):
    """A walk was ended early: what it would find is no longer needed."""


def _before(stamp: str | None) -> str | None:
    """A bookmark moved back one second: some DAMs compare `updated_after` in whole
    seconds and would miss a change made in the bookmark's own second (docs/dam-api.md
    §12.21). Changes syncd made itself in that second come back too and are recognised
    by uuid. (A change someone else makes while a run is under way, or that a lagging
    listing does not show yet when the run ends, is the window README describes: the
    count catches adds and deletes, `--verify` catches edits.)"""
    when = parse_time(stamp)
    return stamp if when is None else iso(when - _UPDATED_AFTER_SLACK)
