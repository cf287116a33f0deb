"""One reconcile of one folder: survey both sides (the local walk and the DAM's change
feed or listing, at the same time), decide (hash only what the decision needs, then the
pure planner), and carry the plan out, bookmarking the DAM side for the next cheap run.
Also the daemon's per-batch variant, which decides just the paths the watcher reported.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import anyio
import structlog

from syncd.config.schema import Config, FolderConfig
from syncd.dam.client import DamClient
from syncd.dam.wire import iso, parse_time
from syncd.engine.executor import Executor, failure_kind
from syncd.engine.match import RemoteView, view
from syncd.engine.plan import (
    DeletePolicy,
    FolderPlan,
    foreign_change,
    full_listing_reason,
    needs_hash,
    plan,
    stat_changes,
)
from syncd.engine.progress import Summary
from syncd.engine.strays import sweep_strays
from syncd.errors import AuthError, DamError
from syncd.local.filters import SyncdFilter
from syncd.local.fs import ScanError, root_status
from syncd.local.scan import ScanResult, scan
from syncd.local.source import hash_files
from syncd.model import FolderTarget, Known, LocalFile, RemoteFile, Skip
from syncd.state.store import State

__all__ = ["FolderRun", "RunOptions"]

log = structlog.get_logger(__name__)

_UPDATED_AFTER_SLACK = timedelta(seconds=1)
# Threads that hash at once: disks and CPUs, not the DAM, set how many help.
_HASHERS = 8


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Flags of one `--initial-sync` run."""

    dry_run: bool = False
    verify: bool = False
    force_delete: bool = False
    # A dry run hands each folder's plan here (the command line prints it).
    show_plan: Callable[[FolderConfig, FolderPlan], None] | None = None


class FolderRun:
    """One reconcile of one folder: survey both sides, decide, carry out."""

    def __init__(
        self,
        folder: FolderConfig,
        config: Config,
        dam: DamClient,
        state: State,
        options: RunOptions,
        summary: Summary,
    ) -> None:
        self.folder = folder
        self.root = folder.local
        self.config = config
        self.dam = dam
        self.state = state
        self.options = options
        self.summary = summary
        self.folder_id = state.folder_id(str(folder.local), folder.remote)
        self.bookmark = state.bookmark(self.folder_id)
        self.filt = SyncdFilter(folder.local, folder.exclude)
        # The DAM's recursive file count as this run first saw it.
        self.seen_count: int | None = None

    async def reconcile(self, executor: Executor) -> None:
        """Make the DAM folder mirror the local one (or print the plan)."""
        if not self.options.dry_run and self.folder_id is not None:
            # What uploads of unknown outcome left is settled before the listing is read.
            await self.sweep(wait=False)
        surveyed = await self._survey()
        if surveyed is None:
            return
        scanned, remote = surveyed
        decided, unreadable = await self._decide(scanned, remote)
        if not self.options.dry_run and not decided.refused:
            # The whole folder was looked at and nothing waits for the user any more.
            self.state.clear_refusal(self.folder_id)
        if self.options.dry_run:
            if self.options.show_plan is not None:
                self.options.show_plan(self.folder, decided)
            return
        await self.carry_out(executor, decided, remote, clean=not unreadable)

    def _unusable(self, problem: str) -> None:
        self.summary.refused.append(f"{self.folder.name}: {problem}; nothing was synced or deleted")
        if not self.options.dry_run and self.folder_id is not None:
            self.state.note_refusal(self.folder_id, f"{problem}; nothing was synced", 0)
        log.error("folder_unusable", problem=problem)

    def target(self) -> FolderTarget:
        """Where this folder's actions go (its state row is created on first use)."""
        return FolderTarget(
            root=self.root,
            remote=self.folder.remote,
            folder_id=self.state.ensure_folder(str(self.root), self.folder.remote),
            stream_threshold=self.config.dam.stream_threshold_bytes,
        )

    async def sweep(self, *, wait: bool) -> None:
        """Settle the journalled uploads of unknown outcome (see `syncd.engine.strays`)."""
        await sweep_strays(
            self.dam,
            self.state,
            self.target(),
            self.summary,
            wait=wait,
        )

    async def _survey(self) -> tuple[ScanResult, list[RemoteFile] | None] | None:
        """Walk the local root (in a thread) while the DAM is asked what changed."""
        problem = root_status(self.root)
        if problem is not None:
            self._unusable(problem)
            return None
        walked: list[ScanResult | ScanError] = []
        remote: list[RemoteFile] | None = None
        failed: list[DamError] = []

        async def walk() -> None:
            try:
                walked.append(
                    await anyio.to_thread.run_sync(
                        partial(scan, on_progress=self.dam.pacer.heartbeat), self.root, self.filt
                    )
                )
            except ScanError as exc:
                walked.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(walk)
            try:
                remote = await self._remote_index()
            except DamError as exc:
                failed.append(exc)
                tg.cancel_scope.cancel()
        if failed:
            if isinstance(failed[0], AuthError):
                raise failed[0]  # outside the task group, so callers see it unwrapped
            reason = f"could not list the DAM folder: {failed[0]}"
            self.summary.failed.append(Skip(self.folder.name, reason, kind=failure_kind(failed[0])))
            log.error("folder_failed", error=str(failed[0]))
            return None
        scanned = walked[0]
        if isinstance(scanned, ScanError):
            self._unusable(str(scanned))
            return None
        for skip in scanned.skipped:
            # Unreadable directories count as failures (their files are not mirrored);
            # links out of the folder, special files and undecodable names are skips.
            (self.summary.failed if skip.failed else self.summary.skipped).append(skip)
            log.warning("file_skipped", path=skip.path, reason=skip.reason, failed=skip.failed)
        return scanned, remote

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

    async def _remote_index(self) -> list[RemoteFile] | None:
        """The DAM listing when the state cannot be trusted, else None after a constant
        number of requests: the recursive count matches the last run's and every change
        since then is one syncd made itself."""
        b, remote_root = self.bookmark, self.folder.remote
        reason = full_listing_reason(
            verify=self.options.verify,
            bookmarked=b.listed_at is not None and b.remote_count is not None,
            parked=bool(self.state.parked(self.folder_id)),
            delete_unknown=self.folder.delete_unknown,
            unknown_kept=b.unknown_kept,
            unsure=len(self.state.unsure(self.folder_id)),
        )
        if reason is None:
            count = self.seen_count = await self.dam.count(remote_root)
            if count is None or count != b.remote_count:
                reason = f"remote file count {count} differs from {b.remote_count}"
            else:
                since = [
                    r
                    async for r in self.dam.list_files(
                        remote_root, updated_after=_before(b.listed_at)
                    )
                ]
                known = self.state.known_by_uuid(self.folder_id, (r.uuid for r in since))
                reason = foreign_change(since, known)
        if reason is None:
            log.info("remote_unchanged", folder_remote=remote_root)
            return None
        log.info("remote_full_listing", folder_remote=remote_root, reason=reason)
        await self._after_listing_lag()
        listing = [r async for r in self.dam.list_files(remote_root)]
        self.seen_count = len(listing)
        return listing

    async def _decide(
        self, scanned: ScanResult, listing: list[RemoteFile] | None
    ) -> tuple[FolderPlan, list[Skip]]:
        """Hash what the decision needs, then plan. Returns the plan and the files that
        could not be read."""
        total = len(scanned.files)  # before unreadable files are taken out below
        remote: RemoteView | None = None
        if listing is None:
            # Trusting the state: only the paths whose stat moved need a closer look.
            changed, gone, synced = stat_changes(scanned.files, self.state.stats(self.folder_id))
            local = {p: scanned.files[p] for p in changed}
            known = self.state.known_for(self.folder_id, [*changed, *gone])
        else:
            local = scanned.files
            known = self.state.known(self.folder_id)
            gone = [p for p in known if p not in local]
            synced = len(known)
            remote = view(listing, known, local)
        return await self._plan(scanned, local, known, gone, synced, total, remote)

    async def decide_paths(
        self,
        scanned: ScanResult,
        rels: Iterable[str],
        *,
        later: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[FolderPlan, list[Skip]]:
        """The daemon's decision for just the paths the watcher reported; `scanned` is
        `scan_paths` of them. A reported path that is gone and was a synced directory
        stands for every synced file under it. Paths in `later` (still settling) are left
        out entirely: neither synced nor taken for deleted."""
        rels = [r for r in rels if r not in later]
        files = {p: f for p, f in scanned.files.items() if p not in later}
        known = self.state.known_for(self.folder_id, set(files).union(rels))
        for rel in rels:
            if rel not in files and rel not in known:
                known.update(self.state.known_under(self.folder_id, rel))
        known = {p: k for p, k in known.items() if p not in later}
        local = {p: f for p, f in files.items() if p not in known or not known[p].same_stat(f)}
        gone = [p for p in known if p not in files]
        # Unchanged files stay out of the plan, exactly as in `_decide`: the planner reads
        # a state row without a local file as a file that is gone.
        known = {p: k for p, k in known.items() if p in local or p not in files}
        # The root is known to be there (checked before); an emptied root still refuses
        # deletes, judged by a look at it rather than by this partial scan.
        total = 0 if _is_empty(self.root) else max(1, len(files))
        synced = self.state.count(self.folder_id)
        return await self._plan(scanned, local, known, gone, synced, total, None, tally=False)

    async def _plan(
        self,
        scanned: ScanResult,
        local: dict[str, LocalFile],
        known: dict[str, Known],
        gone: list[str],
        synced: int,
        total: int,
        remote: RemoteView | None,
        *,
        tally: bool = True,
    ) -> tuple[FolderPlan, list[Skip]]:
        """Hash what the decision needs, then plan. Returns the plan and the files that
        could not be read."""
        to_hash = needs_hash(local, known, remote)
        self.summary.hashed += len(to_hash)
        unreadable = await hash_files(self.root, local, to_hash, _HASHERS, self.dam.pacer.heartbeat)
        for skip in unreadable:
            del local[skip.path]
        self.summary.failed.extend(unreadable)

        protected = [s.path for s in scanned.skipped] + [s.path for s in unreadable]
        protected += [p for p in gone if self.filt.path_ignored(p, False)]
        decided = plan(
            local,
            known,
            remote,
            DeletePolicy(
                delete_unknown=self.folder.delete_unknown,
                max_delete_percent=self.folder.max_delete_percent,
                max_delete_count=self.folder.max_delete_count,
                force=self.options.force_delete,
            ),
            protected=protected,
            synced=synced,
            local_total=total,
            still_used=self._still_used(known, gone, local, remote),
        )
        self.summary.unknown_kept += decided.unknown_kept
        if tally:
            touched = sum(1 for a in decided.actions if a.local is not None)
            self.summary.unchanged += total - len(unreadable) - touched
        if decided.refused:
            self.summary.refused.append(f"{self.folder.name}: {decided.refused}")
            log.error("deletes_refused", reason=decided.refused, withheld=decided.withheld_deletes)
            if not self.options.dry_run and self.folder_id is not None:
                self.state.note_refusal(self.folder_id, decided.refused, decided.withheld_deletes)
        return decided, unreadable

    def _still_used(
        self,
        known: Mapping[str, Known],
        gone: list[str],
        local: Mapping[str, LocalFile],
        remote: RemoteView | None,
    ) -> set[str]:
        """The uuids of assets that a deletion would take from files that stay."""
        if remote is not None:
            return {k.uuid for p, k in known.items() if p in local}
        gone_uuids = [known[p].uuid for p in gone if p in known]
        if not gone_uuids:
            return set()
        refs = self.state.uuid_refs(self.folder_id, gone_uuids)
        leaving = Counter(gone_uuids)
        return {u for u, n in refs.items() if n > leaving[u]}

    async def carry_out(
        self,
        executor: Executor,
        decided: FolderPlan,
        remote: list[RemoteFile] | None,
        *,
        clean: bool,
        partial: bool = False,
    ) -> None:
        """Run the plan, then bookmark the DAM side for the next run's cheap check.
        `partial`: the plan covered only some paths (the daemon), so parked files of other
        paths stay parked."""
        target = self.target()
        failed_before = len(self.summary.failed)
        await executor.run(target, decided.actions)
        # Settle what uploads of unknown outcome left; a one-shot run waits for lagging
        # listings to show it, a daemon batch leaves that to its next reconcile.
        await self.sweep(wait=not partial)
        failed_now = [f.path for f in self.summary.failed[failed_before:]]
        if not partial:
            self.state.keep_parked_only(target.folder_id, failed_now)
        count = None
        trusted = clean and not failed_now and not decided.refused and not executor.needs_listing
        if trusted and not decided.actions:
            count = self.seen_count  # nothing changed it since it was read
        elif trusted:
            try:
                count = await self.dam.count(self.folder.remote)
            except AuthError:
                raise
            except DamError as exc:
                log.warning("remote_count_failed", error=str(exc))
        if count is None:
            # Some outcomes are unknown, or deletes were withheld: the next run lists the
            # DAM in full (adopting whatever did land, planning the withheld deletes
            # again) instead of trusting the count.
            self.state.set_bookmark(target.folder_id, None, None, reconciled=not partial)
            return
        kept = decided.unknown_kept if remote is not None else self.bookmark.unknown_kept
        self.state.set_bookmark(
            target.folder_id, self.dam.bookmark(), count, unknown_kept=kept, reconciled=not partial
        )


def _before(stamp: str | None) -> str | None:
    """A bookmark moved back one second: some DAMs compare `updated_after` in whole
    seconds and would miss a change made in the bookmark's own second (docs/dam-api.md
    §12.21). Changes syncd made itself in that second come back too and are recognised
    by uuid. (A change someone else makes while a run is under way, or that a lagging
    listing does not show yet when the run ends, is the window README describes: the
    count catches adds and deletes, `--verify` catches edits.)"""
    when = parse_time(stamp)
    return stamp if when is None else iso(when - _UPDATED_AFTER_SLACK)


def _is_empty(root: Path) -> bool:
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is None
    except OSError:
        return True
