"""Carrying out renames and moves on the DAM, keeping each asset's uuid: one bulk move
per target folder, then a rename where the name must change. When assets of one batch
trade names (a swap: a→tmp, b→a, tmp→b), the names are first freed under temporary
ones, so no rename runs into a name another asset of the batch still holds.

Replays are safe: `DamClient.rename` and `move_files` check a 409 against the asset's
current state (docs/dam-api.md, "no-op renames and moves")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncd.dam.client import DamClient
from syncd.engine.match import derived_name, temporary_name
from syncd.errors import AuthError, DamError
from syncd.model import Action, remote_location

__all__ = ["Moved", "carry_out_moves"]


@dataclass(slots=True)
class Moved:
    """The outcome of a batch of moves: the actions done, and the failed ones."""

    done: list[Action]
    failed: list[tuple[Action, DamError]]


@dataclass(slots=True)
class _Step:
    action: Action
    uuid: str
    folder: str  # where the asset is now
    name: str
    new_folder: str
    new_name: str
    renamed: bool | None  # whether the local name changed; None: only the DAM side moved

    def needs_rename(self) -> bool:
        if self.renamed is not None:
            return self.renamed
        # Put back in place: a name the naming rule made of the right one (a random
        # suffix) is left as it is.
        return self.name != self.new_name and not derived_name(self.name, self.new_name)


async def carry_out_moves(dam: DamClient, remote_root: str, moves: Sequence[Action]) -> Moved:
    """Move and rename the assets of `moves` (MOVE actions) into place. Raises
    `AuthError` at once; any other failure fails only the actions it concerns."""
    steps = []
    for a in moves:
        assert a.uuid is not None
        at = a.remote_path if a.remote_path is not None else a.source
        assert at is not None
        folder, name = remote_location(remote_root, at)
        new_folder, new_name = remote_location(remote_root, a.path)
        renamed = None if a.source is None else a.source.rpartition("/")[2] != new_name
        steps.append(_Step(a, a.uuid, folder, name, new_folder, new_name, renamed))
    out = Moved([], [])
    failed: set[str] = set()
    by_folder: dict[str, list[_Step]] = {}
    for s in steps:
        if s.new_folder != s.folder:
            by_folder.setdefault(s.new_folder, []).append(s)
    for folder, group in by_folder.items():
        try:
            await dam.move_files([s.uuid for s in group], folder)
        except AuthError:
            raise
        except DamError as exc:
            for s in group:
                out.failed.append((s.action, exc))
                failed.add(s.uuid)
    renames = [s for s in steps if s.uuid not in failed and s.needs_rename()]
    held = {(s.new_folder, s.name) for s in renames}
    if any((s.new_folder, s.new_name) in held for s in renames):
        # Some target names are held by assets of this batch: free them all first.
        for s in renames:
            temp = temporary_name(s.new_name)
            if await _rename(dam, s, temp, out, failed):
                s.name = temp
    for s in renames:
        if s.uuid not in failed:
            await _rename(dam, s, s.new_name, out, failed)
    out.done = [s.action for s in steps if s.uuid not in failed]
    return out


async def _rename(dam: DamClient, s: _Step, name: str, out: Moved, failed: set[str]) -> bool:
    try:
        await dam.rename(s.uuid, name)
    except AuthError:
        raise
    except DamError as exc:
        out.failed.append((s.action, exc))
        failed.add(s.uuid)
        return False
    return True
