"""The daemon's watched folders: one watcher task per folder (see `syncd.watch`), each
turning filesystem events into `(folder id, path)` keys for the settle queue.

Folders are keyed by their id in the state database, which stays the same across config
reloads, so queued paths survive a reload.
"""

from __future__ import annotations

import os
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


@dataclass(slots=True)
class Watched:
    """A watched folder: its settings, filter, and the event that stops its watcher."""

    config: FolderConfig
    filt: SyncdFilter
    stop: anyio.Event = field(default_factory=anyio.Event)


class Watchers:
    """Every watched folder, by state folder id.

    Args:
        state: where folder ids come from.
        note: called in the event loop with the keys of paths that may have changed.
    """

    def __init__(self, state: State, note: Callable[[Iterable[Key]], None]) -> None:
        self.folders: dict[int, Watched] = {}
        self._state = state
        self._note = note
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
            folder.stop.set()

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
        def sink(rels: set[str]) -> None:
            self._note((fid, rel) for rel in rels)

        with structlog.contextvars.bound_contextvars(folder=folder.config.name):
            await watch_folder(
                folder.config.local,
                folder.filt,
                sink,
                stop=folder.stop,
                force_polling=folder.config.force_polling,
                task_status=task_status,
            )
