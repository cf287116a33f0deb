"""Records of the emulated DAM (folders, files, listings), its error type, and the path and
name rules shared by the store and the HTTP layer. No I/O happens here."""

from __future__ import annotations

import functools
import mimetypes
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EmulatorError",
    "Folder",
    "FolderCounts",
    "Listing",
    "StoredFile",
    "bad_input",
    "check_file_name",
    "guess_mime",
    "normalize_folder",
]

# A private table, so guesses do not depend on the host's /etc/mime.types.
_MIME = mimetypes.MimeTypes()


class EmulatorError(Exception):
    """A request the DAM refuses; rendered as `{"status":"error","code",...}`.

    Args:
        status: the HTTP status.
        code: the DAM error code.
        msg: human-readable text.
        hint: what to do about it.
        **extra: more top-level body fields (`existing_file_uuid`, ...).
    """

    def __init__(self, status: int, code: str, msg: str, hint: str = "", **extra: Any) -> None:
        super().__init__(f"{status} {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.hint = hint
        self.extra = extra
        # Reply headers, such as the `Retry-After` of a 429.
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error reply."""
        body: dict[str, Any] = {"status": "error", "code": self.code, "msg": self.msg}
        body["hint"] = self.hint
        body.update(self.extra)
        return body


def bad_input(msg: str) -> EmulatorError:
    """Return the error for unusable request input (HTTP 400)."""
    return EmulatorError(400, "ERR_UNPROCESSABLE_ENTITY", msg, "check the request parameters")


def normalize_folder(path: str) -> str:
    """Return `path` as `/a/b`: leading slash, no trailing or doubled slashes.

    Raises:
        EmulatorError: a `.` or `..` segment.
    """
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise bad_input(f"folder path {path!r} has a '.' or '..' segment")
    return "/" + "/".join(parts)


def check_file_name(name: str) -> str:
    """Return `name` if it can name a file.

    Raises:
        EmulatorError: an empty name, `.`/`..`, or a name with a slash.
    """
    if not name or "/" in name or name in (".", ".."):
        raise bad_input(f"invalid file name {name!r}")
    return name


def guess_mime(name: str) -> str:
    """Return the MIME type for a file name, defaulting to application/octet-stream."""
    return _guess_by_ext(posixpath.splitext(name)[1].lower())


@functools.lru_cache(maxsize=1024)
def _guess_by_ext(ext: str) -> str:
    # Cached per extension: listings render thousands of files per page.
    return _MIME.guess_type("x" + ext, strict=False)[0] or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class FolderCounts:
    """The file counters a folder object shows (docs/dam-api.md §6)."""

    files_recursive: int
    files_direct: int
    bytes_recursive: int


@dataclass(slots=True, eq=False)
class Folder:
    """A folder. The counters cover the whole subtree and are updated on every change,
    so folder objects never need a walk."""

    uuid: str
    path: str
    name: str
    parent: Folder | None
    created_ms: int
    updated_ms: int
    children: dict[str, Folder] = field(default_factory=dict)
    # stored name -> file
    files: dict[str, StoredFile] = field(default_factory=dict)
    # original name (info.name) -> uuid -> file; several files may share one after renames
    originals: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    files_recursive: int = 0
    bytes_recursive: int = 0

    def counts(self) -> FolderCounts:
        """Return the folder's live counters."""
        return FolderCounts(self.files_recursive, len(self.files), self.bytes_recursive)

    def ancestry(self) -> Iterator[Folder]:
        """Yield this folder and every ancestor up to the root."""
        node: Folder | None = self
        while node is not None:
            yield node
            node = node.parent

    def subtree(self) -> list[Folder]:
        """Return this folder and all its descendants, parents before children."""
        out: list[Folder] = []
        stack = [self]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out


@dataclass(slots=True, eq=False)
class StoredFile:
    """One asset. `name` is the stored name and `original_name` is `info.name`.

    `client_name` is the name the client last asked for: the upload's name, then the new
    name of each rename, whatever the naming rule and `Options.rename_info_name` did. The
    API never shows it; tests use it to find where syncd put a file.

    Times are epoch milliseconds, the precision of the wire format, so a `modified_at`
    read back from a listing compares exactly with `updated_after`.
    """

    uuid: str
    folder: Folder
    name: str
    original_name: str
    client_name: str
    info_type: str
    sha1: str
    size: int
    created_ms: int
    modified_ms: int
    seq: int
    version: int = 1
    overwrite: bool = False

    @property
    def path(self) -> str:
        """The full DAM path, `/folder/name`."""
        return posixpath.join(self.folder.path, self.name)

    @property
    def mime(self) -> str:
        """The MIME type guessed from the stored name."""
        return guess_mime(self.name)


@dataclass(frozen=True, slots=True)
class Listing:
    """A filtered, sorted file list, the total size of its files, and the folder counters
    of the same view of the project (a lagging listing shows lagging counts)."""

    files: list[StoredFile]
    total_bytes: int
    counts: Callable[[Folder], FolderCounts] = Folder.counts
