"""The daemon: reconcile once, then watch every folder and keep the DAM in step until
stopped.

It owns the lifecycle. At start-up it arms a watcher per folder, runs the same
reconcile as `--initial-sync`, replays the journal of paths a previous daemon had
queued, and only then tells systemd it is ready. Watcher events go into the settle
queue. One dispatcher takes the paths that have settled, looks at the filesystem
(events are only hints), plans them, and hands the actions to the workers. A periodic
reconcile catches whatever the kernel dropped.

SIGHUP reloads the configuration (`syncd.config.diff` says what changed) and reconciles.
SIGTERM or SIGINT stops the intake: the watchers stop, and the batch in flight gets
`shutdown_grace_s` to finish. What is left stays in the journal for the next start. A
second SIGINT exits at once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import anyio
import structlog

from syncd.config.schema import Config
from syncd.daemon.batches import Batch, sync_settled
from syncd.daemon.journal import QueueJournal
from syncd.daemon.queue import Key, QueueStats, SettleQueue
from syncd.daemon.reload import PreparedReload, prepare, reread_config
from syncd.daemon.watchers import Watchers
from syncd.dam.client import DamClient
from syncd.dam.connect import check_access, make_dam, make_pacer
from syncd.dam.pacer import MAX_PAUSE_S, Pacer
from syncd.engine.executor import Executor
from syncd.engine.folder import FolderRun, RunOptions
from syncd.engine.progress import NullProgress, Summary
from syncd.errors import ConfigError, DamError, StateError, most_telling
from syncd.redact import redact
from syncd.service.metrics import Metrics
from syncd.service.systemd import Liveness, Notifier, status_line, supervise, watchdog_interval
from syncd.state.store import State

__all__ = ["Daemon"]

log = structlog.get_logger(__name__)

_JOURNAL_EVERY_S = 1.0


class Daemon:
    """One daemon process. `run()` until `request_stop()` (or a signal).

    Args:
        config: the validated configuration.
        key: the API key.
        handle_signals: install the SIGTERM/SIGINT/SIGHUP handling (off in tests that
            call `request_stop()` themselves).
        notifier: where sd_notify messages go (default: `$NOTIFY_SOCKET`, if any).
        reread: how a reload gets the new config and key (default: the same file).
        stall_s: a busy daemon with no progress for this long is wedged and stops its
            watchdog pings (default: one request timeout plus the longest pause).
    """

    def __init__(
        self,
        config: Config,
        key: str,
        *,
        handle_signals: bool = True,
        notifier: Notifier | None = None,
        reread: Callable[[Config], tuple[Config, str]] = reread_config,
        stall_s: float | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.handle_signals = handle_signals
        self.notifier = notifier or Notifier()
        self.reread = reread
        self.summary = Summary()
        self.failures = 0
        self.forced = False
        self.ready = anyio.Event()
        self._stop = anyio.Event()
        self._reconcile_now = anyio.Event()
        self._reload_now = anyio.Event()
        self._noted = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._lock = anyio.Lock()
        self.queue = SettleQueue(config.sync.settle_ms / 1000, lambda key: self.watchers.stat(key))
        self._cancel: anyio.CancelScope | None = None
        self._last_sync: float | None = None
        self._stall_s = stall_s
        self.liveness = Liveness(self.stall_limit(config))
        self.pacer: Pacer | None = None
        self.metrics = Metrics(lambda: self.pacer)

    def stall_limit(self, config: Config) -> float:
        """How long a busy daemon may go without progress: one request timeout plus the
        longest pause the pacer may take (a rate limit, or a backoff)."""
        if self._stall_s is not None:
            return self._stall_s
        return config.dam.timeout_s + max(MAX_PAUSE_S, config.dam.backoff_max_s) + 30.0

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

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
        self.notifier.stopping()
        self._stop.set()

    def request_reconcile(self) -> None:
        """Reconcile every folder now."""
        self._reconcile_now.set()

    def request_reload(self) -> None:
        """Re-read the config and the API key, apply them, then reconcile (SIGHUP)."""
        self._reload_now.set()
        self._reconcile_now.set()

    # the run

    async def run(self) -> None:
        """Run until stopped. Raises `AuthError` when the key is rejected."""
        state = State.open(self.config.state.path)
        self.state, self.journal = state, QueueJournal(state)
        self.watchers = Watchers(state, self._note, self.request_reconcile)
        try:
            if (listen := self.config.metrics.listen) is not None:
                self.metrics.serve(*listen, source=self.config.source)
            pacer = make_pacer(self.config)
            self.install_dam(await make_dam(self.config, self.key, pacer).__aenter__(), pacer)
            try:
                await check_access(self.dam, self.config)
                await self._run()
            except BaseExceptionGroup as group:
                raise most_telling(group, anyio.get_cancelled_exc_class()) from None
            finally:
                await self.dam.__aexit__(None, None, None)
        finally:
            self.metrics.close()
            self.journal.save(self.queue.tracked())  # done after the next start
            state.close()
            self.notifier.close()
            log.info("daemon_stopped", forced=self.forced, **self.summary.as_dict())

    def install_dam(self, dam: DamClient, pacer: Pacer) -> None:
        """Use this (entered) DAM client and its pacer from now on."""
        pacer.heartbeat = self.liveness.beat
        self.dam, self.pacer = dam, pacer
        self.executor = Executor(
            dam, self.state, self.summary, NullProgress(), workers=pacer.limit.maximum
        )

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._cancel = tg.cancel_scope
            self.watchers.bind(tg)
            if self.handle_signals:
                tg.start_soon(self._signals, name="syncd signals")
            tg.start_soon(self._supervise, name="syncd watchdog")
            tg.start_soon(self._start, tg, name="syncd start")
            await self._stop.wait()
            self.watchers.stop_all()
            with anyio.move_on_after(self.config.sync.shutdown_grace_s):
                await self._idle.wait()
            tg.cancel_scope.cancel()

    async def _start(self, tg: anyio.abc.TaskGroup) -> None:
        """Arm the watchers, reconcile, then serve; a stop meanwhile ends it (the
        reconcile gets the grace period like a batch)."""
        # Watch first, so nothing changed during the first reconcile is missed.
        for folder in self.config.folders:
            await self.watchers.start(folder)
        self.metrics.folders.set(len(self.watchers.folders))
        await self._reconcile_all("start")
        if self.stopping:
            return
        self._replay_journal()
        tg.start_soon(self._dispatch, name="syncd dispatcher")
        tg.start_soon(self._periodic, name="syncd reconcile timer")
        tg.start_soon(self._journal, name="syncd journal")
        self.ready.set()
        self.notifier.ready(self.status())
        log.info(
            "daemon_ready",
            folders=len(self.watchers.folders),
            settle_ms=self.config.sync.settle_ms,
            queued=len(self.queue),
        )

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    log.info("reload_requested", signal="SIGHUP")
                    self.request_reload()
                else:
                    self.request_stop(signum)

    def _note(self, keys: Iterable[Key]) -> None:
        self.queue.note(keys, time.monotonic())
        self._noted.set()

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
            async with self.busy():
                await self._process(due)

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Hold the lock for one batch, reconcile or reload; the watchdog expects
        progress meanwhile."""
        async with self._lock:
            # A stop waits (up to the grace period) for this to end.
            self._idle = anyio.Event()
            self.liveness.busy = True
            self.liveness.beat()
            try:
                yield
            finally:
                self.liveness.busy = False
                self.liveness.beat()
                self._idle.set()

    async def _process(self, due: list[Key]) -> None:
        batch = Summary()
        self.executor.summary = batch
        await sync_settled(
            due,
            Batch(self.config, self.dam, self.state, self.executor, self.queue, self.watchers),
            batch,
            self.liveness.beat,
        )
        # Only a finished batch leaves the queue: one cut short by the grace period stays
        # in flight, so the journal keeps it for the next start.
        now = time.monotonic()
        self.metrics.observe_lag(self.queue.done(due, now))
        self._queue_gauges(now)
        log.info("sync_batch", paths=len(due), **batch.as_dict())
        self._finished(batch)

    async def _periodic(self) -> None:
        while True:
            with anyio.move_on_after(self.config.sync.reconcile_interval_s):
                await self._reconcile_now.wait()
            if self.stopping:
                return  # no reload or reconcile starts during the grace period
            reason = "requested" if self._reconcile_now.is_set() else "periodic"
            self._reconcile_now = anyio.Event()
            if self._reload_now.is_set():
                self._reload_now = anyio.Event()
                reason = "reload"
                await self._reload()
            await self._reconcile_all(reason)

    async def _reconcile_all(self, reason: str) -> None:
        """The cheap stat+state reconcile of every folder (the one `--initial-sync` runs)."""
        run_summary = Summary()
        async with self.busy():
            self.executor.summary = run_summary  # under the lock: no batch reports into it
            for folder in list(self.watchers.folders.values()):
                with structlog.contextvars.bound_contextvars(folder=folder.config.name):
                    run = FolderRun(
                        folder.config, self.config, self.dam, self.state, RunOptions(), run_summary
                    )
                    await run.reconcile(self.executor)
        log.info("reconcile_done", reason=reason, **run_summary.as_dict())
        self._finished(run_summary)

    def _finished(self, part: Summary) -> None:
        """Account for a finished batch or reconcile."""
        self.summary.absorb(part)
        # The daemon runs for months: keep counts, not every failure ever seen.
        self.failures += len(part.failed)
        del self.summary.failed[:-100], self.summary.refused[:-100]
        self.metrics.record(part)
        self._last_sync = time.time()

    # reload (SIGHUP)

    async def _reload(self) -> None:
        """Reload the config and key; `RELOADING=1` before, `READY=1` after, whether the
        new config was taken or refused (but not once the daemon is stopping)."""
        if self.stopping:
            return
        self.notifier.reloading()
        try:
            new, key = await anyio.to_thread.run_sync(self.reread, self.config)
            redact(key)
            async with self.busy():  # no batch or reconcile is in flight meanwhile
                assert self.pacer is not None
                await self.commit(
                    await prepare(self.config, self.key, new, key, self.watchers, self.pacer)
                )
        # AuthError is a DamError; OSError: e.g. a new folder's watcher could not start.
        except (ConfigError, DamError, OSError, StateError) as exc:
            named = isinstance(exc, OSError | StateError)
            error = f"{type(exc).__name__}: {exc}" if named else str(exc)
            log.error("reload_rejected", error=error, kept=str(self.config.source))
        finally:
            if not self.stopping:
                self.notifier.ready(self.status())

    async def commit(self, ready: PreparedReload) -> None:
        """Take a prepared reload; nothing here can fail (but a metrics port in use)."""
        if ready.swap is not None:
            old_dam = self.dam
            self.install_dam(*ready.swap)
            await old_dam.__aexit__(None, None, None)
            log.info("dam_client_replaced", pacer_rebuilt=ready.plan.new_pacer)
        old, self.config, self.key = self.config, ready.config, ready.key
        self.queue.settle_s = ready.config.sync.settle_ms / 1000
        self.liveness.stall_s = self.stall_limit(ready.config)
        ready.apply_folders(self.watchers, self.queue)
        self.metrics.folders.set(len(self.watchers.folders))
        self.metrics.move(old.metrics.listen, ready.config.metrics.listen, ready.config.source)
        plan = ready.plan
        log.info(
            "reload_done",
            added=len(plan.added),
            removed=len(plan.removed),
            changed=len(plan.changed),
            dam_changed=list(plan.dam_keys),
            key_changed=ready.key_changed,
            sync_changed=old.sync != ready.config.sync,
        )

    # the watchdog and STATUS=

    def status(self, state: str = "watching", now: float | None = None) -> str:
        """The `STATUS=` line; the queue gauges are refreshed from the same snapshot."""
        stats = self._queue_gauges(time.monotonic() if now is None else now)
        return status_line(
            folders=len(self.watchers.folders),
            queued=stats.pending,
            in_flight=stats.in_flight,
            last_sync=self._last_sync,
            failures=self.failures,
            state=state,
            fleet=self.pacer.statistics() if self.pacer and self.pacer.fleet else None,
        )

    async def _supervise(self) -> None:
        def tick(now: float, wedged: bool) -> str:
            if wedged:
                return self.status("stalled", now)
            return self.status("watching" if self.ready.is_set() else "starting:", now)

        await supervise(self.notifier, self.liveness, tick, watchdog_interval(), self.ready)

    def _queue_gauges(self, now: float) -> QueueStats:
        stats = self.queue.statistics(now)
        self.metrics.queue_depth.set(stats.pending + stats.in_flight)
        self.metrics.queue_oldest.set(stats.oldest_age_s)
        return stats

    # the journal

    def _replay_journal(self) -> None:
        keys = self.journal.replay(self.watchers.folders)
        if keys:
            log.info("journal_replayed", paths=len(keys))
            self.queue.note(keys, time.monotonic())
            self._noted.set()

    async def _journal(self) -> None:
        while True:
            await anyio.sleep(_JOURNAL_EVERY_S)
            self.journal.save(self.queue.tracked())
