"""The DAM's wire shapes, without any HTTP: turning response bodies into syncd values and
errors. Accepts every documented variant (docs/dam-api.md): `size` as a number or
`{bytes, pretty}`, folder names with or without a trailing slash, stored names that
differ from the original (`info.name`), `Retry-After` in seconds or as an HTTP date,
and failures signalled by the status code or only by `"status": "error"` in the body.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.errors import (
    AuthError,
    DamError,
    NameConflict,
    NotFound,
    PermanentDamError,
    RateLimited,
    TransientDamError,
)
from syncd.model import RemoteFile

__all__ = [
    "SAME_CONTENT_CODES",
    "Uploaded",
    "classify",
    "exact_count",
    "iso",
    "parse_retry_after",
    "parse_time",
    "remote_file",
    "uploaded",
]

# The DAM answers identical content with these codes instead of a `file` object; the
# asset named by `existing_file_uuid` already holds the bytes (docs/dam-api.md §2.3).
SAME_CONTENT_CODES = frozenset({"SAME_ASSET_EXISTS_SKIP_UPLOAD", "ERROR_SHA1_CONFLICT"})
_AUTH_CODES = frozenset(
    {"UNAUTHORIZED", "KEY_EXPIRED", "INVALID_KEY", "KEY_INVALID", "FORBIDDEN", "KEY_NOT_FOUND"}
)


@dataclass(frozen=True, slots=True)
class Uploaded:
    """The outcome of an upload: the asset that now holds the content."""

    uuid: str
    name: str
    remote_sha1: str | None
    adopted: bool = False
    modified_at: datetime | None = None
    # With ERROR_SHA1_CONFLICT: where the identical asset lives (`similar_file_path`,
    # "" when the DAM did not say). None for every other outcome.
    elsewhere: str | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header given in seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_text(body: Mapping[str, Any]) -> str:
    info = body.get("info")
    if isinstance(info, dict) and isinstance(info.get("msg"), str):
        return str(info["msg"])
    for key in ("msg", "hint", "message"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return "no message"


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> DamError | None:
    """The error a response stands for, or None when it is a success."""
    code = body.get("code") if isinstance(body.get("code"), str) else None
    failed = body.get("status") == "error"
    if 200 <= status < 300 and not failed:
        return None
    msg = _error_text(body)
    kw: dict[str, Any] = {"status": status, "code": code}
    if status == 401 or code in _AUTH_CODES:
        return AuthError(f"the DAM rejected the API key: {msg}", **kw)
    if status == 403:
        if code is None or any(w in code for w in ("KEY", "AUTH", "PERMISSION", "FORBIDDEN")):
            return AuthError(f"the API key is not allowed to do this: {msg}", **kw)
        return PermanentDamError(msg, **kw)
    if status in (429, 503):
        return RateLimited(msg, retry_after=parse_retry_after(headers.get("Retry-After")), **kw)
    if 300 <= status < 400:
        where = headers.get("Location", "elsewhere")
        return PermanentDamError(
            f"the DAM redirected to {where}; set dam.base_url to the final address", **kw
        )
    if status == 404:
        return NotFound(msg, **kw)
    if status == 409:
        return NameConflict(msg, **kw)
    if status == 408 or status >= 500 or 200 <= status < 300:
        return TransientDamError(msg, **kw)
    return PermanentDamError(msg, **kw)


def exact_count(body: Mapping[str, Any]) -> int | None:
    """The recursive file count a listing reports, when it is exact: `stats` only when
    its method says `COUNT_EXACT` ("approx" is in its name), else `info.total_files_count`,
    else the base folder's `count.files_recursive`. None when only an estimate is given,
    so the caller lists in full rather than trust it."""
    stats = body.get("stats")
    if (
        isinstance(stats, dict)
        and stats.get("approx_files_count_method") == "COUNT_EXACT"
        and isinstance(stats.get("approx_files_count"), int)
    ):
        return int(stats["approx_files_count"])
    info = body.get("info")
    if isinstance(info, dict) and isinstance(info.get("total_files_count"), int):
        return int(info["total_files_count"])
    base = body.get("base")
    counts = base.get("count") if isinstance(base, dict) else None
    if isinstance(counts, dict) and isinstance(counts.get("files_recursive"), int):
        return int(counts["files_recursive"])
    return None


def _size(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("bytes")
    return int(value) if isinstance(value, int | float) else None


def remote_file(item: Mapping[str, Any], root: str) -> RemoteFile | None:
    """Map a DAM file object to a `RemoteFile` relative to `root`, or None when it is not
    below `root`. The path is `folder + name` (the stored name); `info.name`, the name
    sent at upload, is kept only as a hint (see `syncd.match`). Accepts both documented
    shapes of `size` and folder names with or without a trailing slash."""
    folder_obj = item.get("folder")
    folder = folder_obj.get("name") if isinstance(folder_obj, dict) else None
    if not isinstance(folder, str):
        path = (item.get("url") or {}).get("path")
        folder = path.rpartition("/")[0] if isinstance(path, str) else "/"
    folder = "/" + folder.strip("/")
    root = "/" + root.strip("/")
    if folder == root:
        rel_dir = ""
    elif root == "/":
        rel_dir = folder[1:]
    elif folder.startswith(root + "/"):
        rel_dir = folder[len(root) + 1 :]
    else:
        return None
    name = str(item.get("name", ""))
    info = item.get("info")
    sent = info.get("name") if isinstance(info, dict) else None
    hashes = item.get("hash")
    sha1 = hashes.get("sha1") if isinstance(hashes, dict) else None
    created, modified = item.get("created_at"), item.get("modified_at")
    return RemoteFile(
        uuid=str(item["uuid"]),
        path=f"{rel_dir}/{name}" if rel_dir else name,
        name=name,
        folder=folder,
        sha1=sha1 if isinstance(sha1, str) else None,
        size=_size(item.get("size")),
        info_name=sent if isinstance(sent, str) and sent else None,
        created_at=created if isinstance(created, str) else None,
        modified_at=modified if isinstance(modified, str) else None,
    )


def iso(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as the DAM writes its own timestamps."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def uploaded(body: Mapping[str, Any], what: str) -> Uploaded:
    if body.get("code") in SAME_CONTENT_CODES:
        similar = body.get("similar_file_path")
        elsewhere = None
        if body.get("code") == "ERROR_SHA1_CONFLICT":
            elsewhere = similar if isinstance(similar, str) else ""
        return Uploaded(
            uuid=str(body["existing_file_uuid"]),
            name="",
            remote_sha1=None,
            adopted=True,
            elsewhere=elsewhere,
        )
    item = body.get("file")
    if not isinstance(item, dict):
        files = body.get("files")
        item = files[0] if isinstance(files, list) and files else None
    if not isinstance(item, dict) or "uuid" not in item:
        raise TransientDamError(f"{what}: the response names no file")
    hashes = item.get("hash")
    sha1 = hashes.get("sha1") if isinstance(hashes, dict) else None
    return Uploaded(
        uuid=str(item["uuid"]),
        name=str(item.get("name", "")),
        remote_sha1=sha1 if isinstance(sha1, str) else None,
        modified_at=parse_time(item.get("modified_at")),
    )


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp from the DAM (`2026-11-26T10:00:00.123Z`), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
