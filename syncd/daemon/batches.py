"""One batch of the daemon: the paths that settled in the queue, looked at on disk (events
are only hints), planned folder by folder and carried out by the shared executor."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import anyio
import structlog

from syncd.config.schema import Config
from syncd.daemon.queue import Key, SettleQueue
from syncd.daemon.watchers import Watched, Watchers
from syncd.dam.client import DamClient
from syncd.engine.executor import Executor
from syncd.engine.folder import FolderRun, RunOptions
from syncd.engine.progress import Summary
from syncd.local.fs import root_status
from syncd.local.scan import scan_paths
from syncd.state.store import State

__all__ = ["Batch", "sync_settled"]

log = structlog.get_logger(__name__)


class Batch(NamedTuple):
    """What a batch works with: the daemon's current config, client and queue."""

    config: Config
    dam: DamClient
    state: State
    executor: Executor
    queue: SettleQueue
    watchers: Watchers


async def sync_settled(
    due: list[Key], batch: Batch, summary: Summary, beat: Callable[[], None]
) -> None:
    """Sync these settled paths; what happened goes into `summary`."""
    by_folder: dict[int, list[str]] = {}
    for fid, rel in due:
        if fid in batch.watchers.folders:  # a folder removed by a reload is not synced
            by_folder.setdefault(fid, []).append(rel)
    for fid, rels in by_folder.items():
        folder = batch.watchers.folders[fid]
        with structlog.contextvars.bound_contextvars(folder=folder.config.name):
            await _sync_folder(batch, fid, folder, rels, summary, beat)


async def _sync_folder(
    batch: Batch,
    fid: int,
    folder: Watched,
    rels: list[str],
    summary: Summary,
    beat: Callable[[], None],
) -> None:
    config = folder.config
    problem = root_status(config.local)
    if problem is not None:
        # An unmounted or vanished root: no delete, no upload; its watcher is armed
        # again once it is back, and the reconcile that follows sees everything.
        log.error("folder_unusable", problem=problem)
        summary.refused.append(f"{config.name}: {problem}")
        return
    run = FolderRun(config, batch.config, batch.dam, batch.state, RunOptions(), summary)
    scanned = await anyio.to_thread.run_sync(scan_paths, config.local, rels, run.filt, beat)
    # A directory reported as new lists files that may still be written: those with
    # their own pending events are left alone until they settle.
    later = {p for p in scanned.files if batch.queue.waiting((fid, p))}
    summary.add_skips(scanned.skipped)
    gone_dirs = [
        rel
        for rel in rels
        if batch.watchers.stat((fid, rel)) is None and batch.state.known_under(run.folder_id, rel)
    ]
    decided, unreadable = await run.decide_paths(scanned, rels, later=later)
    await run.carry_out(batch.executor, decided, None, clean=not unreadable, partial=True)
    if gone_dirs and not decided.refused:
        await batch.dam.remove_emptied_folders(config.remote, gone_dirs)
