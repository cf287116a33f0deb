"""Pure sync decisions: local files × state × DAM listing → actions, with the
delete-safety rules. No I/O; every input is plain data, so the rules are tested as tables.

Two modes:

* **incremental** (`remote is None`): the DAM side is trusted to match the state (the
  caller checked the remote count and the `updated_after` changes), so only the local
  side is diffed against the state;
* **full** (`remote` is a listing): every local path is matched against the DAM by path
  and sha1, so identical content already there is adopted instead of uploaded.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from syncd.model import Action, Known, LocalFile, Op, RemoteFile

__all__ = [
    "DeletePolicy",
    "FolderPlan",
    "foreign_change",
    "full_listing_reason",
    "group_remote",
    "needs_hash",
    "pair_moves",
    "plan",
    "stat_changes",
]


@dataclass(frozen=True, slots=True)
class DeletePolicy:
    """When deletes are allowed for one folder."""

    delete_unknown: bool = False
    max_delete_percent: float = 10.0
    max_delete_count: int = 25
    force: bool = False


@dataclass(slots=True)
class FolderPlan:
    """The actions for one folder, plus why deletes were withheld (if they were)."""

    actions: list[Action] = field(default_factory=list)
    refused: str | None = None
    withheld_deletes: int = 0
    unknown_kept: int = 0

    def count(self, op: Op) -> int:
        """How many actions of one kind."""
        return sum(1 for a in self.actions if a.op is op)


def stat_changes(
    local: Mapping[str, LocalFile], stats: Iterable[tuple[str, int, int, int]]
) -> tuple[list[str], list[str], int]:
    """Compare the scan with the state's `(path, size, mtime_ns, inode)` rows.

    Returns the local paths whose stat differs or that are new, the state's paths that
    are gone locally, and how many files the state knows. A re-run with nothing changed
    is decided here alone, without building a `Known` per file: everything else then only
    looks at the paths this returns.
    """
    unseen = dict.fromkeys(local)
    changed: list[str] = []
    gone: list[str] = []
    synced = 0
    for path, size, mtime_ns, inode in stats:
        synced += 1
        f = local.get(path)
        if f is None:
            gone.append(path)
            continue
        del unseen[path]
        if f.mtime_ns != mtime_ns or f.size != size or f.inode != inode:
            changed.append(path)
    changed.extend(unseen)
    return changed, gone, synced


def full_listing_reason(
    *, verify: bool, bookmarked: bool, parked: bool, delete_unknown: bool, unknown_kept: int
) -> str | None:
    """Why the DAM folder must be listed in full this run, or None when the cheap check
    (recursive count + `updated_after`) may be trusted."""
    if verify:
        return "--verify"
    if not bookmarked:
        return "first run, or the last run did not finish cleanly"
    if delete_unknown and unknown_kept:
        return f"delete_unknown is on and the last run kept {unknown_kept} unknown files"
    if parked:
        return "files failed last time"
    return None


def foreign_change(changes: Iterable[RemoteFile], known: Mapping[str, Known]) -> str | None:
    """The first DAM change since the last run that syncd did not make itself (a path it
    does not know, another asset at a known path, or other content), or None."""
    for r in changes:
        k = known.get(r.path)
        if k is None or k.uuid != r.uuid or r.sha1 not in (k.remote_sha1, k.sha1):
            return f"{r.path} changed on the DAM"
    return None


def pair_moves(gone: Mapping[str, Known], new: Mapping[str, LocalFile]) -> list[tuple[str, str]]:
    """Pair synced files that disappeared with new files that are the same file under
    another name: same inode, size and mtime (a rename or move keeps all three, also for
    every file of a renamed directory and for a case-only rename). Returns (old, new) path
    pairs. Assets adopted from elsewhere (`foreign`) are never moved."""
    by_inode: dict[tuple[int, int, int], list[str]] = {}
    for path, k in gone.items():
        if not k.foreign:
            by_inode.setdefault((k.inode, k.size, k.mtime_ns), []).append(path)
    pairs = []
    for path, f in new.items():
        olds = by_inode.get((f.inode, f.size, f.mtime_ns))
        if olds:
            pairs.append((olds.pop(), path))
    return pairs


def group_remote(remote: Iterable[RemoteFile]) -> dict[str, list[RemoteFile]]:
    """Group a DAM listing by local-relative path (several assets can claim one path
    when the project adds random suffixes to names)."""
    grouped: dict[str, list[RemoteFile]] = {}
    for r in remote:
        grouped.setdefault(r.path, []).append(r)
    return grouped


def _in_sync(local: LocalFile, known: Known | None, r: RemoteFile) -> bool | None:
    """Does asset `r` hold `local`'s content? None when only a hash can tell."""
    if known is not None and known.uuid == r.uuid:
        remote_unchanged = r.sha1 is None or r.sha1 in (known.remote_sha1, known.sha1)
        if not remote_unchanged:
            return False if local.sha1 is None and known.same_stat(local) else _by_hash(local, r)
        if known.same_stat(local):
            return True
        if local.sha1 is not None:
            return local.sha1 == known.sha1
        return None if local.size == known.size else False
    return _by_hash(local, r)


def _by_hash(local: LocalFile, r: RemoteFile) -> bool | None:
    if r.size is not None and r.size != local.size and r.sha1 != local.sha1:
        # A different size settles it without reading the file, unless the hashes
        # were already computed and agree (a DAM that reports a transformed size).
        return False if local.sha1 is None else local.sha1 == r.sha1
    if local.sha1 is None:
        return None
    return local.sha1 == r.sha1


def needs_hash(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    remote: Mapping[str, list[RemoteFile]] | None,
) -> list[str]:
    """The local paths whose sha1 is needed to decide what to do.

    Only files whose stat changed since the last sync with an unchanged size, and new
    files that the DAM already holds at the same path with the same size, are read.
    Everything else is decided from stat alone (new files are hashed while uploading).
    """
    out: list[str] = []
    for path, lf in local.items():
        if lf.sha1 is not None:
            continue
        k = known.get(path)
        if remote is None:
            if k is not None and not k.same_stat(lf) and k.size == lf.size:
                out.append(path)
            continue
        candidates = remote.get(path)
        if candidates and any(_in_sync(lf, k, r) is None for r in candidates):
            out.append(path)
    return out


def plan(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    remote: Mapping[str, list[RemoteFile]] | None,
    policy: DeletePolicy,
    *,
    root_problem: str | None = None,
    protected: Iterable[str] = (),
    synced: int | None = None,
    local_total: int | None = None,
    still_used: Collection[str] = (),
) -> FolderPlan:
    """Decide the actions that make the DAM mirror `local`.

    Args:
        local: the scanned files (sha1 filled for the paths `needs_hash` named).
        known: the state rows of this folder.
        remote: the DAM listing grouped by path, or None to trust the state.
        policy: the folder's delete rules.
        root_problem: set when the local root is missing, unreadable or unmounted; no
            delete is planned then.
        protected: paths (files or whole directories) that exist locally but could not
            be read or are excluded now; nothing at or below them is deleted.
        synced, local_total: the folder's synced and local file counts when `known` and
            `local` hold only the changed paths (see `stat_changes`); default: their sizes.
        still_used: uuids that local files which are staying still map to (two identical
            files can share one asset when the project refuses duplicate content); such
            an asset is never deleted, only the gone path's state row is dropped.
    """
    synced = len(known) if synced is None else synced
    local_total = len(local) if local_total is None else local_total
    result = FolderPlan()
    actions = result.actions
    deletes: list[Action] = []
    if remote is None:
        _plan_incremental(local, known, actions, deletes)
    else:
        _plan_full(local, known, remote, policy, result, deletes)
    _moves_instead(local, known, actions, deletes)

    if still_used:
        shared = [d for d in deletes if d.uuid in still_used]
        deletes[:] = [d for d in deletes if d.uuid not in still_used]
        actions.extend(Action(Op.FORGET, d.path, uuid=d.uuid) for d in shared if d.path in known)
    guard = _Protected(protected)
    if guard:
        deletes[:] = [d for d in deletes if d.path not in guard]
        actions[:] = [a for a in actions if not (a.op is Op.FORGET and a.path in guard)]
    if not local_total and synced and root_problem is None:
        root_problem = (
            f"the folder is empty but syncd synced {synced} files from it (unmounted or wiped?)"
        )
    if deletes:
        if root_problem is not None:
            result.refused = f"{root_problem}; no file was deleted on the DAM"
        elif not policy.force and _over_threshold(len(deletes), synced, policy):
            result.refused = (
                f"refusing to delete {len(deletes)} of {synced} synced files"
                f" (limit: more than {policy.max_delete_percent:g}% and more than"
                f" {policy.max_delete_count} files); check the folder, then re-run with"
                " --force-delete to allow it"
            )
        if result.refused is None:
            actions.extend(deletes)
        else:
            result.withheld_deletes = len(deletes)
    return result


def _moves_instead(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    actions: list[Action],
    deletes: list[Action],
) -> None:
    """Turn a delete of a synced file plus an upload of the same file under a new path into
    one MOVE that keeps the asset (its uuid, metadata and links)."""
    uploads = {a.path: a for a in actions if a.op is Op.UPLOAD}
    gone = {p: k for p, k in known.items() if p not in local}
    pairs = pair_moves(gone, {p: local[p] for p in uploads})
    if not pairs:
        return
    moved_from = {old for old, _ in pairs}
    moved_to = {new for _, new in pairs}
    moved_uuids = {gone[old].uuid for old in moved_from}
    actions[:] = [
        a
        for a in actions
        if a.path not in moved_to and not (a.op is Op.FORGET and a.path in moved_from)
    ]
    deletes[:] = [d for d in deletes if d.uuid not in moved_uuids]
    for old, new in pairs:
        k = gone[old]
        lf = replace(local[new], sha1=k.sha1)
        actions.append(Action(Op.MOVE, new, lf, k.uuid, k.remote_sha1, source=old))


class _Protected:
    """Membership test for paths at or below a set of protected paths."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = {p.rstrip("/") for p in paths}

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __contains__(self, path: object) -> bool:
        assert isinstance(path, str)
        while path:
            if path in self._paths:
                return True
            path = path.rpartition("/")[0]
        return False


def _over_threshold(deletes: int, synced: int, policy: DeletePolicy) -> bool:
    share = 100.0 * deletes / synced if synced else 100.0
    return deletes > policy.max_delete_count and share > policy.max_delete_percent


def _plan_incremental(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    actions: list[Action],
    deletes: list[Action],
) -> None:
    for path, lf in local.items():
        k = known.get(path)
        if k is None:
            actions.append(Action(Op.UPLOAD, path, lf))
        elif k.same_stat(lf):
            continue
        elif lf.sha1 is not None and lf.sha1 == k.sha1:
            actions.append(Action(Op.REFRESH, path, lf, k.uuid, k.remote_sha1))
        elif k.foreign:
            # The asset is someone else's copy of the old content: leave it be.
            actions.append(Action(Op.UPLOAD, path, lf))
        else:
            actions.append(Action(Op.REPLACE, path, lf, k.uuid))
    for path, k in known.items():
        if path not in local:
            gone = Action(Op.FORGET if k.foreign else Op.DELETE, path, uuid=k.uuid)
            (actions if k.foreign else deletes).append(gone)


def _plan_full(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    remote: Mapping[str, list[RemoteFile]],
    policy: DeletePolicy,
    result: FolderPlan,
    deletes: list[Action],
) -> None:
    actions = result.actions
    known_uuids = {k.uuid for k in known.values()}
    for path, lf in local.items():
        k = known.get(path)
        candidates = remote.get(path, [])
        keep = _pick(lf, k, candidates)
        if keep is None:
            actions.append(Action(Op.UPLOAD, path, lf))
        elif _in_sync(lf, k, keep) is True:
            if k is None or k.uuid != keep.uuid or not k.same_stat(lf):
                actions.append(Action(Op.ADOPT, path, lf, keep.uuid, keep.sha1))
        elif k is not None or keep.uuid in known_uuids or policy.delete_unknown:
            # The path is syncd's (it synced it before), or the asset is: local wins.
            actions.append(Action(Op.REPLACE, path, lf, keep.uuid))
        else:
            # Other content that syncd never uploaded, at a path it never synced: upload
            # beside it, never over it (the project's same-name rule decides the rest).
            actions.append(Action(Op.UPLOAD, path, lf))
            result.unknown_kept += 1
        for extra in candidates:
            if extra is not keep:
                _delete_remote(extra, known_uuids, policy, result, deletes)
    for path, candidates in remote.items():
        if path not in local:
            for r in candidates:
                _delete_remote(r, known_uuids, policy, result, deletes)
    remote_uuids = {r.uuid for rs in remote.values() for r in rs}
    for path, k in known.items():
        if path not in local and k.uuid not in remote_uuids:
            # Gone on both sides: only the state row is left to drop.
            actions.append(Action(Op.FORGET, path, uuid=k.uuid))


def _pick(lf: LocalFile, k: Known | None, candidates: list[RemoteFile]) -> RemoteFile | None:
    """The asset that represents a local path: the one the state knows, else one with the
    same content, else the first."""
    if not candidates:
        return None
    if k is not None:
        for r in candidates:
            if r.uuid == k.uuid:
                return r
    for r in candidates:
        if lf.sha1 is not None and r.sha1 == lf.sha1:
            return r
    return candidates[0]


def _delete_remote(
    r: RemoteFile,
    known_uuids: set[str],
    policy: DeletePolicy,
    result: FolderPlan,
    deletes: list[Action],
) -> None:
    if r.uuid in known_uuids or policy.delete_unknown:
        deletes.append(Action(Op.DELETE, r.path, uuid=r.uuid))
    else:
        result.unknown_kept += 1
