"""Pure sync decisions: local files × state × DAM listing → actions, with the
delete-safety rules. No I/O; every input is plain data, so the rules are tested as tables.

Two modes:

* **incremental** (`remote is None`): the DAM side is trusted to match the state (the
  caller checked the remote count and the `updated_after` changes), so only the local
  side is diffed against the state;
* **full** (`remote` is a listing, matched by `syncd.engine.match.view`): an asset whose uuid
  the state knows is that row's, wherever it sits (it is moved back if it is out of
  place); only assets syncd does not know are matched by path and sha1, so identical
  content already there is adopted instead of uploaded.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from syncd.engine.match import RemoteView, fits
from syncd.engine.plan_full import DeletePolicy, FolderPlan, by_hash, in_sync, plan_full, row_of
from syncd.model import Action, Known, LocalFile, Op, RemoteFile, StatRow

__all__ = [
    "DeletePolicy",
    "FolderPlan",
    "StatDiff",
    "foreign_change",
    "full_listing_reason",
    "needs_hash",
    "pair_moves",
    "plan",
    "stat_changes",
]


@dataclass(slots=True)
class StatDiff:
    """A sorted walk compared with the state's rows: the local files that are new or whose
    stat moved, the state's paths that are gone locally, and how many files each side has."""

    changed: dict[str, LocalFile] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    local: int = 0
    synced: int = 0


def stat_changes(
    segments: Iterable[tuple[str | None, list[StatRow]]],
    rows_until: Callable[[str | None], list[StatRow]],
) -> StatDiff:
    """Compare a sorted walk, stretch by stretch, with the state's rows of the same
    stretch (`rows_until(end)`: the next rows whose path sorts before `end`).

    A stretch with nothing changed is one list comparison, so a re-run with nothing
    changed is decided here without building an object per file or holding the tree:
    everything else then only looks at the paths this returns.
    """
    diff = StatDiff()
    changed, gone = diff.changed, diff.gone
    for end, files in segments:
        rows = rows_until(end)
        diff.local += len(files)
        diff.synced += len(rows)
        if files == rows:
            continue
        old = {row[0]: row for row in rows}
        for f in files:
            if old.pop(f[0], None) != f:
                changed[f[0]] = LocalFile(*f)
        gone.extend(old)
    return diff


def full_listing_reason(
    *,
    verify: bool,
    bookmarked: bool,
    parked: bool,
    delete_unknown: bool,
    unknown_kept: int,
    unsure: int = 0,
) -> str | None:
    """Why the DAM folder must be listed in full this run, or None when the cheap check
    (recursive count + `updated_after`) may be trusted."""
    if verify:
        return "--verify"
    if not bookmarked:
        return "first run, or the last run did not finish cleanly"
    if unsure:
        return f"{unsure} uploads of unknown outcome are still to be checked"
    if delete_unknown and unknown_kept:
        return f"delete_unknown is on and the last run kept {unknown_kept} unknown files"
    if parked:
        return "files failed last time"
    return None


def foreign_change(changes: Iterable[RemoteFile], known: Mapping[str, Known]) -> str | None:
    """The first DAM change since the last run that syncd did not make itself, or None.

    `known` maps the changed assets' uuids to their state rows. A change is syncd's own
    when the state knows the uuid, the asset sits where that row's path belongs, and it
    holds the content syncd recorded (its size, when the listing gives no sha1)."""
    for r in changes:
        k = known.get(r.uuid)
        if k is not None and k.foreign:
            continue  # an asset adopted from elsewhere lives where its owner put it
        if k is None or not fits(r, k.path):
            return f"{r.path} changed on the DAM"
        if r.sha1 is not None:
            if r.sha1 not in (k.remote_sha1, k.sha1):
                return f"{r.path} changed on the DAM"
        elif r.size is not None and r.size != k.size:
            return f"{r.path} changed on the DAM"
    return None


def pair_moves(gone: Mapping[str, Known], new: Mapping[str, LocalFile]) -> list[tuple[str, str]]:
    """Pair synced files that left their path with files that are the same file under
    another path: same inode, size and mtime (a rename or move keeps all three, also for
    every file of a renamed directory, a case-only rename and a swap). Returns (old, new)
    path pairs. Assets adopted from elsewhere (`foreign`) are never moved."""
    by_inode: dict[tuple[int, int, int], list[str]] = {}
    for path, k in gone.items():
        if not k.foreign:
            by_inode.setdefault((k.inode, k.size, k.mtime_ns), []).append(path)
    pairs = []
    for path, f in new.items():
        olds = by_inode.get((f.inode, f.size, f.mtime_ns))
        if olds:
            old = olds.pop()
            if old != path:
                pairs.append((old, path))
    return pairs


def needs_hash(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    remote: RemoteView | None,
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
        own = remote.own.get(path)
        twins = remote.unknown.get(path, [])
        if own is not None:
            state = in_sync(lf, row_of(path, own, known, remote), own)
            # Out of date: an unknown asset here may hold the new content already.
            if state is None or (not state and any(by_hash(lf, r) is None for r in twins)):
                out.append(path)
            continue
        if any(by_hash(lf, r) is None for r in twins):
            out.append(path)
    return out


def plan(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    remote: RemoteView | None,
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
        remote: the DAM listing matched by `syncd.engine.match.view`, or None to trust the state.
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
        plan_full(local, known, remote, policy, result, deletes)
    _moves_instead(local, known, actions, deletes, {} if remote is None else remote.where())

    if still_used and remote is not None:
        still_used = _kept_uuids(local, known, actions, still_used)
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
            # A move onto a path whose asset may not be deleted waits with it: the asset
            # holds the name, and the row would lose it.
            held = {d.path for d in deletes}
            actions[:] = [a for a in actions if not (a.op is Op.MOVE and a.path in held)]
    return result


def _moves_instead(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    actions: list[Action],
    deletes: list[Action],
    where: Mapping[str, str],
) -> None:
    """Turn a synced file that left its path plus an upload (or replacement) of the same
    file under another path into one MOVE that keeps the asset (its uuid, metadata and
    links). A file "left its path" when the path is gone or now holds another inode, so a
    swap (a→tmp, b→a, tmp→b) becomes two moves. A path that keeps a file after its asset
    moved away gets that file uploaded as new; an asset whose file was overwritten by a
    moved one (`mv a b` over a synced b) is deleted. `where` maps uuids to their DAM paths
    when a listing was read."""
    sent = {a.path: a for a in actions if a.op in (Op.UPLOAD, Op.REPLACE, Op.REFRESH)}
    gone = {
        p: k
        for p, k in known.items()
        if p not in local or (p in sent and local[p].inode != k.inode)
    }
    new = {
        p: local[p]
        for p, a in sent.items()
        if a.op is Op.UPLOAD or (p in known and local[p].inode != known[p].inode)
    }
    pairs = pair_moves(gone, new)
    if not pairs:
        return
    moved_from = {old for old, _ in pairs}
    moved_to = {new for _, new in pairs}
    moved_uuids = {gone[old].uuid for old in moved_from}
    kept: list[Action] = []
    for a in actions:
        if a.path in moved_to and a.op in (Op.UPLOAD, Op.REPLACE, Op.REFRESH):
            continue
        if a.path in moved_from and a.op is Op.FORGET:
            continue
        if a.path in moved_from and a.op in (Op.REPLACE, Op.REFRESH) and a.local is not None:
            # Its asset moves away with the old file; what is here now is a new file.
            kept.append(Action(Op.UPLOAD, a.path, replace(a.local, sha1=None)))
            continue
        kept.append(a)
    actions[:] = kept
    deletes[:] = [d for d in deletes if d.uuid not in moved_uuids]
    for old, new_path in pairs:
        k = gone[old]
        lf = replace(local[new_path], sha1=k.sha1)
        actions.append(
            Action(
                Op.MOVE,
                new_path,
                lf,
                k.uuid,
                k.remote_sha1,
                source=old,
                remote_path=where.get(k.uuid),
            )
        )
        overwritten = known.get(new_path)
        if (
            overwritten is not None
            and overwritten.uuid not in moved_uuids
            and not overwritten.foreign
            and all(d.uuid != overwritten.uuid for d in deletes)
        ):
            deletes.append(Action(Op.DELETE, new_path, uuid=overwritten.uuid))


def _kept_uuids(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    actions: list[Action],
    still_used: Collection[str],
) -> set[str]:
    """Of `still_used`, the uuids a staying row keeps after this plan (full mode, where
    `known` holds every row): a row whose path gets another asset (a file moved over it,
    an asset adopted in its place) or new content (a replacement retires its asset) keeps
    nothing, and its old asset must go."""
    renewed = {
        a.path
        for a in actions
        if a.op is Op.REPLACE
        or (
            a.op in (Op.MOVE, Op.ADOPT, Op.UPLOAD)
            and a.path in known
            and known[a.path].uuid != a.uuid
        )
    }
    kept = {k.uuid for p, k in known.items() if p in local and p not in renewed}
    return {u for u in still_used if u in kept}


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
