"""Plain value types shared by the pipeline stages: local files, known state, remote assets,
planned actions. No I/O happens here.

`LocalFile`, `Known` and `RemoteFile` are built once per file on every run (100,000 of
each for a large tree), so they are slotted but not frozen: a frozen dataclass sets each
field through `object.__setattr__` and costs four times as much to build. Treat them as
immutable all the same; `dataclasses.replace` makes changed copies."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Action",
    "FolderTarget",
    "Known",
    "LocalFile",
    "Op",
    "RemoteFile",
    "Skip",
    "StatRow",
    "Unsure",
    "remote_location",
]

# `(path, size, mtime_ns, inode)`: a file's stat as the walk reports it and the state keeps
# it, as a plain tuple so a directory's worth compares in one C-level list comparison.
StatRow = tuple[str, int, int, int]


@dataclass(slots=True)
class LocalFile:
    """One regular file found under a folder root.

    `path` is relative to the root, with `/` separators, and is valid UTF-8.
    `sha1` is filled in only once the file has been hashed.
    """

    path: str
    size: int
    mtime_ns: int
    inode: int
    sha1: str | None = None


@dataclass(slots=True)
class Known:
    """What the state database remembers about a synced file."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    sha1: str
    uuid: str
    remote_sha1: str | None = None
    # The asset lives elsewhere in the project: the DAM refused a second copy of identical
    # content and syncd adopted that one. syncd never deletes such an asset.
    foreign: bool = False

    def same_stat(self, local: LocalFile) -> bool:
        """True when the local file's stat matches the one recorded at the last sync."""
        return (
            self.size == local.size
            and self.mtime_ns == local.mtime_ns
            and self.inode == local.inode
        )


@dataclass(slots=True)
class RemoteFile:
    """One asset in the DAM, seen through a listing or an upload response.

    The uuid is the asset's identity; `folder + name` is its path (docs/dam-api.md,
    "Identity"). `path` is that path relative to the synced folder's remote root, under
    the stored `name`, which may carry a random suffix or be random altogether when the
    project's naming rule changes names. `info_name` is the name sent at upload; it is a
    hint for matching assets syncd does not know, never a path: a rename may leave it as
    it was. `created_at`/`modified_at` are the DAM's ISO-8601 stamps, kept as text (they
    are parsed only when an upload of unknown outcome is matched).
    """

    uuid: str
    path: str
    name: str
    folder: str
    sha1: str | None
    size: int | None
    info_name: str | None = None
    created_at: str | None = None
    modified_at: str | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """A local entry that was not synced, and why (shown in the summary). `failed` marks
    entries that should have synced but could not be read; they make the run exit 1."""

    path: str
    reason: str
    failed: bool = False
    kind: str = "unreadable"  # for failures: a short label (metrics group failures by it)


@dataclass(frozen=True, slots=True)
class Unsure:
    """An upload whose outcome was unknown (the DAM may or may not have committed it),
    journalled in the state until a listing has been checked for what it left.

    `folder` and `name` are the DAM folder and name it was sent to; the window is the
    DAM's clock (ISO-8601) from just before the first attempt to the last failure."""

    path: str
    folder: str
    name: str
    sha1: str
    size: int
    window_start: str
    window_end: str


class Op(enum.Enum):
    """What the executor must do for one path."""

    UPLOAD = "upload"  # new on the DAM
    REPLACE = "update"  # content changed: replace the asset
    DELETE = "delete"  # gone locally (or unknown remotely with delete_unknown): delete by uuid
    ADOPT = "adopt"  # the DAM already holds identical content: record it, upload nothing
    REFRESH = "refresh"  # stat changed but content did not: update the state row only
    FORGET = "forget"  # gone locally and on the DAM: drop the state row only
    MOVE = "move"  # renamed or moved locally: rename/move the asset, keeping its uuid
    STRAY = "stray"  # a second asset a retried upload of syncd's created: delete it


@dataclass(frozen=True, slots=True)
class Action:
    """One planned change. `local` is set for UPLOAD/REPLACE/ADOPT/REFRESH/MOVE, `uuid` for
    REPLACE/DELETE/ADOPT/MOVE/STRAY.

    For a MOVE, `source` is the old local path whose state row moves (None when only the
    DAM side is out of place), and `remote_path` is where the asset sits on the DAM now,
    relative to the remote root (None: where `source` was synced to)."""

    op: Op
    path: str
    local: LocalFile | None = None
    uuid: str | None = None
    remote_sha1: str | None = None
    source: str | None = None
    remote_path: str | None = None


@dataclass(frozen=True, slots=True)
class FolderTarget:
    """Where one folder's actions go: its local root, DAM folder and state row."""

    root: Path
    remote: str
    folder_id: int
    stream_threshold: int


def remote_location(remote_root: str, path: str) -> tuple[str, str]:
    """Map a local relative path to its DAM folder and file name.

    `a/b/c.jpg` under remote root `/assets` goes to folder `/assets/a/b` as `c.jpg`.
    """
    root = remote_root.rstrip("/")
    head, _, name = path.rpartition("/")
    return (f"{root}/{head}" if head else root or "/"), name
