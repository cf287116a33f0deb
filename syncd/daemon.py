"""The daemon: reconcile once, then watch every folder and keep the DAM in step until
stopped.

It owns the lifecycle. At start-up it runs the same reconcile as `--initial-sync`, replays
the journal of paths a previous daemon had queued, and arms a watcher per folder. Watcher
events go into the settle queue. One dispatcher takes the paths that have settled, looks
at the filesystem (events are only hints), plans them, and hands the actions to the
workers. A periodic reconcile, also run on SIGHUP, catches whatever the kernel dropped.

SIGTERM or SIGINT stops the intake: the watchers stop, and the batch in flight gets
`shutdown_grace_s` to finish. What is left stays in the journal for the next start. A
second SIGINT exits at once.
"""

from __future__ import annotations

import io
import os
import signal
import time

import anyio
import structlog

from syncd.config import Config, FolderConfig
from syncd.dam import DamClient
from syncd.errors import AuthError, DamError, StateError
from syncd.filters import SyncdFilter
from syncd.folder import FolderRun, RunOptions
from syncd.progress import NullProgress, Summary
from syncd.queue import Key, SettleQueue, Stat
from syncd.reconcile import check_access, make_dam, make_pacer
from syncd.scan import root_status, scan_paths
from syncd.state import State
from syncd.watch import watch_folder
from syncd.workers import Executor

__all__ = ["Daemon"]

log = structlog.get_logger("syncd.daemon")

_JOURNAL_EVERY_S = 1.0


class Daemon:
    """One daemon process. `run()` until `request_stop()` (or a signal).

    Args:
        config: the validated configuration.
        key: the API key.
        handle_signals: install the SIGTERM/SIGINT/SIGHUP handling (off in tests that
            call `request_stop()` themselves).
    """

    def __init__(self, config: Config, key: str, *, handle_signals: bool = True) -> None:
        self.config = config
        self.key = key
        self.handle_signals = handle_signals
        self.summary = Summary()
        self.forced = False
        self.ready = anyio.Event()
        self._stop = anyio.Event()
        self._stop_watch = anyio.Event()
        self._reconcile_now = anyio.Event()
        self._noted = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._lock = anyio.Lock()
        self._filters = [SyncdFilter(f.local, f.exclude) for f in config.folders]
        self.queue = SettleQueue(config.sync.settle_ms / 1000, self._stat)
        self._cancel: anyio.CancelScope | None = None
        self._journalled: set[Key] = set()  # what the journal table holds now
        self._ids: list[int] = []  # state folder ids, by folder index

    # requests (what signals turn into; tests call them directly)

    def request_stop(self, signum: int | None = None) -> None:
        """Stop the intake and finish the batch in flight (up to the grace period). A
        second SIGINT stops at once."""
        if self._stop.is_set() and signum == signal.SIGINT and self._cancel is not None:
            log.warning("daemon_forced_exit")
            self.forced = True
            self._cancel.cancel()
            return
        log.info("daemon_stopping", signal=signal.Signals(signum).name if signum else None)
        self._stop.set()

    def request_reconcile(self) -> None:
        """Reconcile every folder now (as SIGHUP does)."""
        self._reconcile_now.set()

    # the run

    async def run(self) -> None:
        """Run until stopped. Raises `AuthError` when the key is rejected."""
        state = State.open(self.config.state.path)
        self.state = state
        try:
            async with make_dam(self.config, self.key, make_pacer(self.config)) as dam:
                self.dam = dam
                await check_access(dam, self.config)
                self.executor = Executor(
                    dam, state, self.summary, NullProgress(), workers=self.config.dam.workers
                )
                await self._run(dam)
        finally:
            self._save_journal()  # what is still queued is done after the next start
            state.close()
            log.info("daemon_stopped", forced=self.forced, **self.summary.as_dict())

    async def _run(self, dam: DamClient) -> None:
        await self._reconcile_all("start")
        self._replay_journal()
        async with anyio.create_task_group() as tg:
            self._cancel = tg.cancel_scope
            if self.handle_signals:
                tg.start_soon(self._signals, name="syncd signals")
            for index in range(len(self.config.folders)):
                await tg.start(self._watch, index, name=f"syncd watch {index}")
            tg.start_soon(self._dispatch, name="syncd dispatcher")
            tg.start_soon(self._periodic, name="syncd reconcile timer")
            tg.start_soon(self._journal, name="syncd journal")
            self.ready.set()
            log.info(
                "daemon_ready",
                folders=len(self.config.folders),
                settle_ms=self.config.sync.settle_ms,
                queued=len(self.queue),
            )
            await self._stop.wait()
            self._stop_watch.set()
            with anyio.move_on_after(self.config.sync.shutdown_grace_s):
                await self._idle.wait()
            tg.cancel_scope.cancel()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    log.info("reconcile_requested", signal="SIGHUP")
                    self.request_reconcile()
                else:
                    self.request_stop(signum)

    async def _watch(
        self, index: int, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        folder = self.config.folders[index]

        def sink(rels: set[str]) -> None:
            self.queue.note(((index, rel) for rel in rels), time.monotonic())
            self._noted.set()

        await watch_folder(
            folder.local,
            self._filters[index],
            sink,
            stop=self._stop_watch,
            force_polling=folder.force_polling,
            task_status=task_status,
        )

    async def _dispatch(self) -> None:
        while not self._stop.is_set():
            due_at = self.queue.next_due()
            if due_at is None:
                await self._noted.wait()
                self._noted = anyio.Event()
                continue
            delay = due_at - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            due = self.queue.take_due(time.monotonic())
            if not due or self._stop.is_set():
                continue
            self._idle = anyio.Event()
            try:
                async with self._lock:
                    await self._process(due)
                # Only a finished batch leaves the queue: one cut short by the grace
                # period stays in flight, so the journal keeps it for the next start.
                self.queue.done(due, time.monotonic())
            finally:
                self._idle.set()

    async def _process(self, due: list[Key]) -> None:
        by_folder: dict[int, list[str]] = {}
        for index, rel in due:
            by_folder.setdefault(index, []).append(rel)
        batch = Summary()
        self.executor.summary = batch
        for index, rels in by_folder.items():
            folder = self.config.folders[index]
            with structlog.contextvars.bound_contextvars(folder=folder.name):
                await self._process_folder(index, folder, rels, batch)
        log.info("sync_batch", paths=len(due), **batch.as_dict())
        self.summary.absorb(batch)

    async def _process_folder(
        self, index: int, folder: FolderConfig, rels: list[str], batch: Summary
    ) -> None:
        problem = root_status(folder.local)
        if problem is not None:
            # An unmounted or vanished root: no delete, no upload; the next reconcile
            # after it comes back sees everything.
            log.error("folder_unusable", problem=problem)
            batch.refused.append(f"{folder.name}: {problem}")
            return
        run = FolderRun(folder, self.config, self.dam, self.state, RunOptions(), batch)
        scanned = await anyio.to_thread.run_sync(scan_paths, folder.local, rels, run.filt)
        # A directory reported as new lists files that may still be written: those with
        # their own pending events are left alone until they settle.
        later = {p for p in scanned.files if self.queue.waiting((index, p))}
        for skip in scanned.skipped:
            (batch.failed if skip.failed else batch.skipped).append(skip)
        gone_dirs = [
            rel
            for rel in rels
            if self._stat((index, rel)) is None and self.state.known_under(run.folder_id, rel)
        ]
        decided, unreadable = await run.decide_paths(scanned, rels, later=later)
        await run.carry_out(self.executor, decided, None, clean=not unreadable, partial=True)
        if gone_dirs and not decided.refused:
            await self._remove_folders(folder, gone_dirs)

    async def _remove_folders(self, folder: FolderConfig, rels: list[str]) -> None:
        """A local directory whose synced files were all deleted takes its DAM folder with
        it, once that folder is empty (folders syncd filled mirror local directories)."""
        for rel in sorted(rels, key=len, reverse=True):  # children before parents
            path = f"{folder.remote.rstrip('/')}/{rel}"
            try:
                if await self.dam.remove_empty_folder(path):
                    log.info("folder_removed", remote=path)
            except DamError as exc:
                if isinstance(exc, AuthError):
                    raise
                log.warning("folder_not_removed", remote=path, error=str(exc))

    async def _periodic(self) -> None:
        while True:
            with anyio.move_on_after(self.config.sync.reconcile_interval_s):
                await self._reconcile_now.wait()
            reason = "requested" if self._reconcile_now.is_set() else "periodic"
            self._reconcile_now = anyio.Event()
            await self._reconcile_all(reason)

    async def _reconcile_all(self, reason: str) -> None:
        """The cheap stat+state reconcile of every folder (the one `--initial-sync` runs)."""
        run_summary = Summary()
        self.executor.summary = run_summary
        async with self._lock:
            for folder in self.config.folders:
                with structlog.contextvars.bound_contextvars(folder=folder.name):
                    run = FolderRun(
                        folder, self.config, self.dam, self.state, RunOptions(), run_summary
                    )
                    await run.reconcile(self.executor, io.StringIO())  # prints only dry runs
        log.info("reconcile_done", reason=reason, **run_summary.as_dict())
        self.summary.absorb(run_summary)

    # the journal

    def _folder_ids(self) -> list[int]:
        return [self.state.ensure_folder(str(f.local), f.remote) for f in self.config.folders]

    def _replay_journal(self) -> None:
        self._ids = self._folder_ids()
        ids = {fid: i for i, fid in enumerate(self._ids)}
        keys = [(ids[fid], path) for fid, path in self.state.journal() if fid in ids]
        self._journalled = set(keys)
        if keys:
            log.info("journal_replayed", paths=len(keys))
            self.queue.note(keys, time.monotonic())
            self._noted.set()

    def _save_journal(self) -> None:
        """Write what changed in the queue since the last save (a burst of 20,000 paths
        is one insert, not a rewrite every second)."""
        keys = self.queue.tracked()
        added, removed = keys - self._journalled, self._journalled - keys
        if not added and not removed:
            return
        try:
            ids = self._ids
            self.state.update_journal(
                ((ids[i], path) for i, path in added), ((ids[i], path) for i, path in removed)
            )
        except StateError as exc:
            log.error("journal_not_saved", error=str(exc))
            return
        self._journalled = keys

    async def _journal(self) -> None:
        while True:
            await anyio.sleep(_JOURNAL_EVERY_S)
            self._save_journal()

    # plumbing

    def _stat(self, key: Key) -> Stat:
        index, rel = key
        try:
            st = os.lstat(os.path.join(self.config.folders[index].local, rel))
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns
