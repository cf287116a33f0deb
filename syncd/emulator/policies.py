"""The project's upload rules (docs/dam-api.md §2.3) and the guessed listing rules (§3.1, §12) as
pure decisions: which stored name a new file gets, which existing file an upload collides
with, whether it is refused, and what a listing's `q`, `updated_after` and `sort` mean."""

from __future__ import annotations

import posixpath
import random
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from syncd.emulator.model import EmulatorError, Folder, StoredFile
from syncd.emulator.options import Naming, Options, QMatch

__all__ = ["ListingQuery", "check_upload", "collisions", "listing_query", "stored_name"]

_SUFFIX_ALPHABET = string.ascii_letters + string.digits
# Word separators for `q_match="words"`: anything but a letter or digit.
_NOT_ALNUM = re.compile(r"[\W_]+")
# The DAM's default order, `filename:asc` (docs/dam-api.md §3.1).
_DEFAULT_ORDER = ("name", False)
# Newest first: what `page_drift` serves, so new files push older ones to later pages.
_NEWEST_FIRST = ("created_at", True)


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
    # Compared by stored name, a renaming rule gives the upload a fresh name that matches
    # nothing: the skip applies only when names are kept, or when it compares names sent.
    skip_same = options.naming == "keep" or options.same_asset_by == "sent"
    for existing in same_name if skip_same else ():
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


@dataclass(frozen=True, slots=True)
class ListingQuery:
    """A file listing's filters and order once the options have had their say. Hashable,
    so it keys the listing caches: a changed option gives a different key.

    Attributes:
        q: the casefolded search text, or None for no search.
        q_match: how `q` matches (`Options.q_match`; never `ignored` when `q` is set).
        updated_after_ms: keep files modified strictly after this (epoch milliseconds).
        sort: a key of `index.SORT_FIELDS`, and whether to sort descending.
    """

    q: str | None = None
    q_match: QMatch = "stored"
    updated_after_ms: float | None = None
    sort: tuple[str, bool] = ("created_at", False)

    def matcher(self) -> Callable[[StoredFile], bool] | None:
        """Return the test a file must pass to match `q`, or None when there is no search."""
        needle = self.q
        if needle is None:
            return None
        if self.q_match == "both":
            return lambda f: needle in f.name.casefold() or needle in f.original_name.casefold()
        if self.q_match == "words":
            return lambda f: needle in _NOT_ALNUM.split(f.name.casefold())
        return lambda f: needle in f.name.casefold()


def listing_query(
    options: Options, *, q: str | None, updated_after_ms: float | None, sort: tuple[str, bool]
) -> ListingQuery:
    """Apply the listing switches of `options` to what a request asked for.

    Args:
        options: the live options (`q_match`, `updated_after`, `sort`, `page_drift`).
        q: the request's search text, if any.
        updated_after_ms: the request's `updated_after` in epoch milliseconds, if any.
        sort: the order the request asked for (see `shapes.parse_sort`).
    """
    if options.updated_after == "ignored":
        updated_after_ms = None
    elif options.updated_after == "second" and updated_after_ms is not None:
        # Whole seconds: modified // 1000 > threshold // 1000, which for whole milliseconds
        # is modified > the threshold's second plus 999 ms.
        updated_after_ms = (updated_after_ms // 1000) * 1000 + 999
    if options.page_drift:
        sort = _NEWEST_FIRST
    elif options.sort == "ignored":
        sort = _DEFAULT_ORDER
    if not q or options.q_match == "ignored":
        return ListingQuery(None, "stored", updated_after_ms, sort)
    return ListingQuery(q.casefold(), options.q_match, updated_after_ms, sort)
