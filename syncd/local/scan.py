"""Walk a local folder root fast (os.scandir, never following symlinked directories) and report
its regular files and the entries it had to skip. Pure I/O: no decisions about syncing.
Checking a root and opening a scanned file safely are `syncd.local.fs`'s."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from syncd.local.filters import SyncdFilter
from syncd.local.fs import DIR_FLAGS, RootUnavailable, file_kind, root_status
from syncd.model import LocalFile, Skip

__all__ = ["ScanResult", "scan", "scan_paths"]


# stat.S_IFMT() and S_ISREG() as plain masks: the walk tests every entry's mode
_S_IFMT = 0o170000
_S_IFREG = stat.S_IFREG
_S_IFDIR = stat.S_IFDIR

_CHANGED = "changed during the scan"
# C0 controls and DEL: see `_name_problem`.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


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
    real_root = os.path.realpath(root)
    try:
        root_fd = os.open(real_root, DIR_FLAGS)
    except OSError as exc:
        raise RootUnavailable(root_status(root) or f"{root}: {exc.strerror}") from exc
    walk = _Walk(real_root, filt, on_ignored, on_progress)
    with _gc_paused():
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
    walk = _Walk(real_root, filt, None, on_progress)
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
            walk.skipped.append(Skip(rel, _unreadable(exc), failed=True))
            continue
        kind = st.st_mode & _S_IFMT
        if filt.path_ignored(rel, kind == _S_IFDIR):
            continue
        if (problem := _name_problem(rel)) is not None:
            walk.skipped.append(Skip(_printable(rel), problem))
        elif kind == _S_IFDIR:
            walk.stack.append((full, rel + "/", st.st_dev, st.st_ino))
        elif kind == _S_IFREG:
            walk.files[rel] = LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino)
        elif kind == stat.S_IFLNK:
            walk._symlink(full, rel)
        else:
            walk.skipped.append(Skip(rel, f"not a regular file ({file_kind(kind)})"))
    with _gc_paused():
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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The walk allocates one object per file and none of them can form a cycle; letting the
    cyclic GC run over the growing heap meanwhile costs ~8% of a 100k-file scan."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Walk:
    """State of one scan. Directories wait on a stack as paths, not open descriptors, so a
    wide tree cannot exhaust the process's file descriptors."""

    def __init__(
        self,
        real_root: str,
        filt: SyncdFilter,
        on_ignored: Callable[[str, bool], None] | None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.real_root = real_root
        self.on_progress = on_progress
        self.root_prefix = real_root.rstrip("/") + "/"
        self.filt = filt
        self.on_ignored = on_ignored
        self.files: dict[str, LocalFile] = {}
        self.skipped: list[Skip] = []
        self.dirs = 0
        # (absolute path, rel + "/", st_dev, st_ino) of directories still to list
        self.stack: list[tuple[str, str, int, int]] = []

    def run(self) -> None:
        while self.stack:
            if self.on_progress is not None:
                self.on_progress()
            path, prefix, dev, ino = self.stack.pop()
            rel = prefix[:-1]
            try:
                fd = os.open(path, DIR_FLAGS)
            except FileNotFoundError:
                continue  # vanished since its parent was listed
            except OSError as exc:
                # ELOOP/ENOTDIR: replaced by a symlink or a file since its parent was listed
                changed = exc.errno in (errno.ELOOP, errno.ENOTDIR)
                self.skipped.append(
                    Skip(rel, _CHANGED) if changed else Skip(rel, _unreadable(exc), failed=True)
                )
                continue
            try:
                st = os.fstat(fd)
                if st.st_ino != ino or st.st_dev != dev:
                    # Not the directory that was listed (swapped, or reached through a parent
                    # that became a symlink): its contents are unknown this time, not empty.
                    self.skipped.append(Skip(rel, _CHANGED))
                    continue
                self.list_dir(fd, path, prefix)
                self.dirs += 1
            except OSError as exc:
                self.skipped.append(Skip(rel, _unreadable(exc), failed=True))
            finally:
                os.close(fd)

    def list_dir(self, fd: int, path: str, prefix: str) -> None:
        """List one directory. `os.scandir(fd)` makes each `DirEntry.stat` an fstatat by name
        relative to `fd`, measurably cheaper than resolving every file's full path again."""
        files = self.files
        ignored = self.filt.ignored
        local_file = LocalFile
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                rel = prefix + name
                try:
                    # The one lstat decides the type too, so a racing d_type cannot disagree.
                    st = entry.stat(follow_symlinks=False)
                    kind = st.st_mode & _S_IFMT
                    if ignored(rel, kind == _S_IFDIR):
                        if self.on_ignored is not None:
                            self.on_ignored(rel, kind == _S_IFDIR)
                    elif not name.isprintable() and (problem := _name_problem(name)):
                        self.skipped.append(Skip(_printable(rel), problem))
                    elif kind == _S_IFREG:
                        files[rel] = local_file(rel, st.st_size, st.st_mtime_ns, st.st_ino)
                    elif kind == _S_IFDIR:
                        self.stack.append((f"{path}/{name}", rel + "/", st.st_dev, st.st_ino))
                    elif kind == stat.S_IFLNK:
                        self._symlink(f"{path}/{name}", rel)
                    else:
                        self.skipped.append(Skip(rel, f"not a regular file ({file_kind(kind)})"))
                except FileNotFoundError:
                    continue  # vanished since the directory was read
                except OSError as exc:
                    self.skipped.append(Skip(rel, _unreadable(exc), failed=True))

    def _symlink(self, link: str, rel: str) -> None:
        target = os.path.realpath(link)
        if not target.startswith(self.root_prefix) and target != self.real_root:
            # Checked before anything else: even a dangling link must not name outside paths.
            self.skipped.append(Skip(rel, "symlink points outside the folder"))
            return
        try:
            st = os.stat(target)
        except FileNotFoundError:
            self.skipped.append(Skip(rel, "broken symlink"))
            return
        except OSError as exc:  # e.g. ELOOP: links pointing at each other
            self.skipped.append(Skip(rel, f"broken symlink ({exc.strerror})"))
            return
        if stat.S_ISDIR(st.st_mode):
            # Following would risk loops and uploading the same files under two paths.
            self.skipped.append(Skip(rel, "symlink to a directory is not followed"))
        elif stat.S_ISREG(st.st_mode):
            self.files[rel] = LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            kind = file_kind(stat.S_IFMT(st.st_mode))
            self.skipped.append(Skip(rel, f"symlink to something not a regular file ({kind})"))


def _name_problem(name: str) -> str | None:
    """Why a name cannot be synced as it is, or None.

    Undecodable bytes cannot be sent as UTF-8 at all. Control characters (C0, DEL) can
    be put on the wire, but how the DAM stores a name holding a new line or an escape is
    undocumented, and the two upload paths would carry them differently (a multipart
    header, a URL query): such a file is skipped with one warning rather than uploaded
    under a name nobody can predict."""
    if not name.isascii() and not _is_utf8(name):
        return "name is not valid UTF-8; rename it to sync it"
    if _CONTROL.search(name):
        return "name has control characters (new line, tab, escape...); rename it to sync it"
    return None


def _is_utf8(name: str) -> bool:
    # os.scandir decodes undecodable bytes to lone surrogates, which cannot be encoded back.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(rel: str) -> str:
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _unreadable(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror or exc})"
