"""The SQLite state store (WAL): what syncd knows it has put on the DAM.

One row per synced file maps `(folder, path)` to the local stat that was synced
(`size`, `mtime_ns`, `inode`), its sha1, the asset's uuid and the sha1 the DAM reported.
A folder row remembers the DAM-side bookmark of the last run (server time for
`updated_after`, and the recursive remote file count), so a re-run can ask only for
what changed. Orphan and parked rows (work still owed) are `syncd.state.records`'s, mixed in
here.

Writes are batched: `record()` buffers rows and `flush()` commits them in one transaction,
so a 10,000-file sync does tens of commits, not 10,000.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from syncd.errors import StateError
from syncd.model import Known
from syncd.state.lock import private_dir
from syncd.state.records import RetryRecords
from syncd.state.rows import StatRows
from syncd.state.schema import SCHEMA, SCHEMA_VERSION, migrate

__all__ = ["FolderBookmark", "State"]


@dataclass(frozen=True, slots=True)
class FolderBookmark:
    """Where the last completed run of a folder left the DAM side.

    `listed_at` is the DAM's own clock (from its `Date` header) when the last run ended;
    `remote_count` the recursive file count the DAM reported then; `unknown_kept` how many
    DAM files syncd did not know and kept (a later `delete_unknown = true` must list them).
    """

    listed_at: str | None
    remote_count: int | None
    last_sync: float | None
    unknown_kept: int = 0


class State(RetryRecords):
    """The state database. Use `State.open()`; close with `close()` (or `with`)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self._pending: list[tuple[object, ...]] = []
        self._pending_forget: list[tuple[int, str, str | None]] = []

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> State:
        """Open (creating if needed) the database at `path`.

        With `readonly=True` a missing database opens as an empty in-memory one, so a
        `--dry-run` never creates files.
        """
        try:
            if readonly:
                if not path.exists():
                    conn = sqlite3.connect(":memory:")
                    conn.executescript(SCHEMA)
                    return cls(conn, None)
                conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
                conn.execute("PRAGMA query_only = ON")
                conn.execute("PRAGMA busy_timeout = 5000")  # `syncd status` beside a daemon
                return cls(conn, path)
            private_dir(path.parent)
            # Created 0600 before SQLite opens it (its -wal and -shm files take the same
            # mode), whatever the umask: it maps paths to assets, parked DAM messages too.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash
            # can lose the last transactions, which the next run re-checks anyway.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.executescript(SCHEMA)
            migrate(conn)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open the state database {path}: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
        """Flush pending rows and close the database."""
        self.flush()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # folders

    def folder_id(self, local: str, remote: str) -> int | None:
        """The id of a folder mapping, or None when this state has never seen it."""
        row = self._conn.execute(
            "SELECT id FROM folders WHERE local = ? AND remote = ?", (local, remote)
        ).fetchone()
        return int(row[0]) if row else None

    def ensure_folder(self, local: str, remote: str) -> int:
        """The id of a folder mapping, creating its row on first use."""
        found = self.folder_id(local, remote)
        if found is not None:
            return found
        cur = self._execute("INSERT INTO folders (local, remote) VALUES (?, ?)", (local, remote))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def bookmark(self, folder_id: int | None) -> FolderBookmark:
        """The DAM-side bookmark of the last completed run of a folder."""
        if folder_id is None:
            return FolderBookmark(None, None, None)
        row = self._conn.execute(
            "SELECT listed_at, remote_count, last_sync, unknown_kept FROM folders WHERE id = ?",
            (folder_id,),
        ).fetchone()
        return FolderBookmark(*row) if row else FolderBookmark(None, None, None)

    def reconciled_at(self, folder_id: int | None) -> float | None:
        """When the last whole-folder reconcile of a folder ended; None when it never
        did, or in a database an older syncd wrote that a read-only open cannot migrate."""
        if folder_id is None:
            return None
        try:
            row = self._conn.execute(
                "SELECT reconciled_at FROM folders WHERE id = ?", (folder_id,)
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such column" not in str(exc):
                raise
            return None
        return row[0] if row else None

    def set_bookmark(
        self,
        folder_id: int,
        listed_at: str | None,
        remote_count: int | None,
        *,
        unknown_kept: int = 0,
        reconciled: bool = False,
    ) -> None:
        """Remember the DAM's clock and file count at the end of a completed run (and, for
        a whole-folder reconcile rather than a daemon batch, when it ended)."""
        self.flush()
        now = time.time()
        self._execute(
            "UPDATE folders SET listed_at = ?, remote_count = ?, unknown_kept = ?, last_sync = ?,"
            " reconciled_at = coalesce(?, reconciled_at) WHERE id = ?",
            (listed_at, remote_count, unknown_kept, now, now if reconciled else None, folder_id),
        )

    # files

    def known(self, folder_id: int | None) -> dict[str, Known]:
        """Every synced file of a folder, by relative path."""
        if folder_id is None:
            return {}
        rows = self._conn.execute(
            f"SELECT {_KNOWN_COLUMNS} FROM files WHERE folder_id = ?", (folder_id,)
        )
        return {row[0]: _known(row) for row in rows}

    def stat_rows(self, folder_id: int) -> StatRows:
        """`(path, size, mtime_ns, inode)` of every synced file of a folder in path order,
        on a connection of their own: all a re-run needs to find what changed, read a
        stretch at a time beside a sorted walk (`syncd.local.scan.SortedWalk`). Close it."""
        self.flush()
        return StatRows.open(self.path, self._conn, folder_id)

    def known_under(self, folder_id: int | None, directory: str) -> dict[str, Known]:
        """The state rows of every file below `directory` (a root-relative path)."""
        if folder_id is None:
            return {}
        # '/' + 1 is '0': the half-open range covers exactly the paths under `directory/`.
        rows = self._conn.execute(
            f"SELECT {_KNOWN_COLUMNS} FROM files WHERE folder_id = ? AND path >= ? AND path < ?",
            (folder_id, directory + "/", directory + "0"),
        )
        return {row[0]: _known(row) for row in rows}

    def count(self, folder_id: int | None) -> int:
        """How many files of a folder are synced."""
        if folder_id is None:
            return 0
        row = self._conn.execute("SELECT COUNT(*) FROM files WHERE folder_id = ?", (folder_id,))
        return int(row.fetchone()[0])

    def known_for(self, folder_id: int | None, paths: Iterable[str]) -> dict[str, Known]:
        """The state rows of the given paths that exist."""
        if folder_id is None:
            return {}
        rows = self._where_in(
            f"SELECT {_KNOWN_COLUMNS} FROM files WHERE folder_id = ? AND path IN ({{}})",
            (folder_id,),
            paths,
        )
        return {row[0]: _known(row) for row in rows}

    def uuid_refs(self, folder_id: int | None, uuids: Iterable[str]) -> dict[str, int]:
        """How many synced paths of a folder map to each of `uuids`."""
        if folder_id is None:
            return {}
        rows = self._where_in(
            "SELECT uuid, COUNT(*) FROM files WHERE folder_id = ? AND uuid IN ({}) GROUP BY uuid",
            (folder_id,),
            set(uuids),
        )
        return dict(rows)

    def known_by_uuid(self, folder_id: int | None, uuids: Iterable[str]) -> dict[str, Known]:
        """The state rows of a folder that map to the given uuids, by uuid (one row each)."""
        if folder_id is None:
            return {}
        rows = self._where_in(
            f"SELECT {_KNOWN_COLUMNS} FROM files WHERE folder_id = ? AND uuid IN ({{}})"
            " ORDER BY foreign_asset DESC",  # the row that owns the asset comes last
            (folder_id,),
            set(uuids),
        )
        return {k.uuid: k for k in map(_known, rows)}

    def known_uuids(self, uuids: Iterable[str]) -> set[str]:
        """Which of `uuids` any state row, of any folder, maps to (buffered rows included)."""
        self.flush()
        rows = self._where_in("SELECT DISTINCT uuid FROM files WHERE uuid IN ({})", (), set(uuids))
        return {row[0] for row in rows}

    def uuid_used_elsewhere(self, folder_id: int, uuid: str, path: str) -> bool:
        """Whether a synced path other than `path` maps to `uuid`."""
        row = self._conn.execute(
            "SELECT 1 FROM files WHERE folder_id = ? AND uuid = ? AND path != ? LIMIT 1",
            (folder_id, uuid, path),
        ).fetchone()
        return row is not None

    def forget_uuid(self, folder_id: int, uuid: str) -> list[str]:
        """Drop every row that maps to `uuid` (the asset is gone); returns their paths."""
        self.flush()
        paths = [
            row[0]
            for row in self._conn.execute(
                "SELECT path FROM files WHERE folder_id = ? AND uuid = ?", (folder_id, uuid)
            )
        ]
        self._execute("DELETE FROM files WHERE folder_id = ? AND uuid = ?", (folder_id, uuid))
        return paths

    def record(self, folder_id: int, known: Known) -> None:
        """Buffer a synced file's row; `flush()` writes it."""
        self._pending.append(
            (
                folder_id,
                known.path,
                known.size,
                known.mtime_ns,
                known.inode,
                known.sha1,
                known.uuid,
                known.remote_sha1,
                time.time(),
                int(known.foreign),
            )
        )

    def forget(self, folder_id: int, path: str, uuid: str | None = None) -> None:
        """Buffer the removal of a file's row (it is gone on both sides). With `uuid`, the
        row goes only while it still maps to that asset: a row that another action of the
        same batch gave a new asset (a swap, a file moved over another) stays."""
        self._pending_forget.append((folder_id, path, uuid))

    @property
    def pending(self) -> int:
        """How many buffered changes `flush()` would write."""
        return len(self._pending) + len(self._pending_forget)

    def flush(self) -> None:
        """Write buffered rows in one transaction."""
        if not self._pending and not self._pending_forget:
            return
        rows, self._pending = self._pending, []
        gone, self._pending_forget = self._pending_forget, []
        try:
            with self._transaction():
                self._conn.executemany(
                    "INSERT OR REPLACE INTO files (folder_id, path, size, mtime_ns, inode, sha1,"
                    " uuid, remote_sha1, synced_at, foreign_asset)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.executemany(
                    "DELETE FROM files WHERE folder_id = ? AND path = ?"
                    " AND (?3 IS NULL OR uuid = ?3)",
                    gone,
                )
                # A file synced now is no longer parked.
                self._conn.executemany(
                    "DELETE FROM parked WHERE folder_id = ? AND path = ?",
                    [*((r[0], r[1]) for r in rows), *((g[0], g[1]) for g in gone)],
                )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the state database {self.path}: {exc}") from exc

    # journal: the daemon's queue of paths still to look at

    def update_journal(
        self, added: Iterable[tuple[int, str]], removed: Iterable[tuple[int, str]]
    ) -> None:
        """Add and remove `(folder_id, path)` journal entries, in one transaction."""
        with self._transaction():
            self._conn.executemany("DELETE FROM journal WHERE folder_id = ? AND path = ?", removed)
            self._conn.executemany("INSERT OR IGNORE INTO journal VALUES (?, ?)", added)

    def journal(self) -> list[tuple[int, str]]:
        """The paths a daemon had queued when it last stopped (or was killed)."""
        return [
            (row[0], row[1]) for row in self._conn.execute("SELECT folder_id, path FROM journal")
        ]

    # plumbing

    def _execute(self, sql: str, params: Iterable[object]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the state database {self.path}: {exc}") from exc

    def _where_in(
        self, sql: str, params: tuple[object, ...], values: Iterable[str]
    ) -> Iterator[tuple[Any, ...]]:
        """The rows of `sql` whose `IN ({})` takes `values`, in chunks that stay below
        SQLite's limit on bound parameters."""
        wanted = list(values)
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            yield from self._conn.execute(sql.format(",".join("?" * len(chunk))), (*params, *chunk))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


_KNOWN_COLUMNS = "path, size, mtime_ns, inode, sha1, uuid, remote_sha1, foreign_asset"


def _known(row: tuple[Any, ...]) -> Known:
    path, size, mtime_ns, inode, sha1, uuid, remote_sha1, foreign = row
    return Known(path, size, mtime_ns, inode, sha1, uuid, remote_sha1, bool(foreign))


class _Transaction:
    """BEGIN … COMMIT on an autocommit connection, rolled back on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
