"""What file listings are built from: the filter and sort every listing applies, and the
lagging index that listings read instead of the live store while `Options.listing_lag_s`
is above zero (a search index that trails the writes, docs/dam-api.md §12.19 and §12.21)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from syncd.emulator.model import Folder, FolderCounts, Listing, StoredFile
from syncd.emulator.policies import ListingQuery

__all__ = ["SORT_FIELDS", "LaggedIndex", "ListingCache", "select"]

_CACHE_LIMIT = 64

# Sort keys; ties go by upload order (`seq`).
SORT_FIELDS: dict[str, Callable[[StoredFile], Any]] = {
    "name": attrgetter("name"),
    "created_at": attrgetter("created_ms"),
    "modified_at": attrgetter("modified_ms"),
}
_BY_SEQ = attrgetter("seq")


def select(
    files: Iterable[StoredFile],
    query: ListingQuery,
    counts: Callable[[Folder], FolderCounts] = Folder.counts,
) -> Listing:
    """Return the files that pass `query`'s filters, in its order.

    Args:
        files: the candidates (the listed folder's files, or its subtree's).
        query: the filters and order.
        counts: the folder counters of the same view of the project as `files`.
    """
    matches = query.matcher()
    if matches is not None:
        files = filter(matches, files)
    if query.updated_after_ms is not None:
        threshold = query.updated_after_ms
        files = (f for f in files if f.modified_ms > threshold)
    field_name, descending = query.sort
    # Two stable sorts instead of one on (field, seq) tuples: building 100k tuples made a
    # name-ordered listing several times slower, and the seq pass is nearly free on input
    # that is already close to upload order.
    ordered = sorted(files, key=_BY_SEQ, reverse=descending)
    ordered.sort(key=SORT_FIELDS[field_name], reverse=descending)
    return Listing(ordered, sum(f.size for f in ordered), counts)


class ListingCache:
    """Listings by query, valid while the files they were built from stay unchanged: paging
    through a large listing costs one filter and sort, then a slice per page."""

    def __init__(self) -> None:
        self._listings: dict[Any, Listing] = {}
        self._version = -1

    def get(self, version: int, key: Any, build: Callable[[], Listing]) -> Listing:
        """Return the listing cached under `key`, or build and cache it.

        Args:
            version: a number that changes whenever the listed files do; a new one empties
                the cache.
            key: what the listing depends on besides the files.
            build: makes the listing on a miss.
        """
        if version != self._version or len(self._listings) >= _CACHE_LIMIT:
            self._listings.clear()
            self._version = version
        hit = self._listings.get(key)
        if hit is None:
            hit = self._listings[key] = build()
        return hit


@dataclass(slots=True)
class _Change:
    """One file change waiting to become visible to listings."""

    at: float  # the store's clock (seconds) when it happened
    uuid: str
    snapshot: StoredFile | None  # None: the file was deleted


class LaggedIndex:
    """The project as listings see it: each change shows up once `lag` seconds old.

    Changes queue in the order they happened and become visible in that order, so the view
    is always a past state of the project. The lag is passed at each read rather than fixed
    at each change, so a lag shortened or lengthened at runtime applies to changes already
    queued (a change already visible stays visible).

    Snapshots are copies of the stored file (name, `info.name`, folder, hash, size, times),
    so later changes to the live record do not leak into the view. Folder objects are
    shared: their paths and uuids never change.

    Args:
        files: the project's current files, visible at once.
    """

    def __init__(self, files: Iterable[StoredFile]) -> None:
        self._files: dict[str, StoredFile] = {}
        # folder path -> uuid -> snapshot
        self._by_folder: dict[str, dict[str, StoredFile]] = {}
        # folder path -> [files, bytes] of its whole subtree, like Folder's counters
        self._totals: dict[str, list[int]] = {}
        self._pending: deque[_Change] = deque()
        # Bumped whenever a change becomes visible, for the cache.
        self._version = 0
        self._cache = ListingCache()
        for f in files:
            self._show(_snapshot(f))

    def changed(self, at: float, f: StoredFile) -> None:
        """Queue the current state of `f` (new, renamed, moved or a new version) at time `at`."""
        last = self._pending[-1] if self._pending else None
        if last is not None and last.uuid == f.uuid and last.snapshot is None:
            # The store re-links a file it has just unlinked to change it (rename, move,
            # new version): one change, never a moment when the file is missing.
            last.snapshot = _snapshot(f)
        else:
            self._pending.append(_Change(at, f.uuid, _snapshot(f)))

    def deleted(self, at: float, file_uuid: str) -> None:
        """Queue the deletion of a file at time `at`."""
        self._pending.append(_Change(at, file_uuid, None))

    def catch_up(self, now: float, lag: float) -> None:
        """Make visible every queued change at least `lag` seconds older than `now`."""
        cutoff = now - lag
        pending = self._pending
        if not pending or pending[0].at > cutoff:
            return
        while pending and pending[0].at <= cutoff:
            change = pending.popleft()
            old = self._files.get(change.uuid)
            if old is not None:
                self._hide(old)
            if change.snapshot is not None:
                self._show(change.snapshot)
        self._version += 1

    def list_files(self, folder: Folder, *, recursive: bool, query: ListingQuery) -> Listing:
        """Return the visible files of `folder` (or its subtree) that pass `query`."""
        return self._cache.get(
            self._version,
            (folder.path, recursive, query),
            lambda: select(self.files(folder, recursive=recursive), query, self.counts),
        )

    def files(self, folder: Folder, *, recursive: bool) -> Iterator[StoredFile]:
        """Yield the visible files in `folder` (and its subfolders if `recursive`)."""
        if not recursive:
            yield from self._by_folder.get(folder.path, {}).values()
        elif folder.parent is None:
            yield from self._files.values()
        else:
            prefix = folder.path + "/"
            for path, files in self._by_folder.items():
                if path == folder.path or path.startswith(prefix):
                    yield from files.values()

    def counts(self, folder: Folder) -> FolderCounts:
        """Return the counters of `folder` (by path) in the visible state."""
        files, size = self._totals.get(folder.path, (0, 0))
        return FolderCounts(files, len(self._by_folder.get(folder.path, ())), size)

    def _show(self, f: StoredFile) -> None:
        self._files[f.uuid] = f
        self._by_folder.setdefault(f.folder.path, {})[f.uuid] = f
        for node in f.folder.ancestry():
            totals = self._totals.setdefault(node.path, [0, 0])
            totals[0] += 1
            totals[1] += f.size

    def _hide(self, f: StoredFile) -> None:
        del self._files[f.uuid]
        direct = self._by_folder[f.folder.path]
        del direct[f.uuid]
        if not direct:
            del self._by_folder[f.folder.path]
        for node in f.folder.ancestry():
            totals = self._totals[node.path]
            totals[0] -= 1
            totals[1] -= f.size
            if totals[0] == 0:
                del self._totals[node.path]


def _snapshot(f: StoredFile) -> StoredFile:
    return replace(f)
