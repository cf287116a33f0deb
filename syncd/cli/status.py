"""`syncd status`: what the state database says about each configured folder, read
safely while a daemon writes it.

It opens the database read-only through `syncd.state.store.State` (SQLite's WAL lets a
reader see the last committed state without blocking the writer) and never creates it.
With `[fleet]` it also reads the fleet's shared rate from Redis. For each folder it
reports the files in sync, the paths queued (the daemon saves its
queue every second), the files parked after failures with their last error, the deletes
a run refused (with the command that carries them out once the user has checked), and
when the last reconcile finished.
"""

from __future__ import annotations

import shlex
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from syncd.config.schema import Config
from syncd.errors import StateError
from syncd.redact import escape
from syncd.state.lock import holder
from syncd.state.store import State

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
    refused: str | None = None  # why the last run held deletes back; None: nothing held
    refused_deletes: int = 0
    refused_since: str | None = None
    command: str | None = None  # what to run once the user has checked


@dataclass(slots=True)
class Report:
    """The whole status: the daemon, the state database and every folder."""

    config: str
    state: str
    daemon_pid: int | None
    folders: list[FolderStatus]
    fleet: dict[str, Any] | None = None  # [fleet]: its Redis, and the rate kept there

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
    try:
        # Read-only, and a missing database is not created: it reads as never synced.
        with State.open(path, readonly=True) as state:
            pending = Counter(fid for fid, _ in state.journal())
            for folder in folders:
                _fill(state, folder, pending, config)
    except sqlite3.Error as exc:
        raise StateError(f"cannot read the state database {path}: {exc}") from None
    if config.fleet.redis_url is not None:
        report.fleet = _fleet(config)
    return report


def _fleet(config: Config) -> dict[str, Any]:
    """The fleet's shared rate, read from its Redis (at most about a second)."""
    import anyio

    from syncd.dam.limits import LearnedRate
    from syncd.fleet.quota import fleet_quota

    quota = fleet_quota(config, LearnedRate())
    assert quota is not None  # called only with a redis_url
    return anyio.run(quota.peek)


def _fleet_line(fleet: dict[str, Any]) -> str:
    where = f"fleet:  {fleet['redis_url']} (keys {fleet['key_prefix']}*)"
    if not fleet["reachable"]:
        return f"{where}: Redis unreachable ({fleet['error']}); each host paces itself"
    if fleet["rate_per_s"] is not None:
        return f"{where}: shared, learned rate {fleet['rate_per_s']:g} requests/s"
    if fleet["slow_start_per_s"] is not None:
        return f"{where}: shared, no limit seen yet (slow start at {fleet['slow_start_per_s']:g}/s)"
    return f"{where}: shared, idle"


def _fill(state: State, folder: FolderStatus, pending: Counter[int], config: Config) -> None:
    fid = state.folder_id(folder.local, folder.remote)
    if fid is None:
        return
    folder.last_reconcile = _iso(state.reconciled_at(fid))
    folder.last_sync = _iso(state.bookmark(fid).last_sync)
    folder.pending = pending[fid]
    parked = sorted(state.parked(fid), key=lambda p: (-p.updated_at, p.path))  # newest first
    folder.parked = [
        Parked(p.path, p.op, p.error, p.attempts, _iso(p.updated_at) or "") for p in parked
    ]
    # A parked replace still has its older version on the DAM (a files row); it is not
    # in sync until the new one lands.
    stale = state.known_for(fid, (p.path for p in parked))
    folder.in_sync = state.count(fid) - len(stale)
    _refused(state, fid, folder, config)


def _refused(state: State, fid: int, folder: FolderStatus, config: Config) -> None:
    refusal = state.refusal(fid)
    if refusal is None:
        return
    folder.refused = refusal.reason
    folder.refused_deletes = refusal.deletes
    folder.refused_since = _iso(refusal.since)
    where = shlex.quote(str(config.source))
    # Deletes wait for --force-delete; an unusable folder for the user to fix it.
    force = " --force-delete" if refusal.deletes else ""
    folder.command = f"syncd sync{force} --config {where}"


def render(report: Report) -> str:
    """The report as text for a terminal."""
    if report.daemon_pid is None:
        daemon = "not running"
    elif report.daemon_pid < 0:
        daemon = "running"
    else:
        daemon = f"running (pid {report.daemon_pid})"
    lines = [f"daemon: {daemon}", f"config: {report.config}", f"state:  {report.state}"]
    if report.fleet is not None:
        lines.append(_fleet_line(report.fleet))
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
        if f.refused is not None:
            what = f"{f.refused_deletes} deletes held back" if f.refused_deletes else "not synced"
            lines += [
                f"  REFUSED:        {what} since {f.refused_since}: {f.refused}",
                "    check the folder (a disk not mounted? files removed by mistake?)."
                + (" If the deletes are wanted, run:" if f.refused_deletes else " Then run:"),
                f"    {f.command}",
            ]
        for p in f.parked[:_SHOWN_PARKED]:
            lines.append(f"    {p.path}: {p.op} failed {p.attempts}x: {p.error}")
        if len(f.parked) > _SHOWN_PARKED:
            lines.append(f"    ... and {len(f.parked) - _SHOWN_PARKED} more (see --json)")
    # Paths and stored DAM text go to a terminal as they are: escape control characters.
    return "\n".join(escape(line) for line in lines)
