"""Planning against a DAM listing (`--initial-sync` full mode, `--verify`): pure
decisions, no I/O. Identity comes first: an asset whose uuid the state knows is that
row's, wherever it sits (see `syncd.engine.match`); only assets syncd does not know are matched
by path and content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from syncd.engine.match import RemoteView, fits
from syncd.model import Action, Known, LocalFile, Op, RemoteFile

__all__ = ["DeletePolicy", "FolderPlan", "by_hash", "in_sync", "plan_full", "row_of"]


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


def in_sync(local: LocalFile, known: Known | None, r: RemoteFile) -> bool | None:
    """Does asset `r` hold `local`'s content? None when only a hash can tell."""
    if known is not None and known.uuid == r.uuid:
        remote_unchanged = r.sha1 is None or r.sha1 in (known.remote_sha1, known.sha1)
        if not remote_unchanged:
            return False if local.sha1 is None and known.same_stat(local) else by_hash(local, r)
        if known.same_stat(local):
            return True
        if local.sha1 is not None:
            return local.sha1 == known.sha1
        return None if local.size == known.size else False
    return by_hash(local, r)


def by_hash(local: LocalFile, r: RemoteFile) -> bool | None:
    if r.size is not None and r.size != local.size and r.sha1 != local.sha1:
        # A different size settles it without reading the file, unless the hashes
        # were already computed and agree (a DAM that reports a transformed size).
        return False if local.sha1 is None else local.sha1 == r.sha1
    if local.sha1 is None:
        return None
    return local.sha1 == r.sha1


def row_of(path: str, own: RemoteFile, known: Mapping[str, Known], remote: RemoteView) -> Known:
    """The state row that names `own` as the asset of local `path`."""
    k = known.get(path)
    if k is not None and k.uuid == own.uuid:
        return k
    return known[remote.relocated[path]]


def plan_full(
    local: Mapping[str, LocalFile],
    known: Mapping[str, Known],
    remote: RemoteView,
    policy: DeletePolicy,
    result: FolderPlan,
    deletes: list[Action],
) -> None:
    actions = result.actions
    for path, lf in local.items():
        candidates = remote.unknown.get(path, [])
        own = remote.own.get(path)
        if own is not None:
            kept = _plan_own(path, lf, own, known, remote, candidates, actions, deletes)
        else:
            kept = _plan_unowned(path, lf, path in known, candidates, policy, result)
        for extra in candidates:
            if extra is not kept:
                _delete_unknown(extra, policy, result, deletes)
    for path, candidates in remote.unknown.items():
        if path not in local:
            for r in candidates:
                _delete_unknown(r, policy, result, deletes)
    deletes.extend(Action(Op.DELETE, path, uuid=r.uuid) for path, r in remote.leftover)
    claimed = {r.uuid for r in remote.own.values()}
    relocated_from = set(remote.relocated.values())
    for path, k in known.items():
        if path in local or path in relocated_from:
            continue
        if k.uuid not in remote.uuids or k.uuid in claimed:
            # Gone on both sides, or its asset belongs to another local path now: only
            # the state row is left to drop.
            actions.append(Action(Op.FORGET, path, uuid=k.uuid))


def _plan_own(
    path: str,
    lf: LocalFile,
    own: RemoteFile,
    known: Mapping[str, Known],
    remote: RemoteView,
    candidates: list[RemoteFile],
    actions: list[Action],
    deletes: list[Action],
) -> RemoteFile | None:
    """A local file whose asset the state knows by uuid: that asset is the file's,
    whatever its name says; put it back in place if it was moved, replace it if the
    content differs. Returns the unknown asset the plan used instead, if any."""
    row = row_of(path, own, known, remote)
    k = known.get(path)
    if path in remote.relocated:
        actions.append(Action(Op.FORGET, remote.relocated[path], uuid=own.uuid))
    if in_sync(lf, row, own) is not True:
        twin = next((r for r in candidates if by_hash(lf, r) is True), None)
        if twin is not None:
            # An unknown asset at this path already holds the new content (a replacement
            # cut short by a crash left it): take it, and retire the outdated asset.
            actions.append(_adopt(path, lf, twin))
            if not row.foreign:
                deletes.append(Action(Op.DELETE, path, uuid=own.uuid))
            return twin
        # An asset adopted from elsewhere (the project refused a second copy) is someone
        # else's copy of the old content: leave it be and upload the new content.
        replaced = None if row.foreign else own.uuid
        actions.append(Action(Op.UPLOAD if row.foreign else Op.REPLACE, path, lf, replaced))
        return None
    lf = lf if lf.sha1 is not None else replace(lf, sha1=row.sha1)
    remote_sha1 = own.sha1 or row.remote_sha1
    if not fits(own, path) and not row.foreign:
        # Renamed or moved on the DAM by someone else: the local tree decides.
        actions.append(
            Action(Op.MOVE, path, lf, own.uuid, remote_sha1, source=None, remote_path=own.path)
        )
    elif k is None or k.uuid != own.uuid or not k.same_stat(lf):
        actions.append(Action(Op.ADOPT, path, lf, own.uuid, remote_sha1))
    return None


def _plan_unowned(
    path: str,
    lf: LocalFile,
    synced: bool,
    candidates: list[RemoteFile],
    policy: DeletePolicy,
    result: FolderPlan,
) -> RemoteFile | None:
    """A local file without an asset of its own on the DAM (`synced`: it had one, which
    is gone from the DAM now): adopt an unknown asset that
    holds its content, or upload it. Returns the unknown asset the plan took account of
    (adopted, replaced, or kept beside the upload), if any."""
    actions = result.actions
    keep = _pick(lf, candidates)
    if keep is None:
        actions.append(Action(Op.UPLOAD, path, lf))
        return None
    if by_hash(lf, keep) is True:
        actions.append(_adopt(path, lf, keep))
    elif synced or policy.delete_unknown:
        # The path is syncd's (it synced it before; its asset was replaced on the DAM by
        # someone else), or unknown assets may go: local wins.
        actions.append(Action(Op.REPLACE, path, lf, keep.uuid))
    else:
        # Other content that syncd did not upload: upload beside it, never over it (the
        # project's same-name rule decides the rest).
        actions.append(Action(Op.UPLOAD, path, lf))
        result.unknown_kept += 1
    return keep


def _adopt(path: str, lf: LocalFile, r: RemoteFile) -> Action:
    """Take an unknown asset that holds the file's content: as it is where it sits, or
    renamed into place when it carries a temporary name."""
    if fits(r, path):
        return Action(Op.ADOPT, path, lf, r.uuid, r.sha1)
    return Action(Op.MOVE, path, lf, r.uuid, r.sha1, source=None, remote_path=r.path)


def _pick(lf: LocalFile, candidates: list[RemoteFile]) -> RemoteFile | None:
    """The unknown asset that stands for a local path: one with the same content, else
    the oldest."""
    if not candidates:
        return None
    for r in candidates:
        if lf.sha1 is not None and r.sha1 == lf.sha1:
            return r
    return candidates[0]


def _delete_unknown(
    r: RemoteFile, policy: DeletePolicy, result: FolderPlan, deletes: list[Action]
) -> None:
    """An asset syncd does not know, at no local path: deleted only with delete_unknown."""
    if policy.delete_unknown:
        deletes.append(Action(Op.DELETE, r.path, uuid=r.uuid))
    else:
        result.unknown_kept += 1
