"""The daemon's watched folders: one watcher task per folder (see `syncd.local.watch`), each
turning filesystem events into `(folder id, path)` keys for the settle queue.

Folders are keyed by their id in the state database, which stays the same across config
reloads, so queued paths survive a reload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import structlog

from syncd.config.schema import FolderConfig
from syncd.daemon.queue import Key, Stat
from syncd.local.filters import SyncdFilter
from syncd.local.fs import root_status
from syncd.local.watch import watch_folder
from syncd.state.store import State

__all__ = ["Watched", "Watchers"]

log = structlog.get_logger(__name__)

_REARM_FIRST_S = 1.0
_REARM_MAX_S = 60.0
_ROOT_CHECK_S = 2.0  # how often a watched root is checked for being replaced


@dataclass(slots=True)
class Watched:
    """A watched folder: its settings, its filter, and the events that end its watcher
    for good (`closed`) or just its current run (`stop`: it is armed again after a
    backoff, which is what its root guard does when the root is replaced)."""

    config: FolderConfig
    filt: SyncdFilter
    stop: anyio.Event = field(default_factory=anyio.Event)
    closed: anyio.Event = field(default_factory=anyio.Event)

    def close(self) -> None:
        """Stop watching this folder."""
        self.closed.set()
        self.stop.set()


class Watchers:
    """Every watched folder, by state folder id.

    Args:
        state: where folder ids come from.
        note: called in the event loop with the keys of paths that may have changed.
        on_rearm: called when a watcher that had stopped is armed again.
    """

    def __init__(
        self,
        state: State,
        note: Callable[[Iterable[Key]], None],
        on_rearm: Callable[[], None] = lambda: None,
    ) -> None:
        self.folders: dict[int, Watched] = {}
        self._state = state
        self._note = note
        self._on_rearm = on_rearm
        self._tg: anyio.abc.TaskGroup | None = None

    def bind(self, tg: anyio.abc.TaskGroup) -> None:
        """The task group the watcher tasks run in."""
        self._tg = tg

    async def start(self, config: FolderConfig) -> None:
        """Watch a folder from now on; returns once its watcher is armed."""
        fid, folder = await self.arm(config)
        self.folders[fid] = folder

    async def arm(self, config: FolderConfig) -> tuple[int, Watched]:
        """Start a watcher for a folder and return its id and handle, without adding it
        to the watched folders yet (a reload commits it only once every new one armed).

        Raises:
            OSError: the watcher could not start (the root vanished, ...).
        """
        fid = self._state.ensure_folder(str(config.local), config.remote)
        folder = Watched(config, SyncdFilter(config.local, config.exclude))
        assert self._tg is not None, "bind() a task group first"
        await self._tg.start(self._watch, fid, folder, name=f"syncd watch {config.name}")
        return fid, folder

    def stop_all(self) -> None:
        """Stop every watcher (they return within a step)."""
        for folder in self.folders.values():
            folder.close()

    def stat(self, key: Key) -> Stat:
        """`(size, mtime_ns)` of a queued path now, or None (gone, or its folder is)."""
        fid, rel = key
        folder = self.folders.get(fid)
        if folder is None:
            return None
        try:
            st = os.lstat(os.path.join(folder.config.local, rel))
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    async def _watch(
        self,
        fid: int,
        folder: Watched,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch until `folder.close()`. Errors while arming the first time go to `arm()`'s
        caller. After that, a run that ends, fails, or whose root is replaced (removed and
        created again, moved away, unmounted or remounted: inotify follows none of these)
        is armed again once the root is usable, with backoff; each re-arm asks for a
        reconcile, which catches what happened meanwhile."""

        def sink(rels: set[str]) -> None:
            self._note((fid, rel) for rel in rels)

        root = folder.config.local
        armed = _Armed(task_status, self._on_rearm)
        failures = 0
        with structlog.contextvars.bound_contextvars(folder=folder.config.name):
            while not folder.closed.is_set():
                if armed.once:
                    with anyio.move_on_after(min(_REARM_MAX_S, _REARM_FIRST_S * 2**failures)):
                        await folder.closed.wait()
                    if folder.closed.is_set():
                        return
                    folder.stop = anyio.Event()
                    # Capped: a root gone for days must not overflow the backoff's float.
                    failures = min(failures + 1, 8)
                    if await anyio.to_thread.run_sync(root_status, root, abandon_on_cancel=True):
                        continue  # not back yet: arming would watch nothing, or fail
                identity = await anyio.to_thread.run_sync(_identity, root, abandon_on_cancel=True)
                assert self._tg is not None
                self._tg.start_soon(_guard, root, identity, folder.stop, name="syncd root guard")
                began = time.monotonic()
                try:
                    await watch_folder(
                        root,
                        folder.filt,
                        sink,
                        stop=folder.stop,
                        force_polling=folder.config.force_polling,
                        task_status=armed,
                    )
                except Exception as exc:
                    if not armed.once:
                        raise
                    log.error("watch_failed", error=f"{type(exc).__name__}: {exc}")
                finally:
                    folder.stop.set()  # ends this run's guard
                if time.monotonic() - began > _REARM_MAX_S:
                    failures = 0  # it was healthy for a while: start the backoff afresh


def _identity(root: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(root)
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def _guard(root: Path, identity: tuple[int, int] | None, stop: anyio.Event) -> None:
    """End a watcher run (set `stop`) once its root is no longer the directory it armed
    on, or is unusable. The stat runs in a thread: a hung network mount blocks only it."""
    while True:
        with anyio.move_on_after(_ROOT_CHECK_S):
            await stop.wait()
        if stop.is_set():
            return
        now = await anyio.to_thread.run_sync(_identity, root, abandon_on_cancel=True)
        problem = await anyio.to_thread.run_sync(root_status, root, abandon_on_cancel=True)
        if now != identity or problem is not None:
            log.warning("watch_root_changed", root=str(root), hint="watching it again once usable")
            stop.set()
            return


class _Armed(anyio.abc.TaskStatus[None]):
    """Passes the first `started()` on to the real task status; later ones (re-arms)
    call `on_rearm`."""

    def __init__(self, inner: anyio.abc.TaskStatus[None], on_rearm: Callable[[], None]) -> None:
        self._inner = inner
        self._on_rearm = on_rearm
        self.once = False

    def started(self, value: None = None) -> None:
        if self.once:
            log.info("watch_rearmed")
            self._on_rearm()
            return
        self.once = True
        self._inner.started(value)
