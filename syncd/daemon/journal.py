"""The daemon's queue journal: the paths queued or in flight, mirrored into the state
database so that a restart, or a crash, picks them up where the last daemon left them.

Only the difference since the last save is written: a burst of 20,000 paths is one
insert, not a rewrite every second.
"""

from __future__ import annotations

from collections.abc import Container

import structlog

from syncd.daemon.queue import Key
from syncd.errors import StateError
from syncd.state.store import State

__all__ = ["QueueJournal"]

log = structlog.get_logger(__name__)


class QueueJournal:
    """The journal table of one state database, and what it holds now."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._saved: set[Key] = set()

    def replay(self, folders: Container[int]) -> list[Key]:
        """The journalled paths of the configured `folders` (by state folder id); entries
        of folders no longer configured are dropped."""
        entries = self._state.journal()
        keys = [(fid, path) for fid, path in entries if fid in folders]
        stale = [(fid, path) for fid, path in entries if fid not in folders]
        if stale:
            self._state.update_journal((), stale)
        self._saved = set(keys)
        return keys

    def save(self, keys: set[Key]) -> None:
        """Make the journal hold exactly `keys`; a failed write is logged and retried
        with the next save."""
        added, removed = keys - self._saved, self._saved - keys
        if not added and not removed:
            return
        try:
            self._state.update_journal(added, removed)
        except StateError as exc:
            log.error("journal_not_saved", error=str(exc))
            return
        self._saved = keys
