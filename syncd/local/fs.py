"""Safe access to files under a folder root: whether a root is usable at all, and opening
a scanned file for upload only if it is still the file the scan saw, beneath the root,
without following any symlink swapped in since. Also the errors of local reading."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from syncd.errors import SyncdError
from syncd.model import LocalFile

__all__ = [
    "DIR_FLAGS",
    "FileChanged",
    "RootUnavailable",
    "ScanError",
    "UnsafePath",
    "file_kind",
    "open_checked",
    "root_status",
]

# O_NOFOLLOW: a directory swapped for a symlink after it was listed is refused, not followed.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO that replaced a file must not hang the uploader.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY

_KINDS = {
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFBLK: "block device",
    stat.S_IFCHR: "character device",
    stat.S_IFDIR: "directory",
}


def file_kind(fmt: int) -> str:
    """A file type (`stat.S_IFMT` bits) in words, for skip reasons."""
    return _KINDS.get(fmt, "unknown type")


class ScanError(SyncdError):
    """A local folder or file cannot be read the way syncing needs.

    Args:
        message: what went wrong, in words.
        path: the path relative to the root, when one file is concerned.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class RootUnavailable(ScanError):
    """The folder root itself is missing, not a directory or unreadable. Never treat this as
    an empty folder: that would delete everything remotely."""


class UnsafePath(ScanError):
    """The path now resolves outside the folder root (e.g. a symlink was retargeted)."""


class FileChanged(ScanError):
    """The file is no longer the one the scan saw (swapped, resized, touched, retyped)."""


def root_status(root: Path) -> str | None:
    """Why `root` cannot be synced from (missing, not a directory, unreadable), or None.

    Callers refuse remote deletes unless this is None: an unmounted or unreadable folder looks
    empty, and mirroring "empty" would wipe the DAM folder.
    """
    try:
        st = os.stat(root)
    except (FileNotFoundError, NotADirectoryError):
        return f"{root} does not exist"
    except OSError as exc:
        return f"{root} cannot be accessed ({exc.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return f"{root} is not a directory"
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        return f"{root} cannot be read ({exc.strerror})"
    return None


def open_checked(root: Path, rel: str, expected: LocalFile) -> BinaryIO:
    """Open `root/rel` for upload, only if it is still the file the scan saw.

    The path is resolved again and must stay inside the root; it is then opened one component
    at a time with O_NOFOLLOW, so a directory swapped for a symlink after the check is refused
    rather than followed. The open file's inode, size and mtime must equal `expected`'s.

    Raises:
        UnsafePath: `rel` now resolves outside the root.
        FileChanged: the file is not the scanned one any more; rescan it.
        FileNotFoundError: the file is gone (not an error for callers).
    """
    if not rel or any(part in ("", ".", "..") for part in rel.split("/")):
        raise UnsafePath(f"{rel!r} is not a plain path inside the folder", path=rel)
    try:
        # Fast path: walk down from the root with O_NOFOLLOW at every step, so no link
        # anywhere on the way is followed. Costs a few openat() calls, not a realpath().
        fd = _open_beneath(str(root), rel, rel)
    except _LinkOnPath:
        # The scan follows links that stay inside the root: resolve and check, then open
        # the resolved path the same link-free way.
        real_root = os.path.realpath(root)
        target = os.path.realpath(os.path.join(real_root, rel))
        prefix = real_root.rstrip("/") + "/"
        if not target.startswith(prefix) or target == prefix:
            raise UnsafePath(f"{rel} resolves outside the folder, to {target}", path=rel) from None
        fd = _open_beneath(real_root, target[len(prefix) :], rel)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = file_kind(stat.S_IFMT(st.st_mode))
            raise FileChanged(f"{rel} is no longer a regular file ({kind})", path=rel)
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        scanned = (expected.inode, expected.size, expected.mtime_ns)
        if seen != scanned:
            raise FileChanged(
                f"{rel} changed since it was scanned (inode, size, mtime_ns {scanned} -> {seen})",
                path=rel,
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _LinkOnPath(FileChanged):
    """A symlink sits on the path being opened (the open refused to follow it)."""


def _open_beneath(real_root: str, inside: str, rel: str) -> int:
    """Open `inside` (symlink-free, relative to `real_root`) without following any link."""
    *dirs, name = inside.split("/")
    dir_fd = os.open(real_root, DIR_FLAGS)
    part = name
    try:
        for part in dirs:
            next_fd = os.open(part, DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        part = name
        return os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # O_NOFOLLOW refuses a symlink with ELOOP, or with ENOTDIR when O_DIRECTORY is set too
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    msg = f"{rel} was replaced by a symlink while opening"
                    raise _LinkOnPath(msg, path=rel) from exc
        if exc.errno == errno.ENOTDIR:  # a parent became a file: the file is gone
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), rel) from exc
        raise
    finally:
        os.close(dir_fd)
