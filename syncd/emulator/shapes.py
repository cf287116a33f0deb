"""The wire format of the emulated API: rendering folders and files as the JSON objects of
docs/dam-api.md §2.4, §3.3 and §6, and parsing the query values the API accepts."""

from __future__ import annotations

import math
import posixpath
import time
from datetime import datetime
from typing import Any

from syncd.emulator.model import Folder, FolderCounts, StoredFile, bad_input
from syncd.emulator.options import Options

__all__ = [
    "Renderer",
    "iso_ms",
    "parse_flag",
    "parse_int",
    "parse_sort",
    "parse_time_ms",
    "pretty_size",
]

_UNITS = ("KB", "MB", "GB", "TB", "PB")
_SORT_ALIASES = {
    "filename": "name",
    "name": "name",
    "created_at": "created_at",
    "updated_at": "modified_at",
    "modified_at": "modified_at",
}


def iso_ms(ms: int) -> str:
    """Return epoch milliseconds as ISO-8601 UTC with milliseconds: `2026-01-02T03:04:05.678Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def pretty_size(size: int) -> str:
    """Return a byte count the way the DAM shows it: `512 B`, `4 KB`, `1.5 MB`."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    index = 0
    while value >= 1024 and index < len(_UNITS) - 1:
        value /= 1024
        index += 1
    return f"{f'{value:.2f}'.rstrip('0').rstrip('.')} {_UNITS[index]}"


def parse_flag(value: str | None, name: str) -> bool:
    """Parse a `0|1|true|false` query value; absent means false."""
    if value is None or value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise bad_input(f"{name} must be 0 or 1, got {value!r}")


def parse_int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    """Parse an integer query value within `low..high`."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise bad_input(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise bad_input(f"{name} must be between {low} and {high}, got {number}")
    return number


def parse_sort(value: str | None) -> tuple[str, bool]:
    """Parse `field:asc|desc` (or the older `field,desc`) into a store sort key.

    Without a value the order is creation order, which keeps offset paging stable. (The
    store applies it only with `Options.sort="honoured"` and no `page_drift`.)
    """
    if not value:
        return ("created_at", False)
    field, _, direction = value.replace(",", ":").partition(":")
    key = _SORT_ALIASES.get(field.strip().lower())
    direction = direction.strip().lower() or "asc"
    if key is None or direction not in ("asc", "desc"):
        raise bad_input(f"unsupported sort {value!r}; use e.g. created_at:asc or name:desc")
    return (key, direction == "desc")


def parse_time_ms(value: str | None, name: str) -> float | None:
    """Parse an ISO-8601 time (`Z` or offset, optional fraction) or a unix timestamp.

    Numbers above 1e11 are taken as milliseconds; anything smaller as seconds.

    Returns:
        Epoch milliseconds, or None when the value is absent.
    """
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise bad_input(f"{name} must be a finite time, got {value!r}")
        return number if number > 1e11 else number * 1000
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise bad_input(f"{name} must be ISO-8601 or a unix timestamp, got {value!r}") from None
    if moment.tzinfo is None:
        raise bad_input(f"{name} needs a timezone (Z or +hh:mm), got {value!r}")
    return moment.timestamp() * 1000


class Renderer:
    """Turns store records into the JSON objects the API returns.

    Args:
        base: the server's origin, `http://127.0.0.1:8750`.
        token: the project token in the URL.
        options: the live options (`size_as_int`, `folder_trailing_slash`).
    """

    def __init__(self, base: str, token: str, options: Options) -> None:
        self.base = base
        self.token = token
        self.options = options

    def file(self, f: StoredFile, *, sha1: bool = True) -> dict[str, Any]:
        """Return the file object (docs/dam-api.md §3.3); without `hash.sha1` if not `sha1`."""
        permalink = f"{self.base}/{self.token}/v4/get/{f.uuid}"
        size: Any = f.size
        if not self.options.size_as_int:
            size = {"bytes": f.size, "pretty": pretty_size(f.size)}
        return {
            "uuid": f.uuid,
            "name": f.name,
            "extension": posixpath.splitext(f.name)[1][1:].lower(),
            "type": f.mime,
            "size": size,
            "url": {
                "public": permalink,
                "permalink": permalink,
                "cdn": f"{permalink}?vh={f.sha1[:6]}",
                "path": f.path,
            },
            "hash": {"sha1": f.sha1} if sha1 else {},
            "created_at": iso_ms(f.created_ms),
            "modified_at": iso_ms(f.modified_ms),
            "overwrite": f.overwrite,
            "folder": self.file_folder(f.folder),
            "info": {"name": f.original_name, "type": f.info_type},
            "meta": {},
        }

    def file_folder(self, folder: Folder) -> dict[str, Any]:
        """Return the short `folder` object inside a file object."""
        name = folder.path
        if self.options.folder_trailing_slash and name != "/":
            name += "/"
        return {"uuid": folder.uuid, "name": name}

    def folder(self, folder: Folder, counts: FolderCounts | None = None) -> dict[str, Any]:
        """Return the folder object (docs/dam-api.md §6), with its live counters unless `counts`
        gives those of another view (a lagging listing's)."""
        if counts is None:
            counts = folder.counts()
        return {
            "uuid": folder.uuid,
            "name": folder.name or "/",
            "path": folder.path,
            "created_at": iso_ms(folder.created_ms),
            "updated_at": iso_ms(folder.updated_ms),
            "count": {
                "files_recursive": counts.files_recursive,
                "files_direct": counts.files_direct,
            },
            "size": {
                "total_recursive_bytes": counts.bytes_recursive,
                "total_recursive_pretty": pretty_size(counts.bytes_recursive),
            },
            "meta": {},
        }
