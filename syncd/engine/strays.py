"""Finding what uploads of unknown outcome left on the DAM, and cleaning it up.

An upload whose connection dropped may have been committed. Before re-sending it, syncd
looks for it (`syncd.engine.upload`) and journals it in the state (`unsure_uploads`). A listing
can still miss it (listings may lag behind writes), and then the re-send makes a second
asset. This sweep, run before a folder is reconciled and again after, lists the DAM
folders of the journalled uploads and, for each asset that provably came from one of
them (`syncd.engine.match.unsure_matches`: its folder, name, content and time window, and a
uuid no state row knows):

* if the file has an asset with that content already, the asset is a stray: deleted;
* if it has none and the local file still holds that content, the asset is adopted;
* if the local file no longer holds that content, the asset is a stray: deleted.

An entry is dropped once a listing taken at least `dam.listing_lag_s`, and at least a
minute, after its window closed has been checked: a DAM whose listings lag more than it
was configured for is still looked at again by a later run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta

import anyio
import structlog

from syncd.dam.client import DamClient
from syncd.dam.wire import iso, parse_time
from syncd.engine.match import WINDOW_MARGIN, name_matches, unsure_matches
from syncd.engine.progress import Summary
from syncd.errors import AuthError, DamError
from syncd.local.fs import FileChanged
from syncd.local.source import hash_file
from syncd.model import FolderTarget, Known, LocalFile, RemoteFile, Unsure
from syncd.state.store import State

__all__ = ["sweep_strays"]

log = structlog.get_logger(__name__)

# However short `listing_lag_s` is set, an entry is kept this long after its window, so a
# lag longer than configured (an index under load) is still caught by the next run.
_SETTLE_FLOOR = timedelta(seconds=60)


async def sweep_strays(
    dam: DamClient,
    state: State,
    target: FolderTarget,
    summary: Summary,
    *,
    wait: bool = False,
) -> None:
    """Check one folder's journalled uploads of unknown outcome against the DAM.

    Args:
        wait: first wait (at most the DAM's `listing_lag_s`) until listings can show
            every journalled upload, so the entries can be settled in this run.
    """
    listing_lag_s = dam.listing_lag_s
    entries = state.unsure(target.folder_id)
    if not entries:
        return
    lag = timedelta(seconds=listing_lag_s)
    settle = max(lag, _SETTLE_FLOOR)
    ends = [parse_time(e.window_end) for e in entries]
    if wait:
        latest = max((t for t in ends if t is not None), default=None)
        if latest is not None:
            ahead = (latest + WINDOW_MARGIN + lag - dam.now()).total_seconds()
            if ahead > 0:
                await anyio.sleep(min(ahead, listing_lag_s + WINDOW_MARGIN.total_seconds()))
    listed_at = dam.now()
    try:
        listing = await _list(dam, entries)
    except AuthError:
        raise
    except DamError as exc:
        log.warning("strays_not_checked", error=str(exc), uploads=len(entries))
        return
    known = state.known_uuids(r.uuid for rs in listing.values() for r in rs)
    rows = state.known_for(target.folder_id, {e.path for e in entries})
    strays: list[tuple[Unsure, RemoteFile]] = []
    settled: list[Unsure] = []
    for e, end in zip(entries, ends, strict=True):
        matches = unsure_matches(e, listing.get(e.folder, []), known)
        row = rows.get(e.path)
        if matches and (row is None or row.sha1 != e.sha1):
            adopted = await _adopt(dam, state, target, e, row, matches[0])
            if adopted is None:
                continue  # the file could not be read: decide at a later sweep
            if adopted:
                known.add(matches[0].uuid)
                matches = matches[1:]
        strays.extend((e, r) for r in matches)
        if end is not None and listed_at >= end + WINDOW_MARGIN + settle:
            settled.append(e)
    failed = await _delete(dam, state, strays, summary)
    state.drop_unsure(target.folder_id, [e for e in settled if e.path not in failed])


async def _list(dam: DamClient, entries: Iterable[Unsure]) -> dict[str, list[RemoteFile]]:
    """Each journalled DAM folder's assets changed since its earliest window, with the
    sha1 filled in (from the details) where a listing leaves it out."""
    starts: dict[str, str] = {}
    names: dict[str, set[str]] = {}
    for e in entries:
        starts[e.folder] = min(starts.get(e.folder, e.window_start), e.window_start)
        names.setdefault(e.folder, set()).add(e.name)
    out: dict[str, list[RemoteFile]] = {}
    for folder, start in starts.items():
        since = parse_time(start)
        after = iso(since - WINDOW_MARGIN) if since is not None else None
        found = []
        async for r in dam.list_files(folder, recursive=False, updated_after=after):
            if any(name_matches(r, n) for n in names[folder]):
                hashed = await dam.hashed(r)
                if hashed is not None:
                    found.append(hashed)
        out[folder] = found
    return out


async def _adopt(
    dam: DamClient,
    state: State,
    target: FolderTarget,
    entry: Unsure,
    row: Known | None,
    asset: RemoteFile,
) -> bool | None:
    """Record `asset` as the file's when the local file still holds the entry's content;
    the asset the file had before (older content) is then deleted, as a replacement
    would have done. None when the file could not be read (nothing is decided then)."""
    try:
        st = os.stat(target.root / entry.path)
        local = LocalFile(entry.path, st.st_size, st.st_mtime_ns, st.st_ino)
        sha1 = await anyio.to_thread.run_sync(hash_file, target.root, local)
    except FileNotFoundError:
        return False  # the file is gone: what it left is a stray
    except (OSError, FileChanged):
        return None
    if sha1 != entry.sha1:
        return False
    state.record(
        target.folder_id,
        Known(entry.path, local.size, local.mtime_ns, local.inode, sha1, asset.uuid, asset.sha1),
    )
    state.flush()
    log.info("upload_adopted_later", path=entry.path, uuid=asset.uuid)
    # An asset adopted from elsewhere (the project refused a second copy) is not syncd's.
    if row is not None and not row.foreign:
        if state.uuid_used_elsewhere(target.folder_id, row.uuid, entry.path):
            return True
        try:
            await dam.delete(row.uuid)
        except AuthError:
            raise
        except DamError as exc:
            state.add_orphan(target.folder_id, row.uuid, str(exc))
    return True


async def _delete(
    dam: DamClient, state: State, strays: list[tuple[Unsure, RemoteFile]], summary: Summary
) -> set[str]:
    """Delete the strays no state row has come to know meanwhile; returns the paths
    whose strays could not be deleted."""
    if not strays:
        return set()
    # Checked again right before: a concurrent upload may have adopted one (the DAM
    # answers identical content with the existing asset).
    known = state.known_uuids(r.uuid for _, r in strays)
    failed: set[str] = set()
    for entry, r in strays:
        if r.uuid in known:
            continue
        try:
            removed = await dam.delete(r.uuid)
        except AuthError:
            raise
        except DamError as exc:
            log.warning("stray_kept", path=entry.path, uuid=r.uuid, error=str(exc))
            failed.add(entry.path)
            continue
        if not removed:
            continue  # a lagging listing still showed one deleted earlier
        summary.strays_deleted += 1
        log.info("stray_deleted", path=entry.path, uuid=r.uuid, dam_path=f"{r.folder}/{r.name}")
    return failed
