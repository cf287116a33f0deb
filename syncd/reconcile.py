"""One reconcile pass: make the DAM mirror every configured folder.

Per folder: scan the local root (stat only), load the state, find out what changed on
the DAM as cheaply as possible, hash only the files whose stat changed, plan, then either
print the plan (`--dry-run`) or carry it out.

The DAM side costs a constant number of requests on a re-run: the folder's recursive
file count plus an `updated_after` listing since the last run. Only when those disagree
with the state (or on the first run, after failures, or with `--verify`) is the folder
listed in full.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import anyio
import structlog

from syncd.config import Config, FolderConfig
from syncd.dam import DamClient
from syncd.errors import AuthError, DamError
from syncd.filters import SyncdFilter
from syncd.model import Known, LocalFile, Op, RemoteFile, Skip
from syncd.pacer import Pacer
from syncd.plan import DeletePolicy, FolderPlan, group_remote, needs_hash, plan, stat_changes
from syncd.progress import Progress, Summary, human_bytes
from syncd.scan import FileChanged, ScanError, ScanResult, UnsafePath, root_status, scan
from syncd.source import hash_file
from syncd.state import FolderBookmark, State
from syncd.workers import Executor, FolderTarget

__all__ = ["RunOptions", "initial_sync"]

log = structlog.get_logger("syncd.reconcile")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Flags of one `--initial-sync` run."""

    dry_run: bool = False
    verify: bool = False
    force_delete: bool = False


async def initial_sync(
    config: Config, key: str, options: RunOptions, progress: Progress, out: TextIO
) -> Summary:
    """Reconcile every folder once. Raises `AuthError` when the key is rejected."""
    summary = Summary()
    pacer = Pacer(config.dam.workers)
    state = State.open(config.state.path, readonly=options.dry_run)
    try:
        async with DamClient(
            config.dam.base_url,
            config.dam.token,
            key,
            pacer,
            workers=config.dam.workers,
            timeout_s=config.dam.timeout_s,
            connect_timeout_s=config.dam.connect_timeout_s,
        ) as dam:
            await dam.check_access()
            executor = Executor(dam, state, summary, progress, workers=config.dam.workers)
            for folder in config.folders:
                with structlog.contextvars.bound_contextvars(folder=folder.name):
                    await _reconcile_folder(
                        folder, config, dam, state, executor, options, summary, out
                    )
    finally:
        progress.close()
        state.close()
    return summary


async def _reconcile_folder(
    folder: FolderConfig,
    config: Config,
    dam: DamClient,
    state: State,
    executor: Executor,
    options: RunOptions,
    summary: Summary,
    out: TextIO,
) -> None:
    root = folder.local
    folder_id = state.folder_id(str(root), folder.remote)
    bookmark = state.bookmark(folder_id)
    problem = root_status(root)
    if problem is not None:
        summary.refused.append(f"{folder.name}: {problem}; nothing was synced or deleted")
        log.error("folder_unusable", problem=problem)
        return

    filt = SyncdFilter(root, folder.exclude)
    # The walk runs in a thread while the DAM is asked what changed on its side.
    walked: list[ScanResult | ScanError] = []
    remote: dict[str, list[RemoteFile]] | None = None
    failed: list[DamError] = []

    async def walk() -> None:
        try:
            walked.append(await anyio.to_thread.run_sync(scan, root, filt))
        except ScanError as exc:
            walked.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(walk)
        try:
            remote = await _remote_index(dam, folder, state, folder_id, bookmark, options.verify)
        except DamError as exc:
            failed.append(exc)
            tg.cancel_scope.cancel()
    if failed:
        if isinstance(failed[0], AuthError):
            raise failed[0]  # outside the task group, so callers see it unwrapped
        summary.failed.append(Skip(folder.name, f"could not list the DAM folder: {failed[0]}"))
        log.error("folder_failed", error=str(failed[0]))
        return
    scanned = walked[0]
    if isinstance(scanned, ScanError):
        summary.refused.append(f"{folder.name}: {scanned}; nothing was synced or deleted")
        log.error("folder_unusable", problem=str(scanned))
        return
    summary.skipped.extend(scanned.skipped)
    for skip in scanned.skipped:
        log.warning("file_skipped", path=skip.path, reason=skip.reason)

    total = len(scanned.files)  # before unreadable files are taken out below
    if remote is None:
        # Trusting the state: only the paths whose stat moved need a closer look.
        changed, gone, synced = stat_changes(scanned.files, state.stats(folder_id))
        local = {p: scanned.files[p] for p in changed}
        known = state.known_for(folder_id, [*changed, *gone])
    else:
        local = scanned.files
        known = state.known(folder_id)
        gone = [p for p in known if p not in local]
        synced = len(known)
    to_hash = needs_hash(local, known, remote)
    summary.hashed += len(to_hash)
    unreadable = await _hash(root, local, to_hash, config.dam.workers)
    for skip in unreadable:
        del local[skip.path]
    summary.failed.extend(unreadable)

    protected = [s.path for s in scanned.skipped] + [s.path for s in unreadable]
    protected += [p for p in gone if filt.path_ignored(p, False)]
    policy = DeletePolicy(
        delete_unknown=folder.delete_unknown,
        max_delete_percent=folder.max_delete_percent,
        max_delete_count=folder.max_delete_count,
        force=options.force_delete,
    )
    decided = plan(
        local,
        known,
        remote,
        policy,
        protected=protected,
        synced=synced,
        local_total=total,
        still_used=_still_used(state, folder_id, known, gone, local, remote),
    )
    summary.unknown_kept += decided.unknown_kept
    touched = sum(1 for a in decided.actions if a.local is not None)
    summary.unchanged += total - len(unreadable) - touched
    if decided.refused:
        summary.refused.append(f"{folder.name}: {decided.refused}")
        log.error("deletes_refused", reason=decided.refused, withheld=decided.withheld_deletes)

    if options.dry_run:
        _print_plan(out, folder, decided)
        return
    target = FolderTarget(
        root=root,
        remote=folder.remote,
        folder_id=state.ensure_folder(str(root), folder.remote),
        stream_threshold=config.dam.stream_threshold_bytes,
    )
    failed_before = len(summary.failed)
    await executor.run(target, decided.actions)
    if len(summary.failed) == failed_before and not unreadable:
        listed_at = dam.bookmark()
        state.set_bookmark(
            target.folder_id,
            listed_at,
            await dam.count(folder.remote),
            unknown_kept=decided.unknown_kept if remote is not None else bookmark.unknown_kept,
        )
    else:
        # Some outcomes are unknown: the next run lists the DAM in full and adopts
        # whatever did land, instead of trusting the count.
        state.set_bookmark(target.folder_id, None, None)


def _still_used(
    state: State,
    folder_id: int | None,
    known: Mapping[str, Known],
    gone: list[str],
    local: Mapping[str, LocalFile],
    remote: Mapping[str, list[RemoteFile]] | None,
) -> set[str]:
    """The uuids of assets that a deletion would take from files that stay."""
    if remote is not None:
        return {k.uuid for p, k in known.items() if p in local}
    gone_uuids = [known[p].uuid for p in gone if p in known]
    if not gone_uuids:
        return set()
    refs = state.uuid_refs(folder_id, gone_uuids)
    leaving = Counter(gone_uuids)
    return {u for u, n in refs.items() if n > leaving[u]}


async def _remote_index(
    dam: DamClient,
    folder: FolderConfig,
    state: State,
    folder_id: int | None,
    bookmark: FolderBookmark,
    verify: bool,
) -> dict[str, list[RemoteFile]] | None:
    """The DAM listing when the state cannot be trusted, else None.

    Returns None after a constant number of requests when the DAM's recursive count
    matches the last run's and every change since then is one syncd made itself.
    """
    reason = _why_full(bookmark, verify, bool(state.parked(folder_id)), folder.delete_unknown)
    if reason is None:
        count = await dam.count(folder.remote)
        if count is None or count != bookmark.remote_count:
            reason = f"remote file count {count} differs from {bookmark.remote_count}"
        else:
            assert bookmark.listed_at is not None
            changes = [
                r async for r in dam.list_files(folder.remote, updated_after=bookmark.listed_at)
            ]
            known = state.known_for(folder_id, (r.path for r in changes))
            for r in changes:
                k = known.get(r.path)
                if k is None or k.uuid != r.uuid or r.sha1 not in (k.remote_sha1, k.sha1):
                    reason = f"{r.path} changed on the DAM"
                    break
    if reason is None:
        log.info("remote_unchanged", folder_remote=folder.remote)
        return None
    log.info("remote_full_listing", folder_remote=folder.remote, reason=reason)
    return group_remote([r async for r in dam.list_files(folder.remote)])


def _why_full(
    bookmark: FolderBookmark, verify: bool, parked: bool, delete_unknown: bool
) -> str | None:
    if verify:
        return "--verify"
    if delete_unknown and bookmark.unknown_kept:
        return f"delete_unknown is on and the last run kept {bookmark.unknown_kept} unknown files"
    if bookmark.listed_at is None or bookmark.remote_count is None:
        return "first run, or the last run did not finish cleanly"
    if parked:
        return "files failed last time"
    return None


async def _hash(
    root: Path, local: dict[str, LocalFile], paths: Iterable[str], workers: int
) -> list[Skip]:
    """Fill in the sha1 of `paths` in `local`, in worker threads. Returns the files that
    could not be read; files that vanished are dropped from `local`."""
    limiter = anyio.CapacityLimiter(max(2, workers // 2))
    unreadable: list[Skip] = []

    async def one(path: str) -> None:
        lf = local[path]
        try:
            sha1 = await anyio.to_thread.run_sync(hash_file, root, lf, limiter=limiter)
        except FileNotFoundError:
            local.pop(path, None)
        except (FileChanged, UnsafePath, OSError) as exc:
            unreadable.append(Skip(path, f"cannot read the file: {exc}"))
        else:
            local[path] = replace(lf, sha1=sha1)

    async with anyio.create_task_group() as tg:
        for path in paths:
            tg.start_soon(one, path)
    return unreadable


_VERBS = {Op.UPLOAD: "upload", Op.REPLACE: "update", Op.DELETE: "delete", Op.ADOPT: "match"}


def _print_plan(out: TextIO, folder: FolderConfig, decided: FolderPlan) -> None:
    out.write(f"{folder.local} → {folder.remote}\n")
    nbytes = 0
    for a in decided.actions:
        verb = _VERBS.get(a.op)
        if verb is None:
            continue
        size = a.local.size if a.local is not None else 0
        if a.op in (Op.UPLOAD, Op.REPLACE):
            nbytes += size
        extra = f"  ({human_bytes(size)})" if a.local is not None else f"  (uuid {a.uuid})"
        out.write(f"  {verb:<7} {a.path}{extra}\n")
    if decided.refused:
        out.write(f"  REFUSED {decided.refused}\n")
    out.write(
        f"  plan: {decided.count(Op.UPLOAD)} uploads, {decided.count(Op.REPLACE)} updates,"
        f" {decided.count(Op.DELETE)} deletes, {decided.count(Op.ADOPT)} matched on the DAM"
        f" ({human_bytes(nbytes)} to send)\n"
    )
