"""The project's upload rules (dam-api.md §2.3) as pure decisions: which stored name a new
file gets, which existing file an upload collides with, and whether it is refused."""

from __future__ import annotations

import posixpath
import random
import string
from collections.abc import Iterable

from syncd.emulator.model import EmulatorError, Folder, StoredFile
from syncd.emulator.options import Naming, Options

__all__ = ["check_upload", "collisions", "stored_name"]

_SUFFIX_ALPHABET = string.ascii_letters + string.digits


def collisions(naming: Naming, folder: Folder | None, original: str) -> list[StoredFile]:
    """Return the files in `folder` that an upload named `original` collides with.

    With the keep rule stored names are compared. With suffix or uuid naming the stored
    names are random, so the original names (`info.name`) are compared instead.
    """
    if folder is None:
        return []
    if naming == "keep":
        hit = folder.files.get(original)
        return [hit] if hit is not None else []
    return list(folder.originals.get(original, {}).values())


def stored_name(naming: Naming, rng: random.Random, folder: Folder, original: str) -> str:
    """Return the name a new upload of `original` is stored under in `folder`."""
    if naming == "keep":
        return original
    stem, ext = posixpath.splitext(original)
    while True:
        if naming == "suffix":
            name = f"{stem}-{''.join(rng.choices(_SUFFIX_ALPHABET, k=8))}{ext}"
        else:
            name = f"{rng.getrandbits(128):032x}{ext}"
        if name not in folder.files:
            return name


def check_upload(
    options: Options,
    *,
    path: str,
    original: str,
    sha1: str,
    same_name: list[StoredFile],
    same_content: Iterable[StoredFile],
) -> StoredFile | None:
    """Decide whether an upload may go ahead.

    Args:
        options: the live policies.
        path: the target folder path.
        original: the upload's original name.
        sha1: the upload's content hash.
        same_name: the files it collides with by name (see `collisions`).
        same_content: every file in the project with content `sha1`.

    Returns:
        The existing file to override or version, or None for a plain new file (always
        None unless the project keeps original names).

    Raises:
        EmulatorError: `SAME_ASSET_EXISTS_SKIP_UPLOAD` (built in, always on),
            `ERROR_SHA1_CONFLICT` (duplicates refused) or `FILE_ALREADY_EXISTS` (same name
            refused).
    """
    context = {"version": "emulator", "name": original, "folder": path}
    for existing in same_name:
        if existing.sha1 == sha1:
            raise EmulatorError(
                options.same_asset_status,
                "SAME_ASSET_EXISTS_SKIP_UPLOAD",
                "an identical file with this name is already in this folder",
                existing_file_uuid=existing.uuid,
                similar_file_path="",
                info=context,
            )
    if options.duplicates == "refuse":
        for other in same_content:
            raise EmulatorError(
                options.same_asset_status,
                "ERROR_SHA1_CONFLICT",
                "identical content already exists in the project",
                existing_file_uuid=other.uuid,
                similar_file_path=other.path,
                info=context,
            )
    if not same_name or options.naming != "keep":
        # Random stored names never collide: the same-name policy has nothing to act on,
        # and the earlier file stays beside the new one.
        return None
    target = same_name[0]
    if options.same_name == "refuse":
        raise EmulatorError(
            409,
            "FILE_ALREADY_EXISTS",
            f"{target.path} already exists",
            "rename the file or change the project's same-name policy",
            existing_file_uuid=target.uuid,
        )
    return target
