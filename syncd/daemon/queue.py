"""The daemon's work queue: paths waiting for their file to settle.

Keyed by `(folder id, root-relative path)`, so the latest state of each path wins and a
path noted a thousand times is one entry. A path becomes due once its `(size, mtime)` has
stayed the same for the settle window: a file still being written keeps moving and is not
taken, and a delete followed by a re-create within the window comes out as one update.
A path noted again while its job is in flight is queued once more when that job is done,
not N times.

Pure bookkeeping: the clock and the stat function are passed in, nothing here awaits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Key", "QueueStats", "SettleQueue", "Stat"]

Key = tuple[int, str]
"""(the state's folder id, root-relative path): stable across config reloads."""

Stat = tuple[int, int] | None
"""(size, mtime_ns) of the path, or None while it does not exist."""


@dataclass(slots=True)
class _Pending:
    stat: Stat
    since: float  # when `stat` was first seen
    first: float  # when the path was first noted (for the queue's age)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot for logs and status lines."""

    pending: int
    in_flight: int
    oldest_age_s: float


class SettleQueue:
    """Paths waiting to settle, then in flight.

    Args:
        settle_s: how long a path's stat must stay unchanged before it is due.
        stat: `(size, mtime_ns)` of a key now, or None when it is gone.
    """

    def __init__(self, settle_s: float, stat: Callable[[Key], Stat]) -> None:
        self.settle_s = settle_s
        self._stat = stat
        self._pending: dict[Key, _Pending] = {}
        self._in_flight: dict[Key, float] = {}  # -> when the path was first noted
        self._again: set[Key] = set()

    def __len__(self) -> int:
        return len(self._pending) + len(self._in_flight)

    def note(self, keys: Iterable[Key], now: float) -> None:
        """These paths may have changed (a watcher event, a journal entry...)."""
        for key in keys:
            if key in self._in_flight:
                self._again.add(key)
                continue
            stat = self._stat(key)
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = _Pending(stat, now, now)
            elif pending.stat != stat:
                pending.stat, pending.since = stat, now

    def next_due(self) -> float | None:
        """The earliest time a pending path can be due, or None when nothing is pending."""
        if not self._pending:
            return None
        return min(p.since for p in self._pending.values()) + self.settle_s

    def take_due(self, now: float) -> list[Key]:
        """The paths whose stat held still for the whole settle window; they are now in
        flight until `done`. Paths that moved since their last look start a new window."""
        due: list[Key] = []
        for key, pending in list(self._pending.items()):
            if now - pending.since < self.settle_s:
                continue
            stat = self._stat(key)
            if stat != pending.stat:
                pending.stat, pending.since = stat, now
                continue
            del self._pending[key]
            self._in_flight[key] = pending.first
            due.append(key)
        return due

    def done(self, keys: Iterable[Key], now: float) -> list[float]:
        """These jobs finished; a path noted meanwhile is queued again (once).

        Returns each finished path's lag: from its first event to now."""
        again, lags = [], []
        for key in keys:
            first = self._in_flight.pop(key, None)
            if first is not None:
                lags.append(now - first)
            if key in self._again:
                self._again.discard(key)
                again.append(key)
        self.note(again, now)
        return lags

    def drop(self, folder: int) -> int:
        """Forget every pending path of a folder (it left the config); returns how many.
        Paths in flight finish, but are not queued again."""
        gone = [k for k in self._pending if k[0] == folder]
        for key in gone:
            del self._pending[key]
        self._again = {k for k in self._again if k[0] != folder}
        return len(gone)

    def waiting(self, key: Key) -> bool:
        """Whether a path is pending (noted, not yet settled)."""
        return key in self._pending

    def tracked(self) -> set[Key]:
        """Every path pending or in flight: what a journal must keep."""
        return set(self._pending) | set(self._in_flight)

    def statistics(self, now: float) -> QueueStats:
        """Depth and age for logs, `STATUS=` and metrics."""
        oldest = min(
            (*(p.first for p in self._pending.values()), *self._in_flight.values()), default=now
        )
        return QueueStats(len(self._pending), len(self._in_flight), now - oldest)
