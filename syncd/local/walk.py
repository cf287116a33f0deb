"""One directory of a walk, classified safely: regular files (and links to one inside the
root) with their stat, subdirectories to descend, and every entry that cannot be synced
with the reason. `syncd.local.scan` drives it over a whole root or over given paths."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import stat
from collections.abc import Callable, Iterator

from syncd.local.filters import SyncdFilter
from syncd.local.fs import DIR_FLAGS, file_kind
from syncd.model import LocalFile, Skip, StatRow

__all__ = [
    "S_IFDIR",
    "S_IFMT",
    "S_IFREG",
    "Walker",
    "gc_paused",
    "name_problem",
    "printable",
    "unreadable",
]

# stat.S_IFMT() and S_ISREG() as plain masks: the walk tests every entry's mode
S_IFMT = 0o170000
S_IFREG = stat.S_IFREG
S_IFDIR = stat.S_IFDIR

_CHANGED = "changed during the scan"
# C0 controls and DEL: see `name_problem`.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The walk allocates one object per file and none of them can form a cycle; letting the
    cyclic GC run over the growing heap meanwhile costs ~8% of a 100k-file scan."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Walker:
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
            fd = self.open_dir(path, prefix, dev, ino)
            if fd is None:
                continue
            try:
                self.list_dir(fd, path, prefix)
                self.dirs += 1
            except OSError as exc:
                self.skipped.append(Skip(prefix[:-1], unreadable(exc), failed=True))
            finally:
                os.close(fd)

    def open_dir(self, path: str, prefix: str, dev: int, ino: int) -> int | None:
        """A descriptor of the directory that was listed at `path`, or None (skipped, or
        vanished since its parent was listed)."""
        rel = prefix[:-1]
        try:
            fd = os.open(path, DIR_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # ELOOP/ENOTDIR: replaced by a symlink or a file since its parent was listed
            changed = exc.errno in (errno.ELOOP, errno.ENOTDIR)
            self.skipped.append(
                Skip(rel, _CHANGED) if changed else Skip(rel, unreadable(exc), failed=True)
            )
            return None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            self.skipped.append(Skip(rel, unreadable(exc), failed=True))
            return None
        if st.st_ino != ino or st.st_dev != dev:
            # Not the directory that was listed (swapped, or reached through a parent that
            # became a symlink): its contents are unknown this time, not empty.
            os.close(fd)
            self.skipped.append(Skip(rel, _CHANGED))
            return None
        return fd

    def list_dir(self, fd: int, path: str, prefix: str) -> None:
        """List one directory into `files` (and its subdirectories onto the stack)."""
        found: list[StatRow] = []
        self.entries(fd, path, prefix, found, self.stack)
        files, local_file = self.files, LocalFile
        for row in found:
            files[row[0]] = local_file(*row)

    def entries(
        self,
        fd: int,
        path: str,
        prefix: str,
        files: list[StatRow],
        dirs: list[tuple[str, str, int, int]],
    ) -> None:
        """Classify one directory's entries: regular files (and links to one inside the
        root) into `files`, subdirectories into `dirs`, the rest into `skipped`.
        `os.scandir(fd)` makes each `DirEntry.stat` an fstatat by name relative to `fd`,
        measurably cheaper than resolving every file's full path again."""
        builtin, excluded = self.filt.entry_tests()
        add_file, add_dir = files.append, dirs.append
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                rel = prefix + name
                try:
                    # The one lstat decides the type too, so a racing d_type cannot disagree.
                    st = entry.stat(follow_symlinks=False)
                    kind = st.st_mode & S_IFMT
                    if builtin(name) is not None or (
                        excluded is not None and excluded(rel, kind == S_IFDIR)
                    ):
                        if self.on_ignored is not None:
                            self.on_ignored(rel, kind == S_IFDIR)
                    elif not name.isprintable() and (problem := name_problem(name)):
                        self.skipped.append(Skip(printable(rel), problem))
                    elif kind == S_IFREG:
                        add_file((rel, st.st_size, st.st_mtime_ns, st.st_ino))
                    elif kind == S_IFDIR:
                        add_dir((f"{path}/{name}", rel + "/", st.st_dev, st.st_ino))
                    elif kind == stat.S_IFLNK:
                        if (row := self._symlink(f"{path}/{name}", rel)) is not None:
                            add_file(row)
                    else:
                        self.skipped.append(Skip(rel, f"not a regular file ({file_kind(kind)})"))
                except FileNotFoundError:
                    continue  # vanished since the directory was read
                except OSError as exc:
                    self.skipped.append(Skip(rel, unreadable(exc), failed=True))

    def _symlink(self, link: str, rel: str) -> StatRow | None:
        """The stat row of a link to a regular file inside the root, else None (skipped)."""
        target = os.path.realpath(link)
        if not target.startswith(self.root_prefix) and target != self.real_root:
            # Checked before anything else: even a dangling link must not name outside paths.
            self.skipped.append(Skip(rel, "symlink points outside the folder"))
            return None
        try:
            st = os.stat(target)
        except FileNotFoundError:
            self.skipped.append(Skip(rel, "broken symlink"))
            return None
        except OSError as exc:  # e.g. ELOOP: links pointing at each other
            self.skipped.append(Skip(rel, f"broken symlink ({exc.strerror})"))
            return None
        if stat.S_ISDIR(st.st_mode):
            # Following would risk loops and uploading the same files under two paths.
            self.skipped.append(Skip(rel, "symlink to a directory is not followed"))
        elif stat.S_ISREG(st.st_mode):
            return (rel, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            kind = file_kind(stat.S_IFMT(st.st_mode))
            self.skipped.append(Skip(rel, f"symlink to something not a regular file ({kind})"))
        return None


def name_problem(name: str) -> str | None:
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


def printable(rel: str) -> str:
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def unreadable(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror or exc})"
