"""The DAM's wire shapes, without any HTTP: turning response bodies into syncd values and
errors. Accepts every documented variant (docs/dam-api.md): `size` as a number or
`{bytes, pretty}`, folder names with or without a trailing slash, stored names that
differ from the original (`info.name`), `Retry-After` in seconds or as an HTTP date,
and failures signalled by the status code or only by `"status": "error"` in the body.

Nothing here trusts the DAM: every function takes whatever a JSON body may hold (any type,
`NaN`, huge numbers, absurd dates) and either returns a well-typed value or raises a
`DamError` for that one request, so a malformed answer is retried or parked, never a crash
(tests/test_wire_fuzz.py checks this with hypothesis).
"""

from __future__ import annotations

import email.utils
import math
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
    "parse_http_date",
    "parse_retry_after",
    "parse_time",
    "remote_file",
    "same_content",
    "uploaded",
]

# The DAM answers identical content with these codes instead of a `file` object; the
# asset named by `existing_file_uuid` already holds the bytes (docs/dam-api.md §2.3).
SAME_CONTENT_CODES = frozenset({"SAME_ASSET_EXISTS_SKIP_UPLOAD", "ERROR_SHA1_CONFLICT"})
_AUTH_CODES = frozenset(
    {"UNAUTHORIZED", "KEY_EXPIRED", "INVALID_KEY", "KEY_INVALID", "FORBIDDEN", "KEY_NOT_FOUND"}
)
# DAM text (an error message, a Location) is kept to this many characters: it ends up in
# logs and in the state's parked reasons, and a hostile DAM could send megabytes of it.
_MAX_TEXT = 300
# A `Retry-After` beyond a day is nonsense; the pacer caps its pauses lower still.
_MAX_RETRY_AFTER_S = 86_400.0
# Dates outside these years are nonsense from a DAM, and near the ends of `datetime`'s
# range the arithmetic on bookmarks (± a second) would overflow.
_YEARS = range(1970, 9999)


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


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header given in seconds or as an HTTP date:
    0 for a date in the past, at most a day; None when the header is absent or
    unreadable (`NaN`, a negative number, garbage)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        when = parse_http_date(value)
        if when is None:
            return None
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER_S)


def parse_http_date(value: object) -> datetime | None:
    """An HTTP date (`Date`, `Retry-After`) as an aware UTC datetime, or None when it is
    unreadable or absurd. HTTP dates are always GMT (RFC 9110 §5.6.7), so one without a
    zone is read as UTC rather than as local time."""
    if not isinstance(value, str):
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return _plausible(when)


def _plausible(when: datetime) -> datetime | None:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        when = when.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return when if when.year in _YEARS else None


def _text(value: object) -> str:
    """DAM text, cut to `_MAX_TEXT` and made storable (see `_string`)."""
    text = str(value)
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "…"
    if _string(text) is None:
        text = text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode()
    return text


def _error_text(body: Mapping[str, Any]) -> str:
    info = body.get("info")
    if isinstance(info, dict) and isinstance(info.get("msg"), str):
        return _text(info["msg"])
    for key in ("msg", "hint", "message"):
        if isinstance(body.get(key), str):
            return _text(body[key])
    return "no message"


def _code(body: Mapping[str, Any]) -> str | None:
    """The body's error `code` when it is a string or a number (some APIs send numbers);
    anything else (`[]`, an object) is no code at all."""
    code = body.get("code")
    if isinstance(code, str) and code:
        return _text(code)
    if isinstance(code, int) and not isinstance(code, bool):
        return _text(code)
    return None


def same_content(body: Mapping[str, Any]) -> bool:
    """Whether an upload's answer is one of the identical-content codes (§2.3), which are
    read from the body whatever the status; `uploaded` then checks the rest."""
    code = body.get("code")
    return isinstance(code, str) and code in SAME_CONTENT_CODES


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> DamError | None:
    """The error a response stands for, or None when it is a success."""
    code = _code(body)
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
        where = _text(headers.get("Location", "elsewhere"))
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
    if not isinstance(stats, dict) or stats.get("approx_files_count_method") != "COUNT_EXACT":
        stats = {}
    if (count := _count(stats.get("approx_files_count"))) is not None:
        return count
    info = body.get("info")
    if isinstance(info, dict) and (count := _count(info.get("total_files_count"))) is not None:
        return count
    base = body.get("base")
    counts = base.get("count") if isinstance(base, dict) else None
    return _count(counts.get("files_recursive")) if isinstance(counts, dict) else None


def _count(value: Any) -> int | None:
    # bool is an int to Python, not to JSON: `true` is no count.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _size(value: Any) -> int | None:
    """A byte count from `size` (a number or `{bytes}`); None for anything else, `NaN`,
    infinities and negative numbers included."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return _count(value)


def _malformed(what: str) -> TransientDamError:
    # Transient: a mangled answer may come from a proxy or a bad node, and a retry is
    # cheap. Only type names go into the message, never the DAM's values.
    return TransientDamError(f"malformed response: {what}")


def _type(value: object) -> str:
    return "missing" if value is None else type(value).__name__


def _string(value: object) -> str | None:
    """`value` when it is text syncd can store and log: a string without NUL and without
    lone surrogates (JSON's `"\\ud800"`), which SQLite and UTF-8 logs cannot encode."""
    if not isinstance(value, str) or "\0" in value:
        return None
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return None
    return value


def _folder_of(item: Mapping[str, Any]) -> str:
    """The folder path of a file object: `folder.name`, else the directory of `url.path`,
    else `/` when the object gives neither (the shape of some legacy answers)."""
    folder = item.get("folder")
    if folder is not None and not isinstance(folder, dict):
        raise _malformed(f"a file's folder is {_type(folder)}, not an object")
    if isinstance(folder, dict) and folder.get("name") is not None:
        if (name := _string(folder["name"])) is None:
            raise _malformed(f"a file's folder.name is {_type(folder['name'])}, not a string")
        return name
    url = item.get("url")
    if url is None:
        return "/"
    if not isinstance(url, dict):
        raise _malformed(f"a file's url is {_type(url)}, not an object")
    path = url.get("path")
    if path is None:
        return "/"
    if _string(path) is None:
        raise _malformed(f"a file's url.path is {_type(path)}, not a string")
    return str(path).rpartition("/")[0]


def _uuid(item: Mapping[str, Any]) -> str:
    uuid = _string(item.get("uuid"))
    if not uuid:
        raise _malformed(f"a file's uuid is {_type(item.get('uuid'))}, not a string")
    return uuid


def _name(item: Mapping[str, Any]) -> str:
    name = _string(item.get("name", ""))
    if name is None:
        raise _malformed(f"a file's name is {_type(item.get('name'))}, not a string")
    return name


def remote_file(item: object, root: str) -> RemoteFile | None:
    """Map a DAM file object to a `RemoteFile` relative to `root`, or None when it is not
    below `root`. The path is `folder + name` (the stored name); `info.name`, the name
    sent at upload, is kept only as a hint (see `syncd.engine.match`). Accepts both documented
    shapes of `size` and folder names with or without a trailing slash.

    Optional fields of a wrong type (`size: NaN`, a `hash` that is a list) read as absent.

    Raises:
        TransientDamError: the object cannot stand for an asset: it is not an object, or
            its uuid, name or folder has a wrong type.
    """
    if not isinstance(item, dict):
        raise _malformed(f"a file is {_type(item)}, not an object")
    uuid, name = _uuid(item), _name(item)
    folder = "/" + _folder_of(item).strip("/")
    root = "/" + root.strip("/")
    if folder == root:
        rel_dir = ""
    elif root == "/":
        rel_dir = folder[1:]
    elif folder.startswith(root + "/"):
        rel_dir = folder[len(root) + 1 :]
    else:
        return None
    info = item.get("info")
    sent = _string(info.get("name")) if isinstance(info, dict) else None
    return RemoteFile(
        uuid=uuid,
        path=f"{rel_dir}/{name}" if rel_dir else name,
        name=name,
        folder=folder,
        sha1=_sha1(item),
        size=_size(item.get("size")),
        info_name=sent or None,
        created_at=_string(item.get("created_at")),
        modified_at=_string(item.get("modified_at")),
    )


def _sha1(item: Mapping[str, Any]) -> str | None:
    hashes = item.get("hash")
    return _string(hashes.get("sha1")) if isinstance(hashes, dict) else None


def iso(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as the DAM writes its own timestamps."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def uploaded(body: Mapping[str, Any], what: str) -> Uploaded:
    """The asset an upload's answer names.

    Raises:
        TransientDamError: the answer names no asset, or names it with wrong types.
    """
    if same_content(body):
        existing = _string(body.get("existing_file_uuid"))
        if not existing:
            raise TransientDamError(
                f"{what}: the DAM reports identical content ({body.get('code')}) but its"
                f" existing_file_uuid is {_type(body.get('existing_file_uuid'))}, not a string"
            )
        similar = body.get("similar_file_path")
        elsewhere = None
        if body.get("code") == "ERROR_SHA1_CONFLICT":
            elsewhere = _string(similar) or ""
        return Uploaded(
            uuid=existing,
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
    try:
        uuid, name = _uuid(item), _name(item)
    except TransientDamError as exc:
        raise TransientDamError(f"{what}: {exc.message}") from None
    return Uploaded(
        uuid=uuid,
        name=name,
        remote_sha1=_sha1(item),
        modified_at=parse_time(item.get("modified_at")),
    )


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp from the DAM (`2026-11-26T10:00:00.123Z`) as an aware
    datetime, or None when it is not one or is absurd (see `_YEARS`)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _plausible(when)
