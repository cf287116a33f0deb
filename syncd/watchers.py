"""The daemon's watched folders: one watcher task per folder (see `syncd.watch`), each
turning filesystem events into `(folder id, path)` keys for the settle queue.

Folders are keyed by their id in the state database, which stays the same across config
reloads, so queued paths survive a reload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio
import anyio.abc
import structlog

from syncd.config import FolderConfig
from syncd.filters import SyncdFilter
from syncd.queue import Key, Stat
from syncd.state import State
from syncd.watch import watch_folder

__all__ = ["Watched", "Watchers"]

log = structlog.get_logger("syncd.watch")

_REARM_FIRST_S = 1.0
_REARM_MAX_S = 60.0


@dataclass(slots=True)
class Watched:
    """A watched folder: its settings, its filter, and the events that end its watcher
    for good (`closed`) or just its current run (`stop`, for a re-arm)."""

    config: FolderConfig
    filt: SyncdFilter
    stop: anyio.Event = field(default_factory=anyio.Event)
    closed: anyio.Event = field(default_factory=anyio.Event)

    def close(self) -> None:
        """Stop watching this folder."""
        self.closed.set()
        self.stop.set()

    def restart(self) -> None:
        """Arm the watcher again (after a backoff): its root went away, and inotify does
        not follow a directory that is removed and created again."""
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
        """Watch until `folder.close()`. A watcher that ends, fails or is restarted after
        it was armed (its root was removed or unmounted, a directory turned unreadable
        under polling) is armed again with backoff, and each re-arm asks for a reconcile,
        which catches what happened meanwhile. Errors while arming the first time go to
        `arm()`'s caller."""

        def sink(rels: set[str]) -> None:
            self._note((fid, rel) for rel in rels)

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
                began = time.monotonic()
                try:
                    await watch_folder(
                        folder.config.local,
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
                else:
                    if folder.closed.is_set():
                        return
                    log.warning("watch_ended", hint="watching again once the root is back")
                # Capped: a root gone for days must not overflow the backoff's float.
                failures = 0 if time.monotonic() - began > _REARM_MAX_S else min(failures + 1, 8)


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
