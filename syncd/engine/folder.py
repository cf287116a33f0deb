"""One reconcile of one folder: survey both sides (the local walk and the DAM's change
feed or listing, at the same time), decide (hash only what the decision needs, then the
pure planner), and carry the plan out, bookmarking the DAM side for the next cheap run.
Also the daemon's per-batch variant, which decides just the paths the watcher reported.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from syncd.config.schema import Config, FolderConfig
from syncd.dam.client import DamClient
from syncd.engine.executor import Executor
from syncd.engine.match import RemoteView, view
from syncd.engine.plan import (
    DeletePolicy,
    FolderPlan,
    needs_hash,
    plan,
)
from syncd.engine.progress import Summary
from syncd.engine.strays import sweep_strays
from syncd.engine.survey import Survey, Surveyed
from syncd.errors import AuthError, DamError, StateError
from syncd.local.fs import ScanError
from syncd.local.scan import ScanResult, SortedWalk
from syncd.local.source import hash_files
from syncd.model import FolderTarget, Known, LocalFile, RemoteFile, Skip
from syncd.state.store import State

__all__ = ["FolderRun", "RunOptions"]

log = structlog.get_logger(__name__)

# Files planned and uploaded at a time on a first run into an empty DAM folder: big
# enough that the workers' drain at each end costs under 1%, small enough to hold twice.
_FRESH_STRETCH = 10_000
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
        self.survey = Survey(
            folder,
            dam,
            state,
            summary,
            self._unusable,
            verify=options.verify,
            dry_run=options.dry_run,
        )
        self.folder_id = self.survey.folder_id
        self.bookmark = self.survey.bookmark
        self.filt = self.survey.filt

    async def reconcile(self, executor: Executor) -> None:
        """Make the DAM folder mirror the local one (or print the plan)."""
        if not self.options.dry_run and self.folder_id is not None:
            # What uploads of unknown outcome left is settled before the listing is read.
            await self.sweep(wait=False)
        surveyed = await self.survey.run()
        if surveyed is None:
            return
        if surveyed.fresh:
            await self._upload_fresh(executor)
            return
        decided, unreadable = await self._decide(surveyed)
        if not self.options.dry_run and not decided.refused:
            # The whole folder was looked at and nothing waits for the user any more.
            self.state.clear_refusal(self.folder_id)
        if self.options.dry_run:
            if self.options.show_plan is not None:
                self.options.show_plan(self.folder, decided)
            return
        await self.carry_out(executor, decided, surveyed.listing, clean=not unreadable)

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

    async def _decide(self, surveyed: Surveyed) -> tuple[FolderPlan, list[Skip]]:
        """Hash what the decision needs, then plan. Returns the plan and the files that
        could not be read."""
        skipped, diff = surveyed.skipped, surveyed.diff
        if diff is not None:
            # Trusting the state: only the paths whose stat moved need a closer look.
            known = self.state.known_for(self.folder_id, [*diff.changed, *diff.gone])
            return await self._plan(
                skipped, diff.changed, known, diff.gone, diff.synced, diff.local, None
            )
        local, listing = surveyed.scanned, surveyed.listing
        assert local is not None
        assert listing is not None
        known = self.state.known(self.folder_id)
        gone = [p for p in known if p not in local]
        remote = view(listing, known, local)
        return await self._plan(skipped, local, known, gone, len(known), len(local), remote)

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
        return await self._plan(
            scanned.skipped, local, known, gone, synced, total, None, tally=False
        )

    async def _plan(
        self,
        skipped: list[Skip],
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

        protected = [s.path for s in skipped] + [s.path for s in unreadable]
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
        failed_before = len(self.summary.failed)
        await executor.run(self.target(), decided.actions)
        await self._finish(
            failed_before,
            trusted=clean and not decided.refused and not executor.needs_listing,
            changed=bool(decided.actions),
            kept=decided.unknown_kept if remote is not None else self.bookmark.unknown_kept,
            partial=partial,
        )

    async def _upload_fresh(self, executor: Executor) -> None:
        """Nothing synced yet and an empty DAM folder: every file is a plain upload, with
        nothing to match. The walk runs in path order in a thread, one stretch of about
        `_FRESH_STRETCH` files ahead of the uploads, and each stretch is planned and
        uploaded in turn, so memory holds two stretches whatever the size of the tree."""
        walk = SortedWalk(self.root, self.filt, self.dam.pacer.heartbeat)
        segments = iter(walk)

        def next_stretch() -> dict[str, LocalFile]:
            files: dict[str, LocalFile] = {}
            for _end, rows in segments:
                for row in rows:
                    files[row[0]] = LocalFile(*row)
                if len(files) >= _FRESH_STRETCH:
                    break
            return files

        send, receive = anyio.create_memory_object_stream[dict[str, LocalFile] | ScanError](1)

        async def produce() -> None:
            async with send:
                try:
                    while stretch := await anyio.to_thread.run_sync(next_stretch):
                        await send.send(stretch)
                except ScanError as exc:
                    await send.send(exc)

        failed_before = len(self.summary.failed)
        clean, changed, needs_listing = True, False, False
        nothing = view([], {}, ())
        stopped: list[BaseException] = []
        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(produce)
            async for stretch in receive:
                if isinstance(stretch, ScanError):
                    self._unusable(str(stretch))
                    return
                decided, unreadable = await self._plan(
                    [], stretch, {}, [], 0, len(stretch), nothing
                )
                clean = clean and not unreadable
                changed = changed or bool(decided.actions)
                try:
                    await executor.run(self.target(), decided.actions)
                except (AuthError, StateError) as exc:
                    # Raised after the task group, so callers get the error itself.
                    stopped.append(exc)
                    tg.cancel_scope.cancel()
                    break
                needs_listing = needs_listing or executor.needs_listing
        if stopped:
            raise stopped[0]
        self.summary.add_skips(walk.skipped)
        self.state.clear_refusal(self.folder_id)
        await self._finish(
            failed_before, trusted=clean and not needs_listing, changed=changed, kept=0
        )

    async def _finish(
        self, failed_before: int, *, trusted: bool, changed: bool, kept: int, partial: bool = False
    ) -> None:
        """Settle the uploads of unknown outcome, then bookmark the DAM side: its count,
        read again unless nothing changed it, or no bookmark at all when the next run must
        list the DAM in full."""
        target = self.target()
        # A one-shot run waits for lagging listings to show what uploads of unknown outcome
        # left; a daemon batch leaves that to its next reconcile.
        await self.sweep(wait=not partial)
        failed_now = [f.path for f in self.summary.failed[failed_before:]]
        if not partial:
            self.state.keep_parked_only(target.folder_id, failed_now)
        count = None
        trusted = trusted and not failed_now
        if trusted and not changed:
            count = self.survey.seen_count  # nothing changed it since it was read
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
        self.state.set_bookmark(
            target.folder_id, self.dam.bookmark(), count, unknown_kept=kept, reconciled=not partial
        )


def _is_empty(root: Path) -> bool:
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is None
    except OSError:
        return True
