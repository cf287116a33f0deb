"""The emulator's in-memory DAM: folders, files, their indexes and the project's upload
policies (docs/dam-api.md §2.3). Pure Python with no HTTP. Every operation is O(1) or O(folder
depth) except listings, which are cached until the next mutation (or, while listings lag,
until the lagging index in `index.py` next changes)."""

from __future__ import annotations

import posixpath
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from syncd.emulator.blobs import Blobs, Content
from syncd.emulator.index import LaggedIndex, ListingCache, select
from syncd.emulator.model import (
    EmulatorError,
    Folder,
    Listing,
    StoredFile,
    check_file_name,
    guess_mime,
    normalize_folder,
)
from syncd.emulator.options import Options
from syncd.emulator.policies import check_upload, collisions, listing_query, stored_name

__all__ = ["Store"]


class Store:
    """Folders and files of one emulated project.

    Args:
        options: the live options, read at each upload, rename, move and listing.
        blobs: where content goes.
        rng: randomness for uuids and name suffixes (seedable for reproducible runs).
        clock: wall-clock seconds, injectable for tests.
    """

    def __init__(
        self,
        options: Options,
        blobs: Blobs,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.blobs = blobs
        self.rng = rng or random.Random()
        self._clock = clock
        # Bumped by every change; listings cached under an older value are stale.
        self.mutations = 0
        self._seq = 0
        self._cache = ListingCache()
        self.clear()

    def now_ms(self) -> int:
        """Return the clock in whole milliseconds, the precision of the wire timestamps."""
        return int(self._clock() * 1000)

    def new_uuid(self) -> str:
        """Return a random uuid4 string drawn from the (seedable) generator."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def clear(self) -> None:
        """Forget every file and folder, leaving an empty root."""
        now = self.now_ms()
        self.root = Folder(self.new_uuid(), "/", "", None, now, now)
        self._folders: dict[str, Folder] = {"/": self.root}
        self._folders_by_uuid: dict[str, Folder] = {self.root.uuid: self.root}
        self._files: dict[str, StoredFile] = {}
        self._by_sha1: dict[str, dict[str, StoredFile]] = {}
        # What listings read while `listing_lag_s` > 0; a reset is visible at once.
        self._lagged: LaggedIndex | None = None
        self.blobs.clear()
        self.mutations += 1

    # ---- lookups -------------------------------------------------------------------------

    def folder(self, path: str) -> Folder | None:
        """Return the folder at `path` (normalized first), or None."""
        return self._folders.get(normalize_folder(path))

    def folder_by_uuid(self, folder_uuid: str) -> Folder | None:
        """Return the folder with this uuid, or None."""
        return self._folders_by_uuid.get(folder_uuid)

    def file(self, file_uuid: str) -> StoredFile | None:
        """Return the file with this uuid, or None."""
        return self._files.get(file_uuid)

    def all_files(self) -> list[StoredFile]:
        """Return every file in creation order."""
        return list(self._files.values())

    # ---- folders -------------------------------------------------------------------------

    def ensure_folder(self, path: str) -> Folder:
        """Return the folder at `path`, creating it and any missing ancestors."""
        path = normalize_folder(path)
        found = self._folders.get(path)
        if found is not None:
            return found
        parent = self.ensure_folder(posixpath.dirname(path))
        now = self.now_ms()
        folder = Folder(self.new_uuid(), path, posixpath.basename(path), parent, now, now)
        parent.children[folder.name] = folder
        parent.updated_ms = now
        self._folders[path] = folder
        self._folders_by_uuid[folder.uuid] = folder
        self.mutations += 1
        return folder

    def create_folder(self, path: str) -> Folder:
        """Create the folder at `path` and any missing ancestors.

        Raises:
            EmulatorError: 403 `FOLDER_ALREADY_EXISTS`.
        """
        if normalize_folder(path) in self._folders:
            raise EmulatorError(403, "FOLDER_ALREADY_EXISTS", f"folder {path!r} already exists")
        return self.ensure_folder(path)

    def delete_folders(self, folder_uuids: Sequence[str]) -> list[str]:
        """Delete empty folders, all or none; unknown uuids are skipped.

        A folder counts as empty when it holds no files and every subfolder is also being
        deleted, so a parent and its empty children can go in one call.

        Returns:
            The uuids deleted, deepest first.

        Raises:
            EmulatorError: 403 for the root; 409 `FOLDER_NOT_EMPTY` naming the offenders.
        """
        wanted = {u: f for u in folder_uuids if (f := self._folders_by_uuid.get(u)) is not None}
        if any(f is self.root for f in wanted.values()):
            raise EmulatorError(403, "FOLDER_ROOT_PROTECTED", "the root folder cannot be deleted")
        blocked = [
            u
            for u, f in wanted.items()
            if f.files_recursive or any(c.uuid not in wanted for c in f.subtree())
        ]
        if blocked:
            raise EmulatorError(
                409,
                "FOLDER_NOT_EMPTY",
                "folder is not empty",
                "delete or move its files and subfolders first",
                folders_uuids=blocked,
            )
        deepest_first = sorted(wanted.values(), key=lambda f: f.path.count("/"), reverse=True)
        for folder in deepest_first:
            assert folder.parent is not None
            folder.parent.children.pop(folder.name, None)
            folder.parent.updated_ms = self.now_ms()
            del self._folders[folder.path]
            del self._folders_by_uuid[folder.uuid]
        self.mutations += 1
        return [f.uuid for f in deepest_first]

    def list_folders(self, folder: Folder, *, recursive: bool, q: str | None) -> list[Folder]:
        """Return the subfolders of `folder` (every descendant if `recursive`), by path."""
        found = folder.subtree()[1:] if recursive else list(folder.children.values())
        if q:
            needle = q.casefold()
            found = [f for f in found if needle in f.name.casefold()]
        return sorted(found, key=lambda f: f.path)

    # ---- files ---------------------------------------------------------------------------

    def _lagging(self) -> LaggedIndex | None:
        """Return the lagging index while listings lag, else None. Called before every change
        and listing, so the index starts from the project as it is when the lag is switched
        on, and is dropped (listings go live at once) when it is switched off."""
        if self.options.listing_lag_s <= 0:
            self._lagged = None
        elif self._lagged is None:
            self._lagged = LaggedIndex(self._files.values())
        return self._lagged

    def _link(self, f: StoredFile) -> None:
        if (lagged := self._lagging()) is not None:
            lagged.changed(self._clock(), f)
        folder = f.folder
        folder.files[f.name] = f
        folder.originals.setdefault(f.original_name, {})[f.uuid] = f
        self._files[f.uuid] = f
        self._by_sha1.setdefault(f.sha1, {})[f.uuid] = f
        for node in folder.ancestry():
            node.files_recursive += 1
            node.bytes_recursive += f.size
        folder.updated_ms = f.modified_ms
        self.mutations += 1

    def _unlink(self, f: StoredFile) -> None:
        if (lagged := self._lagging()) is not None:
            lagged.deleted(self._clock(), f.uuid)
        folder = f.folder
        folder.files.pop(f.name, None)
        _pop_nested(folder.originals, f.original_name, f.uuid)
        self._files.pop(f.uuid, None)
        _pop_nested(self._by_sha1, f.sha1, f.uuid)
        for node in folder.ancestry():
            node.files_recursive -= 1
            node.bytes_recursive -= f.size
        folder.updated_ms = self.now_ms()
        self.mutations += 1

    def upload(
        self,
        folder_path: str,
        original_name: str,
        *,
        sha1: str,
        size: int,
        content: Content = None,
        info_type: str | None = None,
    ) -> StoredFile:
        """Store an uploaded file, applying the project's policies.

        Args:
            folder_path: the target folder; it and its ancestors are created if missing.
            original_name: the client's file name (becomes `info.name`).
            sha1: hex SHA-1 of the content.
            size: content length in bytes.
            content: the content for `Blobs.put`; discarded if the upload is refused.
            info_type: the client's MIME type for `info.type`, if it sent one.

        Returns:
            The new asset, or the existing asset holding a new version.

        Raises:
            EmulatorError: `SAME_ASSET_EXISTS_SKIP_UPLOAD`, `ERROR_SHA1_CONFLICT`,
                `FILE_ALREADY_EXISTS`, or a bad folder or name.
        """
        try:
            original = check_file_name(original_name)
            path = normalize_folder(folder_path)
            return self._upload(
                path, original, sha1, size, content, info_type or guess_mime(original)
            )
        except EmulatorError:
            self.blobs.discard(content)
            raise

    def _upload(
        self, path: str, original: str, sha1: str, size: int, content: Content, info_type: str
    ) -> StoredFile:
        opts = self.options
        target = check_upload(
            opts,
            path=path,
            original=original,
            sha1=sha1,
            same_name=collisions(opts.naming, self._folders.get(path), original),
            same_content=self._by_sha1.get(sha1, {}).values(),
        )
        now = self.now_ms()
        if target is not None and opts.same_name == "version":
            self._unlink(target)
            target.sha1, target.size, target.info_type = sha1, size, info_type
            target.version += 1
            # Strictly later, so `updated_after` set from the old value still sees it.
            target.modified_ms = max(now, target.modified_ms + 1)
            target.overwrite = True
            self._link(target)
            self.blobs.put(target.uuid, content)
            return target
        if target is not None:
            # override: the old asset is gone for good, and the new one gets a new uuid
            self._unlink(target)
            self.blobs.delete(target.uuid)
        folder = self.ensure_folder(path)
        self._seq += 1
        new = StoredFile(
            uuid=self.new_uuid(),
            folder=folder,
            name=stored_name(opts.naming, self.rng, folder, original),
            original_name=original,
            client_name=original,
            info_type=info_type,
            sha1=sha1,
            size=size,
            created_ms=now,
            modified_ms=now,
            seq=self._seq,
            overwrite=target is not None,
        )
        self._link(new)
        self.blobs.put(new.uuid, content)
        return new

    def delete_files(self, file_uuids: Iterable[str]) -> list[str]:
        """Delete files by uuid; return the uuids that existed and are now gone."""
        deleted = []
        for file_uuid in file_uuids:
            f = self._files.get(file_uuid)
            if f is not None:
                self._unlink(f)
                self.blobs.delete(f.uuid)
                deleted.append(file_uuid)
        return deleted

    def rename(self, f: StoredFile, new_name: str) -> StoredFile:
        """Rename a file in place: it keeps its uuid, and with `rename_info_name="rewritten"`
        its `info.name` (and `info.type`) become those of `new_name` too.

        Raises:
            EmulatorError: 409 `E801_ALREADY_EXIST` if another file there has that name,
                or (with `noop_conflict`) if it is the file's own name.
        """
        check_file_name(new_name)
        if new_name == f.name and self.options.noop_conflict:
            raise _name_taken(f)
        other = f.folder.files.get(new_name)
        if other is not None and other is not f:
            raise _name_taken(other)
        self._unlink(f)
        f.name = f.client_name = new_name
        if self.options.rename_info_name == "rewritten":
            f.original_name = new_name
            f.info_type = guess_mime(new_name)
        f.modified_ms = max(self.now_ms(), f.modified_ms + 1)
        self._link(f)
        return f

    def move(self, files: Sequence[StoredFile], folder: Folder) -> list[StoredFile]:
        """Move files into `folder`, all or none; files already there stay untouched, or
        (with `noop_conflict`) fail the whole move.

        Raises:
            EmulatorError: 409 `E801_ALREADY_EXIST` if a name is taken there (or twice).
        """
        incoming: dict[str, StoredFile] = {}
        for f in files:
            if f.folder is folder and self.options.noop_conflict:
                raise _name_taken(f)
            other = folder.files.get(f.name) or incoming.get(f.name)
            if other is not None and other is not f:
                raise _name_taken(other)
            incoming[f.name] = f
        for f in incoming.values():
            if f.folder is not folder:
                self._unlink(f)
                f.folder = folder
                f.modified_ms = max(self.now_ms(), f.modified_ms + 1)
                self._link(f)
        return list(incoming.values())

    # ---- listing -------------------------------------------------------------------------

    def list_files(
        self,
        folder: Folder,
        *,
        recursive: bool = False,
        q: str | None = None,
        updated_after_ms: float | None = None,
        sort: tuple[str, bool] = ("created_at", False),
    ) -> Listing:
        """Return the files of `folder` that match the filters, sorted, as the options say
        the DAM would (`q_match`, `updated_after`, `sort`, `page_drift`, `listing_lag_s`);
        cached until the files change.

        Args:
            folder: where to list.
            recursive: include every subfolder.
            q: the search text.
            updated_after_ms: the `updated_after` threshold (epoch milliseconds).
            sort: the order asked for: a key of `index.SORT_FIELDS`, and whether descending.
        """
        query = listing_query(self.options, q=q, updated_after_ms=updated_after_ms, sort=sort)
        if (lagged := self._lagging()) is not None:
            lagged.catch_up(self._clock(), self.options.listing_lag_s)
            return lagged.list_files(folder, recursive=recursive, query=query)
        return self._cache.get(
            self.mutations,
            (folder.uuid, recursive, query),
            lambda: select(self._files_in(folder, recursive=recursive), query),
        )

    def _files_in(self, folder: Folder, *, recursive: bool) -> Iterable[StoredFile]:
        if not recursive:
            return folder.files.values()
        if folder is self.root:
            return self._files.values()
        # Filter the project-wide dict, which is close to creation order, instead of
        # chaining folder by folder: the sort then has nearly sorted input.
        nodes = set(folder.subtree())
        return (f for f in self._files.values() if f.folder in nodes)


def _name_taken(other: StoredFile) -> EmulatorError:
    return EmulatorError(
        409,
        "E801_ALREADY_EXIST",
        f"{other.path} already exists",
        "choose another name",
        existing_file_uuid=other.uuid,
    )


def _pop_nested(index: dict[str, dict[str, StoredFile]], key: str, file_uuid: str) -> None:
    """Remove `file_uuid` from `index[key]`, dropping the inner dict once it is empty."""
    inner = index.get(key)
    if inner is not None:
        inner.pop(file_uuid, None)
        if not inner:
            del index[key]
