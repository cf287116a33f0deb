"""`syncd status`: what the state database says about each configured folder, read
safely while a daemon writes it.

It opens the database read-only (SQLite's WAL lets a reader see the last committed
state without blocking the writer) and never creates it. For each folder it reports the
files in sync, the paths queued (the daemon saves its queue every second), the files
parked after failures with their last error, and when the last reconcile finished.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from syncd.config import Config
from syncd.errors import StateError
from syncd.lock import holder

__all__ = ["FolderStatus", "Parked", "Report", "collect", "render"]

_SHOWN_PARKED = 20  # per folder in the text output; --json lists them all


@dataclass(frozen=True, slots=True)
class Parked:
    """A file that failed and waits for the next run."""

    path: str
    op: str
    error: str
    attempts: int
    since: str  # ISO 8601, UTC


@dataclass(slots=True)
class FolderStatus:
    """One [[folders]] entry."""

    local: str
    remote: str
    in_sync: int = 0
    pending: int = 0
    last_reconcile: str | None = None  # ISO 8601, UTC; None: never
    last_sync: str | None = None  # the last reconcile or daemon batch
    parked: list[Parked] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """The whole status: the daemon, the state database and every folder."""

    config: str
    state: str
    daemon_pid: int | None
    folders: list[FolderStatus]

    def as_dict(self) -> dict[str, Any]:
        """The report for `--json`."""
        out = asdict(self)
        out["daemon_running"] = self.daemon_pid is not None
        for folder in out["folders"]:
            folder["parked_count"] = len(folder["parked"])
        return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def collect(config: Config) -> Report:
    """Read the status of every configured folder.

    Raises:
        StateError: the database exists but cannot be read.
    """
    path = config.state.path
    folders = [FolderStatus(str(f.local), f.remote) for f in config.folders]
    report = Report(str(config.source), str(path), holder(path), folders)
    if not path.exists():
        return report  # never synced: every count is zero
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        for folder in folders:
            _fill(conn, folder)
    except sqlite3.Error as exc:
        raise StateError(f"cannot read the state database {path}: {exc}") from None
    finally:
        conn.close()
    return report


def _fill(conn: sqlite3.Connection, folder: FolderStatus) -> None:
    columns = {r[1] for r in conn.execute("PRAGMA table_info(folders)")}
    # A database last written by an older syncd (the daemon migrates it when it starts).
    reconciled = "reconciled_at" if "reconciled_at" in columns else "NULL"
    row = conn.execute(
        f"SELECT id, {reconciled}, last_sync FROM folders WHERE local = ? AND remote = ?",
        (folder.local, folder.remote),
    ).fetchone()
    if row is None:
        return
    fid, reconciled_at, last_sync = row
    folder.last_reconcile, folder.last_sync = _iso(reconciled_at), _iso(last_sync)
    one = "SELECT count(*) FROM {} WHERE folder_id = ?"
    synced = conn.execute(one.format("files"), (fid,)).fetchone()[0]
    folder.pending = conn.execute(one.format("journal"), (fid,)).fetchone()[0]
    rows = conn.execute(
        "SELECT path, op, error, attempts, updated_at FROM parked WHERE folder_id = ?"
        " ORDER BY updated_at DESC, path",
        (fid,),
    ).fetchall()
    folder.parked = [Parked(p, op, err, n, _iso(ts) or "") for p, op, err, n, ts in rows]
    # A parked replace still has its older version on the DAM (a files row); it is not
    # in sync until the new one lands.
    stale = conn.execute(
        "SELECT count(*) FROM parked JOIN files USING (folder_id, path) WHERE folder_id = ?",
        (fid,),
    ).fetchone()[0]
    folder.in_sync = synced - stale


def render(report: Report) -> str:
    """The report as text for a terminal."""
    if report.daemon_pid is None:
        daemon = "not running"
    elif report.daemon_pid < 0:
        daemon = "running"
    else:
        daemon = f"running (pid {report.daemon_pid})"
    lines = [f"daemon: {daemon}", f"config: {report.config}", f"state:  {report.state}"]
    for f in report.folders:
        lines += [
            "",
            f"{f.local} -> {f.remote}",
            f"  in sync:        {f.in_sync}",
            f"  pending:        {f.pending}",
            f"  parked:         {len(f.parked)}",
            f"  last reconcile: {f.last_reconcile or 'never'}",
            f"  last sync:      {f.last_sync or 'never'}",
        ]
        for p in f.parked[:_SHOWN_PARKED]:
            lines.append(f"    {p.path}: {p.op} failed {p.attempts}x: {p.error}")
        if len(f.parked) > _SHOWN_PARKED:
            lines.append(f"    ... and {len(f.parked) - _SHOWN_PARKED} more (see --json)")
    return "\n".join(lines)
