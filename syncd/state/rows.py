"""A folder's synced files read in path order, a stretch at a time, on a connection of
their own: what lets a walk thread compare a tree of any size with the state while the
event loop keeps using the main connection."""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from collections.abc import Iterable
from itertools import islice
from operator import itemgetter
from pathlib import Path

from syncd.errors import StateError
from syncd.model import StatRow

__all__ = ["StatRows"]

_FETCH = 4096
_QUERY = "SELECT path, size, mtime_ns, inode FROM files WHERE folder_id = ? ORDER BY path"


class StatRows:
    """`(path, size, mtime_ns, inode)` of every file of one folder, ascending by path
    (SQLite's binary order of UTF-8, which is Python's order of the decoded strings).

    Made on the event loop's thread, then used by one other thread only. At most a few
    thousand rows are held at once.
    """

    def __init__(self, conn: sqlite3.Connection | None, rows: Iterable[StatRow]) -> None:
        self._conn = conn
        self._cursor = iter(rows)
        self._rows: list[StatRow] = []
        self._at = 0
        self._done = False

    @classmethod
    def open(cls, path: Path | None, conn: sqlite3.Connection, folder_id: int) -> StatRows:
        """Rows of `folder_id` from the database at `path`, read on a new read-only
        connection; an in-memory state (`path` None) is read through `conn` itself."""
        if path is None:
            # Tests and dry runs without a state file: small, and `conn` is bound to
            # this thread, so read it all now.
            return cls(None, conn.execute(_QUERY, (folder_id,)).fetchall())
        try:
            own = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
            own.execute("PRAGMA busy_timeout = 5000")
            return cls(own, own.execute(_QUERY, (folder_id,)))
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the state database {path}: {exc}") from exc

    def until(self, end: str | None) -> list[StatRow]:
        """The next rows whose path sorts before `end` (None: all that are left)."""
        rows = self._rows
        while not self._done and (end is None or not rows or rows[-1][0] < end):
            try:
                more = list(islice(self._cursor, _FETCH))
            except sqlite3.Error as exc:
                raise StateError(f"cannot read the state database: {exc}") from exc
            if not more:
                self._done = True
                break
            if self._at:
                del rows[: self._at]
                self._at = 0
            rows += more
        stop = len(rows) if end is None else bisect_left(rows, end, self._at, key=itemgetter(0))
        taken = rows[self._at : stop]
        self._at = stop
        return taken

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
