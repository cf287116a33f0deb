"""The state's records of work still owed: refusals (deletes a run held back, which wait
for the user), orphans (assets syncd replaced but could not
delete yet), parked files (whose last attempt failed, retried by the next run and shown
by `syncd status`), and uploads of unknown outcome (which may have left a second asset on
the DAM, checked by a later listing). `syncd.state.store.State` mixes them in, on its
connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from syncd.model import Unsure
from syncd.redact import scrub

__all__ = ["ParkedFile", "Refusal", "RetryRecords"]


@dataclass(frozen=True, slots=True)
class ParkedFile:
    """A file whose sync failed; it is retried by the next run."""

    path: str
    op: str
    error: str
    attempts: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a folder's last run held deletes back; they wait for the user."""

    reason: str
    deletes: int  # deletes withheld; 0: the folder itself was unusable
    since: float


class RetryRecords:
    """Orphan and parked-file rows; `State` provides the connection and the helpers."""

    _conn: sqlite3.Connection

    def _execute(self, sql: str, params: Iterable[object]) -> sqlite3.Cursor:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # refusals: deletes held back (a mass delete over the threshold, an unusable root)

    def note_refusal(self, folder_id: int, reason: str, deletes: int) -> None:
        """Remember that a run of this folder held `deletes` deletes back, and why; the
        time of the first refusal in a row is kept."""
        self._execute(
            "UPDATE folders SET refused = ?, refused_deletes = ?,"
            " refused_at = COALESCE(refused_at, ?) WHERE id = ?",
            (scrub(reason), deletes, time.time(), folder_id),
        )

    def clear_refusal(self, folder_id: int | None) -> None:
        """A run of the whole folder held nothing back."""
        if folder_id is not None:
            self._execute(
                "UPDATE folders SET refused = NULL, refused_deletes = 0, refused_at = NULL"
                " WHERE id = ? AND refused IS NOT NULL",
                (folder_id,),
            )

    def refusal(self, folder_id: int | None) -> Refusal | None:
        """What the folder's last run held back, if anything."""
        if folder_id is None:
            return None
        row = self._conn.execute(
            "SELECT refused, refused_deletes, refused_at FROM folders WHERE id = ?", (folder_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return Refusal(row[0], row[1], row[2])

    # orphans: assets syncd replaced but could not delete yet

    def add_orphan(self, folder_id: int, uuid: str, reason: str) -> None:
        """Remember an asset of ours that must still be deleted (its delete failed)."""
        self._execute(
            "INSERT OR REPLACE INTO orphans (folder_id, uuid, reason) VALUES (?, ?, ?)",
            (folder_id, uuid, scrub(reason)),
        )

    def orphans(self, folder_id: int | None) -> list[str]:
        """The uuids of assets waiting to be deleted."""
        if folder_id is None:
            return []
        rows = self._conn.execute("SELECT uuid FROM orphans WHERE folder_id = ?", (folder_id,))
        return [row[0] for row in rows]

    def drop_orphans(self, folder_id: int, uuids: Iterable[str]) -> None:
        """Forget orphans that are deleted now."""
        with self._transaction():
            self._conn.executemany(
                "DELETE FROM orphans WHERE folder_id = ? AND uuid = ?",
                [(folder_id, u) for u in uuids],
            )

    # parked files

    def park(self, folder_id: int, path: str, op: str, error: str) -> None:
        """Remember a failed file so the next run retries it and `status` can show it."""
        self._execute(
            "INSERT INTO parked (folder_id, path, op, error, attempts, updated_at)"
            " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (folder_id, path) DO UPDATE SET"
            " op = excluded.op, error = excluded.error, attempts = attempts + 1,"
            " updated_at = excluded.updated_at",
            # Scrubbed here: `syncd status` shows it without knowing the key.
            (folder_id, path, op, scrub(error), time.time()),
        )

    def unpark(self, folder_id: int, path: str) -> None:
        """Drop a parked row (the file was synced or no longer needs syncing)."""
        self._execute("DELETE FROM parked WHERE folder_id = ? AND path = ?", (folder_id, path))

    def keep_parked_only(self, folder_id: int, paths: Iterable[str]) -> None:
        """Drop the parked rows of every path but `paths` (the ones that failed again):
        a file parked earlier that is now deleted or excluded needs no retry."""
        keep = set(paths)
        stale = [(folder_id, p.path) for p in self.parked(folder_id) if p.path not in keep]
        with self._transaction():
            self._conn.executemany("DELETE FROM parked WHERE folder_id = ? AND path = ?", stale)

    def parked(self, folder_id: int | None) -> list[ParkedFile]:
        """The parked files of a folder."""
        if folder_id is None:
            return []
        rows = self._conn.execute(
            "SELECT path, op, error, attempts, updated_at FROM parked WHERE folder_id = ?"
            " ORDER BY path",
            (folder_id,),
        )
        return [ParkedFile(*row) for row in rows]

    # uploads of unknown outcome (see syncd.engine.strays)

    def note_unsure(self, folder_id: int, entry: Unsure) -> None:
        """Journal an upload whose outcome is unknown, before it is sent again, so that
        what it may have left on the DAM is found even after a crash. A later failure of
        the same upload widens the window."""
        self._execute(
            "INSERT INTO unsure_uploads (folder_id, path, sha1, dam_folder, name, size,"
            " window_start, window_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (folder_id, path, sha1) DO UPDATE SET"
            " window_start = min(window_start, excluded.window_start),"
            " window_end = max(window_end, excluded.window_end),"
            " dam_folder = excluded.dam_folder, name = excluded.name",
            (
                folder_id,
                entry.path,
                entry.sha1,
                entry.folder,
                entry.name,
                entry.size,
                entry.window_start,
                entry.window_end,
            ),
        )

    def unsure(self, folder_id: int | None) -> list[Unsure]:
        """The journalled uploads of unknown outcome of a folder."""
        if folder_id is None:
            return []
        rows = self._conn.execute(
            "SELECT path, dam_folder, name, sha1, size, window_start, window_end"
            " FROM unsure_uploads WHERE folder_id = ? ORDER BY window_start",
            (folder_id,),
        )
        return [Unsure(*row) for row in rows]

    def drop_unsure(self, folder_id: int, entries: Iterable[Unsure]) -> None:
        """Forget journalled uploads whose traces were checked."""
        with self._transaction():
            self._conn.executemany(
                "DELETE FROM unsure_uploads WHERE folder_id = ? AND path = ? AND sha1 = ?",
                [(folder_id, e.path, e.sha1) for e in entries],
            )
