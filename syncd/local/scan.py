"""Walk a local folder root fast (os.scandir, never following symlinked directories) and report
its regular files and the entries it had to skip. Pure I/O: no decisions about syncing.
Checking a root and opening a scanned file safely are `syncd.local.fs`'s."""

from __future__ import annotations

import os
import stat
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from syncd.local.filters import SyncdFilter
from syncd.local.fs import DIR_FLAGS, RootUnavailable, file_kind, root_status
from syncd.local.walk import (
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    Walker,
    gc_paused,
    name_problem,
    printable,
    unreadable,
)
from syncd.model import LocalFile, Skip, StatRow

__all__ = ["ScanResult", "Segment", "SortedWalk", "scan", "scan_paths"]

# `(end, rows)`: the files of one stretch of a sorted walk, in path order; every path is
# below `end` (None: the end of the tree) and at or after the previous segment's end.
Segment = tuple[str | None, list[StatRow]]


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one walk of a folder root found.

    `files` maps root-relative POSIX paths to their stat. `skipped` lists entries that exist
    but are not synced, with the reason; a skipped *directory* means its contents are unknown,
    not empty, so nothing under it may be deleted remotely. `dirs` counts the subdirectories
    listed (the root not included). Ignored entries appear in neither list.
    """

    files: dict[str, LocalFile]
    skipped: list[Skip]
    dirs: int


def scan(
    root: Path,
    filt: SyncdFilter,
    *,
    on_ignored: Callable[[str, bool], None] | None = None,
    on_progress: Callable[[], None] | None = None,
) -> ScanResult:
    """Walk `root` and report every regular file under it.

    Symlinks are never followed into directories. A symlink to a regular file inside the root
    is reported at the link's path with the target's stat; one resolving outside the root is
    skipped, so a link to `/etc/shadow` can never be uploaded. Per-entry problems become
    `Skip`s and the walk goes on; entries that vanish mid-walk are dropped silently.

    Args:
        root: the folder root.
        filt: the root's filter; ignored directories are not descended.
        on_ignored: called with `(rel, is_dir)` for each ignored entry (debug logging).
        on_progress: called (from this thread) after each directory: a long walk is
            progress to the daemon's watchdog, not a hang.

    Raises:
        RootUnavailable: the root cannot be listed.
    """
    real_root, root_fd = _open_root(root)
    walk = Walker(real_root, filt, on_ignored, on_progress)
    with gc_paused():
        try:
            walk.list_dir(root_fd, real_root.rstrip("/"), "")
        except OSError as exc:
            raise RootUnavailable(f"{root} cannot be read ({exc.strerror})") from exc
        finally:
            os.close(root_fd)
        walk.run()
    return ScanResult(walk.files, walk.skipped, walk.dirs)


def scan_paths(
    root: Path,
    rels: Iterable[str],
    filt: SyncdFilter,
    on_progress: Callable[[], None] | None = None,
) -> ScanResult:
    """Classify just these root-relative paths the way `scan` would, descending into the
    ones that are directories. Paths that do not exist (or are ignored) are simply absent.

    The daemon calls this for the paths the watcher reported: events are hints, and this is
    the filesystem's word on them.
    """
    real_root = os.path.realpath(root)
    walk = Walker(real_root, filt, None, on_progress)
    wanted = set(rels)
    for rel in wanted:
        if _below_any(rel, wanted):
            continue  # a reported directory above it is walked anyway
        full = f"{real_root}/{rel}"
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            walk.skipped.append(Skip(rel, unreadable(exc), failed=True))
            continue
        kind = st.st_mode & S_IFMT
        if filt.path_ignored(rel, kind == S_IFDIR):
            continue
        if (problem := name_problem(rel)) is not None:
            walk.skipped.append(Skip(printable(rel), problem))
        elif kind == S_IFDIR:
            walk.stack.append((full, rel + "/", st.st_dev, st.st_ino))
        elif kind == S_IFREG:
            walk.files[rel] = LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino)
        elif kind == stat.S_IFLNK:
            if (row := walk._symlink(full, rel)) is not None:
                walk.files[rel] = LocalFile(*row)
        else:
            walk.skipped.append(Skip(rel, f"not a regular file ({file_kind(kind)})"))
    with gc_paused():
        walk.run()
    return ScanResult(walk.files, walk.skipped, walk.dirs)


def _below_any(rel: str, paths: set[str]) -> bool:
    """Whether one of `rel`'s parent directories is in `paths`."""
    parent = rel.rpartition("/")[0]
    while parent:
        if parent in paths:
            return True
        parent = parent.rpartition("/")[0]
    return False


def _open_root(root: Path) -> tuple[str, int]:
    real_root = os.path.realpath(root)
    try:
        return real_root, os.open(real_root, DIR_FLAGS)
    except OSError as exc:
        raise RootUnavailable(root_status(root) or f"{root}: {exc.strerror}") from exc


class SortedWalk:
    """The walk `scan` makes, streamed in path order (as SQLite orders the state's rows)
    one directory at a time, so a tree of any size is compared with the state in bounded
    memory.

    Iterating yields `Segment`s that tile the whole path space: the files of a directory
    up to its next subdirectory, then that subdirectory's segments, and so on. A
    directory's entries are ordered by name, a subdirectory's as `name + "/"`, which puts
    all of `d/c/...` exactly where plain string order puts it among `d`'s files. Skips
    gather in `skipped`; `dirs` counts the directories listed. Only the directories on
    the current path are held.

    Raises (when iterated):
        RootUnavailable: the root cannot be listed.
    """

    def __init__(
        self, root: Path, filt: SyncdFilter, on_progress: Callable[[], None] | None = None
    ) -> None:
        self.root = root
        self._walk = Walker(os.path.realpath(root), filt, None, on_progress)
        self.skipped = self._walk.skipped

    @property
    def dirs(self) -> int:
        return self._walk.dirs

    def __iter__(self) -> Iterator[Segment]:
        real_root, root_fd = _open_root(self.root)
        try:
            top = self._listed(root_fd, real_root.rstrip("/"), "", None)
        except OSError as exc:
            raise RootUnavailable(f"{self.root} cannot be read ({exc.strerror})") from exc
        finally:
            os.close(root_fd)
        walk = self._walk
        stack = [top]
        while stack:
            here = stack[-1]
            if here.next_dir == len(here.dirs):
                stack.pop()
                yield here.end, here.files[here.next_file :]
                continue
            path, prefix, dev, ino = here.dirs[here.next_dir]
            here.next_dir += 1
            cut = bisect_left(here.files, prefix, here.next_file, key=itemgetter(0))
            yield prefix, here.files[here.next_file : cut]
            here.next_file = cut
            if walk.on_progress is not None:
                walk.on_progress()
            fd = walk.open_dir(path, prefix, dev, ino)
            if fd is None:
                continue
            try:
                # '/' + 1 is '0': every path under `prefix` sorts before prefix[:-1] + '0'.
                stack.append(self._listed(fd, path, prefix, prefix[:-1] + "0"))
            except OSError as exc:
                walk.skipped.append(Skip(prefix[:-1], unreadable(exc), failed=True))
            finally:
                os.close(fd)

    def _listed(self, fd: int, path: str, prefix: str, end: str | None) -> _Listed:
        listed = _Listed(end)
        self._walk.entries(fd, path, prefix, listed.files, listed.dirs)
        self._walk.dirs += bool(prefix)
        listed.files.sort()
        listed.dirs.sort(key=itemgetter(1))
        return listed


class _Listed:
    """One directory of a sorted walk, and how far the walk has got through it."""

    __slots__ = ("dirs", "end", "files", "next_dir", "next_file")

    def __init__(self, end: str | None) -> None:
        self.end = end
        self.files: list[StatRow] = []
        self.dirs: list[tuple[str, str, int, int]] = []
        self.next_file = 0
        self.next_dir = 0
